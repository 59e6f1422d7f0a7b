"""`swarmctl service ...`: create, ls, ps, inspect, scale, update, rm, logs; and `swarmctl swarm update`.

Standard library only (the CLI must start fast). The request bodies, the tables and the decision of the
convergence wait are pure functions of their inputs so they can be tested without a daemon.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from urllib.parse import quote

from swarmctl.cli import container_opts
from swarmctl.cli.client import CLIError, DaemonError, filter_query, update_with_retry, with_version
from swarmctl.cli.output import print_json, print_table
from swarmctl.cli.units import (UnitError, human_age, parse_bytes, parse_cpus, parse_duration, parse_int, parse_key,
                                parse_since,
                                parse_kv)
from swarmctl.logformat import format_log_timestamp
from swarmctl.logformat import prefix as logprefix
from swarmctl.mesh import ports as mesh_ports

MODES = ("replicated", "global")
STRATEGIES = ("spread", "binpack", "random")
RESTART_CONDITIONS = ("none", "on-failure", "any")
NETWORK_MODES = ("host", "none")
UPDATE_ORDERS = ("stop-first", "start-first")
UPDATE_ACTIONS = ("pause", "continue", "rollback")
ROLLBACK_ACTIONS = ("pause", "continue")
# update_status states after which the wait has nothing more to wait for
STOPPED_UPDATES = ("paused", "rollback_paused")

POLL_INTERVAL = 0.1          # seconds between progress polls
DEFAULT_TIMEOUT = 120.0      # seconds before the wait gives up
PENDING_GRACE = 3.0          # a task unschedulable for longer than this fails the wait
GLOBAL_SETTLE = 1.0          # a global service showing 0 tasks is accepted only after this long
FAILURE_MARGIN = 2           # more than desired + this many failed tasks fails the wait
FAILED_LIST_CAP = 5          # the progress route lists at most this many failures
MAX_ERROR_WIDTH = 30         # Docker truncates the ERROR column of `service ps` to this width

WAIT_EPILOG = ("Without --detach the command waits until every task of the service runs (printing "
               "'overall progress: N out of M tasks' on change). It fails (exit 1) when tasks of the new spec "
               "failed more than replicas+2 times, when a task cannot be scheduled ('no suitable node') for more "
               "than 3 s, or after --timeout; the service itself stays created/updated and the swarm keeps "
               "working on it.")


def _ref(ref: str) -> str:
    return quote(ref, safe="")


# ==== parsers ===================================================================================
def add_parsers(sub) -> None:
    service = sub.add_parser("service", help="manage services",
                             description="Manage services: replicated or global groups of tasks (containers).")
    actions = service.add_subparsers(dest="action", required=True, metavar="COMMAND")

    p = actions.add_parser("create", help="create a new service", epilog=WAIT_EPILOG,
                           description="Create a service running IMAGE; COMMAND and ARGs become the task's "
                                       "arguments (Docker's CMD). Options must come before IMAGE. Prints the "
                                       "service id.")
    p.add_argument("--name", help="service name (default: a generated adjective_name)")
    p.add_argument("--mode", choices=MODES, default="replicated",
                   help="replicated: --replicas tasks; global: one task on every eligible node (default %(default)s)")
    p.add_argument("--replicas", metavar="N", help="number of tasks of a replicated service (default 1)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                   help="set an environment variable (repeatable)")
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE",
                   help="set a service label (repeatable)")
    p.add_argument("--constraint", action="append", default=[], metavar="EXPR",
                   help="placement constraint, e.g. node.role==worker or node.labels.zone!=a (repeatable)")
    p.add_argument("--placement-pref", action="append", default=[], metavar="PREF",
                   help="placement preference spread=node.labels.KEY or spread=engine.labels.KEY: tasks spread "
                        "evenly over the label's values; several form a hierarchy, the first the top (repeatable)")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="PORT",
                   help="publish a port: published=8080,target=80[,protocol=udp][,mode=host] or 8080:80[/udp]; "
                        "an omitted published port is taken from 30000-32767 (repeatable)")
    p.add_argument("--endpoint-mode", choices=mesh_ports.ENDPOINT_MODES,
                   help="vip: the service name resolves to one virtual IP (default); dnsrr: to the tasks' addresses")
    p.add_argument("--secret", action="append", default=[], metavar="SECRET",
                   help="give the tasks a secret: NAME, or source=NAME[,target=T][,uid=0][,gid=0][,mode=0444]; "
                        "mounted read-only at /run/secrets/TARGET (TARGET defaults to NAME; repeatable)")
    p.add_argument("--config", action="append", default=[], metavar="CONFIG",
                   help="give the tasks a config, same syntax as --secret; mounted at TARGET (default /NAME)")
    _add_task_options(p)
    container_opts.add_create_flags(p)
    p.add_argument("--format", choices=["json"],
                   help="print the created service as JSON (like inspect) instead of its id; no progress output")
    p.add_argument("image", metavar="IMAGE", help="image of the tasks")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]",
                   help="command and arguments for the image (task args)")
    p.set_defaults(func=create)

    p = actions.add_parser("ls", help="list services")
    p.add_argument("-q", "--quiet", action="store_true", help="only display IDs")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="filter on the server: id, label, mode (replicated|global), name (repeatable)")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format (default table)")
    p.set_defaults(func=ls)

    p = actions.add_parser("ps", help="list the tasks of one or more services",
                           description="List the tasks of services, newest task of each slot first; earlier "
                                       "tasks of the same slot (history) follow with a ' \\_ ' prefix.")
    p.add_argument("-q", "--quiet", action="store_true", help="only display task IDs")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="filter on the server: id, name, node, desired-state (running|shutdown|accepted) "
                        "(repeatable)")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format (default table)")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate IDs and errors")
    p.add_argument("services", nargs="+", metavar="SERVICE", help="service name, id or unique id prefix")
    p.set_defaults(func=ps)

    p = actions.add_parser("inspect", help="show services as JSON",
                           description="Show services as JSON: one SERVICE prints an object, several print "
                                       "an array (unknown ones are reported on stderr, exit 1).")
    p.add_argument("--format", choices=["json"], default="json", help="output format (only json)")
    p.add_argument("services", nargs="+", metavar="SERVICE")
    p.set_defaults(func=inspect)

    p = actions.add_parser("scale", help="scale one or more replicated services", epilog=WAIT_EPILOG,
                           description="Set the number of replicas: swarmctl service scale web=3 api=2")
    p.add_argument("-d", "--detach", action="store_true", help="do not wait for the services to converge")
    p.add_argument("--timeout", metavar="DURATION", default=None,
                   help=f"give up waiting after this long (default {int(DEFAULT_TIMEOUT)}s)")
    p.add_argument("scales", nargs="+", metavar="SERVICE=REPLICAS")
    p.set_defaults(func=scale)

    p = actions.add_parser("update", help="update a service", epilog=WAIT_EPILOG,
                           description="Change a service; only the given settings change. Prints the "
                                       "service name.")
    p.add_argument("--replicas", metavar="N", help="number of tasks (replicated services)")
    p.add_argument("--image", help="new image")
    p.add_argument("--args", dest="task_args", metavar="\"CMD ARG...\"",
                   help="new task arguments, one shell-quoted string ('' resets to the image's)")
    p.add_argument("--env-add", action="append", default=[], metavar="KEY=VALUE",
                   help="add or change an environment variable (repeatable)")
    p.add_argument("--env-rm", action="append", default=[], metavar="KEY",
                   help="remove an environment variable (repeatable)")
    p.add_argument("--label-add", action="append", default=[], metavar="KEY=VALUE",
                   help="add or change a service label (repeatable)")
    p.add_argument("--label-rm", action="append", default=[], metavar="KEY", help="remove a service label")
    p.add_argument("--constraint-add", action="append", default=[], metavar="EXPR",
                   help="add a placement constraint (repeatable)")
    p.add_argument("--constraint-rm", action="append", default=[], metavar="EXPR",
                   help="remove a placement constraint (repeatable)")
    p.add_argument("--placement-pref-add", action="append", default=[], metavar="PREF",
                   help="add a placement preference, e.g. spread=node.labels.zone, after the others (repeatable)")
    p.add_argument("--placement-pref-rm", action="append", default=[], metavar="PREF",
                   help="remove a placement preference, e.g. spread=node.labels.zone (repeatable)")
    p.add_argument("--publish-add", action="append", default=[], metavar="PORT",
                   help="publish a port (same syntax as create's --publish; repeatable)")
    p.add_argument("--publish-rm", action="append", default=[], metavar="PORT",
                   help="stop publishing a port: its published port, e.g. 8080 or 8080/udp (repeatable)")
    p.add_argument("--endpoint-mode", choices=mesh_ports.ENDPOINT_MODES, help="vip or dnsrr")
    for kind in ("secret", "config"):
        p.add_argument(f"--{kind}-add", action="append", default=[], metavar=kind.upper(),
                       help=f"add or replace a {kind} (same syntax as create's --{kind}; repeatable)")
        p.add_argument(f"--{kind}-rm", action="append", default=[], metavar="NAME",
                       help=f"remove a {kind} by name (repeatable)")
    _add_task_options(p)
    container_opts.add_update_flags(p)
    p.add_argument("--force", action="store_true", help="replace the tasks even if nothing changed")
    p.add_argument("--rollback", action="store_true",
                   help="go back to the previous spec (as `service rollback`; other options are not allowed)")
    p.add_argument("service", metavar="SERVICE")
    p.set_defaults(func=update)

    p = actions.add_parser("rebalance", help="move a service's tasks toward an even spread, once",
                           description="Move the tasks of a replicated service from its busiest nodes to the least "
                                       "busy ones it may run on, until their counts differ by at most 1: start-first, "
                                       "--update-parallelism at a time. Prints the service name.")
    p.add_argument("service", metavar="SERVICE")
    p.set_defaults(func=rebalance_cmd)

    p = actions.add_parser("rollback", help="go back to a service's previous spec", epilog=WAIT_EPILOG,
                           description="Roll the service back to the spec it had before its last update (the last "
                                       "5 specs are kept), with its --rollback-* settings. Prints the service "
                                       "name.")
    p.add_argument("-d", "--detach", action="store_true", help="do not wait for the service to converge")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print progress")
    p.add_argument("--timeout", metavar="DURATION", default=None,
                   help=f"give up waiting after this long (default {int(DEFAULT_TIMEOUT)}s)")
    p.add_argument("service", metavar="SERVICE")
    p.set_defaults(func=rollback)

    p = actions.add_parser("rm", help="remove one or more services")
    p.add_argument("services", nargs="+", metavar="SERVICE")
    p.set_defaults(func=rm)

    p = actions.add_parser("logs", help="fetch the logs of a service or task",
                           description="Print the output of every task of SERVICE (or of one TASK) as "
                                       "'<service>.<slot>.<task>@<node>    | <line>', merged from all nodes in "
                                       "the order of the engines' timestamps. Tasks whose logs cannot be fetched "
                                       "(a node down or not answering) are named on stderr and the other tasks' "
                                       "lines are still shown (exit 0).")
    p.add_argument("-f", "--follow", action="store_true", help="follow the output, also of new tasks (Ctrl-C ends)")
    p.add_argument("--since", metavar="T", help="only lines since a timestamp (2026-12-07T01:02:03Z, Unix "
                                                "time) or relative (e.g. 42m for 42 minutes)")
    p.add_argument("-n", "--tail", default="all", metavar="N", help="lines from the end of each task (default all)")
    p.add_argument("-t", "--timestamps", action="store_true", help="show the engine's timestamps")
    p.add_argument("--raw", action="store_true", help="do not prefix the lines with the task")
    p.add_argument("--no-task-ids", action="store_true", help="leave the task ids out of the prefix")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate the task ids")
    p.add_argument("service", metavar="SERVICE|TASK")
    p.set_defaults(func=logs)


def _add_task_options(p) -> None:
    """Options shared by create and update (all optional: unset means the server default / unchanged)."""
    p.add_argument("--reserve-cpu", metavar="CPUS", help="CPUs reserved for each task (e.g. 0.5)")
    p.add_argument("--reserve-memory", metavar="BYTES", help="memory reserved for each task (e.g. 128M)")
    p.add_argument("--limit-cpu", metavar="CPUS", help="CPU limit of each task")
    p.add_argument("--limit-memory", metavar="BYTES", help="memory limit of each task (e.g. 1G)")
    p.add_argument("--restart-condition", choices=RESTART_CONDITIONS,
                   help="when to restart a task that ended (server default: any)")
    p.add_argument("--restart-max-attempts", metavar="N", help="restarts before giving up (0: unlimited)")
    p.add_argument("--restart-delay", metavar="DURATION", help="wait between restarts (e.g. 5s)")
    p.add_argument("--restart-window", metavar="DURATION", help="window in which restarts are counted (e.g. 1m)")
    p.add_argument("--placement-strategy", choices=STRATEGIES,
                   help="how the scheduler picks nodes (default: the swarm's default strategy)")
    p.add_argument("--replicas-max-per-node", metavar="N", help="at most N tasks on one node (0: unlimited)")
    p.add_argument("--stop-grace-period", metavar="DURATION", help="time to stop before killing (e.g. 10s)")
    p.add_argument("--network", action="append", default=[], metavar="NETWORK",
                   help="the containers' network: host (the server's default) or none; swarmctl has no overlay "
                        "networks")
    container_opts.add_shared_flags(p)
    p.add_argument("--hostname", metavar="NAME",
                   help="container hostname; may use placeholders such as {{.Task.Slot}} or {{.Node.Hostname}}")
    p.add_argument("--entrypoint", metavar="\"CMD ARG...\"",
                   help="override the image's entrypoint (one shell-quoted string)")
    p.add_argument("--rebalance", choices=("auto", "never"),
                   help="auto: move tasks onto nodes that join, come back or become active, without a capacity "
                        "dip (default: the swarm's --default-rebalance, never unless set)")
    for kind, actions in (("update", UPDATE_ACTIONS), ("rollback", ROLLBACK_ACTIONS)):
        what = "an update" if kind == "update" else "a rollback"
        p.add_argument(f"--{kind}-parallelism", metavar="N",
                       help=f"tasks replaced at once in {what} (0: all at once; default 1)")
        p.add_argument(f"--{kind}-delay", metavar="DURATION", help=f"wait between the tasks of {what} (default 0s)")
        p.add_argument(f"--{kind}-order", choices=UPDATE_ORDERS,
                       help="stop-first: the old task stops before the new one starts (default); start-first: "
                            "the new one runs (healthy) before the old one stops")
        p.add_argument(f"--{kind}-failure-action", choices=actions,
                       help=f"what a failure of {what} does (default pause)")
        p.add_argument(f"--{kind}-monitor", metavar="DURATION",
                       help="how long after it runs a new task is watched for failure (default 5s)")
        p.add_argument(f"--{kind}-max-failure-ratio", metavar="RATIO",
                       help="share of failed tasks tolerated, 0 to 1 (default 0)")
        p.add_argument(f"--{kind}-healthy-deadline", metavar="DURATION",
                       help="a new task not running (healthy) within this counts as failed (default 5m)")
        p.add_argument(f"--{kind}-progress-deadline", metavar="DURATION",
                       help=f"{what} not completed within this runs the failure action (default 10m)")
    p.add_argument("--health-cmd", metavar="CMD", help="Command to run to check health")
    p.add_argument("--health-interval", metavar="DURATION", help="Time between running the check (ms|s|m|h)")
    p.add_argument("--health-retries", metavar="N", help="Consecutive failures needed to report unhealthy")
    p.add_argument("--health-start-period", metavar="DURATION",
                   help="Start period for the container to initialize before counting retries towards unstable "
                        "(ms|s|m|h)")
    p.add_argument("--health-start-interval", metavar="DURATION",
                   help="Time between running the check during the start period (ms|s|m|h)")
    p.add_argument("--health-timeout", metavar="DURATION", help="Maximum time to allow one check to run (ms|s|m|h)")
    p.add_argument("--no-healthcheck", action="store_true", help="Disable any container-specified HEALTHCHECK")
    p.add_argument("-d", "--detach", action="store_true", help="do not wait for the service to converge")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print progress")
    p.add_argument("--timeout", metavar="DURATION", default=None,
                   help=f"give up waiting after this long (default {int(DEFAULT_TIMEOUT)}s)")


def add_swarm_update_parser(swarm) -> None:
    """`swarmctl swarm update`, registered from swarm_cmds.add_parsers."""
    p = swarm.add_parser("update", help="change swarm-wide settings")
    p.add_argument("--default-strategy", choices=STRATEGIES,
                   help="placement strategy of services that do not set one")
    p.add_argument("--default-rebalance", choices=("auto", "never"),
                   help="whether services without --rebalance move tasks onto nodes that join (default never)")
    add_swarm_settings_args(p)
    p.add_argument("--task-port-range", metavar="LOW-HIGH",
                   help="host ports given to tasks for their published targets (default 20000-29999)")
    p.add_argument("--autolock", type=_true_false, metavar="true|false",
                   help="change manager autolocking (true: a restarted manager needs the unlock key)")
    p.set_defaults(func=swarm_update)


def add_swarm_settings_args(p) -> None:
    """The settings `swarm init` and `swarm update` share (Docker's flags; ticks: state/raftsettings.py)."""
    p.add_argument("--cert-expiry", metavar="DURATION",
                   help="validity of node certificates issued from now on, e.g. 2160h (the default, 90 days); "
                        "at least 1m. Nodes renew theirs when 50-80%% of it has passed")
    p.add_argument("--task-history-limit", metavar="N",
                   help="ended tasks kept per slot (per node for global services); default 5, 0 keeps none")
    p.add_argument("--dispatcher-heartbeat", metavar="DURATION",
                   help="how often every node heartbeats, e.g. 5s (0.5s to 1h); unset, each daemon's "
                        "--heartbeat-period")
    p.add_argument("--snapshot-interval", metavar="N",
                   help="Raft log entries between snapshots (log compactions), 100 to 10000000 (default 20000)")
    p.add_argument("--max-snapshots", metavar="N",
                   help="old Raft snapshots kept besides the latest: only 0 (pysyncobj keeps one)")
    p.add_argument("--election-tick", metavar="N",
                   help="Raft election timeout in ticks of 50ms, 2 to 400 (more than --heartbeat-tick); unset, "
                        "5 ticks (12 from 200 nodes on)")
    p.add_argument("--heartbeat-tick", metavar="N",
                   help="ticks of 50ms between the Raft leader's heartbeats, 1 to 20 (default 1)")
    p.add_argument("--log-entries-for-slow-followers", metavar="N",
                   help="Raft log entries kept for slow followers after a snapshot: only 0 (they get the snapshot)")


def _whole(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise UnitError(f"invalid {what} {text!r}: expected a whole number") from None


def swarm_settings_body(args) -> dict:
    """The request keys of the shared settings flags that were given, checked (one line when out of range)."""
    from swarmctl.state import raftsettings
    body = {}
    if args.cert_expiry is not None:
        expiry = parse_duration(args.cert_expiry, "certificate expiry")
        if expiry < 60:
            raise UnitError(f"invalid certificate expiry {args.cert_expiry!r}: it must be at least 1m")
        body["node_cert_expiry"] = expiry
    if args.task_history_limit is not None:
        body["task_history_limit"] = task_history_limit(args.task_history_limit)
    settings = {}
    if args.dispatcher_heartbeat is not None:
        settings["dispatcher_heartbeat_period"] = parse_duration(args.dispatcher_heartbeat, "dispatcher heartbeat")
    for flag, key in (("snapshot_interval", "snapshot_interval"), ("max_snapshots", "keep_old_snapshots"),
                      ("election_tick", "election_tick"), ("heartbeat_tick", "heartbeat_tick"),
                      ("log_entries_for_slow_followers", "log_entries_for_slow_followers")):
        text = getattr(args, flag)
        if text is not None:
            settings[key] = _whole(text, "--" + flag.replace("_", "-"))
    try:
        # both ticks given are checked against each other; the server checks one against the swarm's other
        checked = raftsettings.check(settings, cross="election_tick" in settings and "heartbeat_tick" in settings)
    except raftsettings.SettingError as exc:
        raise UnitError(str(exc)) from None
    body.update(checked)
    return body


def task_history_limit(text: str) -> int:
    """`--task-history-limit N`: a whole number from 0 to MAX_TASK_HISTORY."""
    from swarmctl.api.limits import MAX_TASK_HISTORY
    try:
        value = int(text.strip())
    except ValueError:
        raise UnitError(f"invalid task history limit {text!r}: expected a whole number") from None
    if not 0 <= value <= MAX_TASK_HISTORY:
        raise UnitError(f"invalid task history limit {text!r}: it must be between 0 and {MAX_TASK_HISTORY}")
    return value


def task_port_range(text: str) -> list[int]:
    """`--task-port-range 20000-29999`."""
    low, sep, high = text.strip().partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise UnitError(f"invalid task port range {text!r}: expected LOW-HIGH, e.g. 20000-29999")
    low_n, high_n = int(low), int(high)
    if not 1 <= low_n <= high_n <= 65535:
        raise UnitError(f"invalid task port range {text!r}: ports in 1-65535, the first not above the last")
    return [low_n, high_n]


def publish_list(items: list[str], flag: str = "--publish") -> list[dict]:
    """Parsed `--publish` values; a bad one fails with Docker's wording."""
    ports = []
    for item in items:
        try:
            ports.append(mesh_ports.parse_publish(item))
        except mesh_ports.PortError as exc:
            short = "-p, --publish" if flag == "--publish" else flag
            raise UnitError(f'invalid argument "{item}" for "{short}" flag: {exc}') from None
    return ports


def _true_false(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"invalid boolean {text!r}: use true or false")
    return text.lower() == "true"


def swarm_update(client, args) -> int:
    """Sends the cluster's version; on "update out of sequence" it re-reads and retries (client.update_with_retry)
    while neither setting it changes was changed meanwhile: both are absolute values."""
    body = {}
    if args.default_strategy:
        body["default_strategy"] = args.default_strategy
    if args.default_rebalance:
        body["default_rebalance"] = args.default_rebalance
    body.update(swarm_settings_body(args))
    if args.task_port_range is not None:
        body["task_port_range"] = task_port_range(args.task_port_range)
    unlock_key = None
    if args.autolock is not None:
        from swarmctl.cli.swarm_cmds import print_unlock_command, set_autolock  # swarm_cmds imports this module
        unlock_key = set_autolock(client, args.autolock)
    if body or args.autolock is None:
        paths = [("spec", key) for key in body]
        update_with_retry(lambda: client.get("/v1/swarm"), lambda _cluster: (body, paths),
                          lambda cluster, b: client.post(with_version("/v1/swarm/update", cluster), b))
    print("Swarm updated.")
    if unlock_key:
        print_unlock_command(unlock_key)
    return 0


# ==== request bodies (pure) =====================================================================
def _split_words(text: str, what: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UnitError(f"invalid {what} {text!r}: {exc}") from None


def _check_constraint(expr: str) -> str:
    expr = (expr or "").strip()
    if "==" not in expr and "!=" not in expr:
        raise UnitError(f"invalid constraint {expr!r}: expected KEY==VALUE or KEY!=VALUE")
    return expr


def placement_prefs(items: list[str], flag: str) -> list[dict]:
    """`--placement-pref spread=node.labels.zone` values as spec preferences; a bad one fails with Docker's wording
    (the descriptor itself is checked by the server)."""
    prefs = []
    for item in items:
        fields = item.split("=")
        if len(fields) != 2:
            raise UnitError(f'invalid argument "{item}" for "{flag}" flag: placement preference must be of the '
                            'format "<strategy>=<arg>"')
        if fields[0] != "spread":
            raise UnitError(f'invalid argument "{item}" for "{flag}" flag: unsupported placement preference '
                            f"{fields[0]} (only spread is supported)")
        prefs.append({"spread": fields[1]})
    return prefs


def _norm_constraint(expr: str) -> str:
    return re.sub(r"\s*(==|!=)\s*", r"\1", (expr or "").strip())


def task_options(args) -> dict:
    """The task-spec fields set by the options shared by create and update; only the options given."""
    task: dict = {}
    resources: dict = {}
    for kind, prefix in (("reservations", "reserve"), ("limits", "limit")):
        cpu = getattr(args, f"{prefix}_cpu", None)
        memory = getattr(args, f"{prefix}_memory", None)
        if cpu is not None:
            resources.setdefault(kind, {})["cpus"] = parse_cpus(cpu, f"--{prefix}-cpu")
        if memory is not None:
            resources.setdefault(kind, {})["memory"] = parse_bytes(memory, f"--{prefix}-memory")
    if resources:
        task["resources"] = resources
    restart: dict = {}
    if args.restart_condition:
        restart["condition"] = args.restart_condition
    if args.restart_max_attempts is not None:
        restart["max_attempts"] = parse_int(args.restart_max_attempts, "--restart-max-attempts")
    if args.restart_delay is not None:
        restart["delay"] = parse_duration(args.restart_delay, "--restart-delay")
    if args.restart_window is not None:
        restart["window"] = parse_duration(args.restart_window, "--restart-window")
    if restart:
        task["restart_policy"] = restart
    placement: dict = {}
    if args.placement_strategy:
        placement["strategy"] = args.placement_strategy
    if args.replicas_max_per_node is not None:
        placement["max_replicas_per_node"] = parse_int(args.replicas_max_per_node, "--replicas-max-per-node")
    if placement:
        task["placement"] = placement
    if args.stop_grace_period is not None:
        task["stop_grace_period"] = parse_duration(args.stop_grace_period, "--stop-grace-period")
    network = container_opts.network_mode(args.network)
    if network:
        task["network_mode"] = network
    if args.entrypoint is not None:
        task["command"] = _split_words(args.entrypoint, "--entrypoint")
    if args.hostname is not None:
        task["hostname"] = args.hostname
    return task


def update_configs(args) -> dict:
    """{"update_config": {...}, "rollback_config": {...}} for the --update-* and --rollback-* options given
    (and "rebalance" for --rebalance)."""
    out = {}
    if getattr(args, "rebalance", None):
        out["rebalance"] = args.rebalance
    for kind in ("update", "rollback"):
        config: dict = {}
        value = getattr(args, f"{kind}_parallelism", None)
        if value is not None:
            config["parallelism"] = parse_int(value, f"--{kind}-parallelism")
        for key in ("delay", "monitor", "healthy_deadline", "progress_deadline"):
            value = getattr(args, f"{kind}_{key}", None)
            if value is not None:
                flag = f"--{kind}-{key.replace('_', '-')}"
                config[key] = parse_duration(value, flag)
                if key.endswith("deadline") and config[key] <= 0:
                    raise UnitError(f"invalid {flag} {value!r}: must be more than 0")
        for key in ("order", "failure_action"):
            value = getattr(args, f"{kind}_{key}", None)
            if value is not None:
                config[key] = value
        value = getattr(args, f"{kind}_max_failure_ratio", None)
        if value is not None:
            try:
                ratio = float(value)
            except ValueError:
                ratio = -1.0
            if not 0 <= ratio <= 1:
                raise UnitError(f'invalid argument "{value}" for "--{kind}-max-failure-ratio" flag: '
                                "must be a number between 0 and 1")
            config["max_failure_ratio"] = ratio
        if config:
            out[f"{kind}_config"] = config
    return out
_HEALTH_DURATIONS = (("interval", "--health-interval"), ("timeout", "--health-timeout"),
                     ("start_period", "--health-start-period"), ("start_interval", "--health-start-interval"))


def _health_flags_given(args) -> bool:
    return args.health_cmd is not None or args.health_retries is not None or \
        any(getattr(args, f"health_{key}") is not None for key, _flag in _HEALTH_DURATIONS)


def healthcheck_options(args, old: dict | None = None) -> dict | None:
    """The task's healthcheck after the --health-* and --no-healthcheck flags (None: no such flag), as Docker's
    CLI does it: on create the flags given; on update they change the service's healthcheck (`old`), a check
    that was turned off ("NONE") goes back to the image's test unless --health-cmd names one, and
    --health-cmd "" means the image's test. --no-healthcheck replaces the whole check."""
    given = _health_flags_given(args)
    if args.no_healthcheck:
        if given:
            raise UnitError("--no-healthcheck conflicts with --health-* options")
        return {"test": ["NONE"]}
    if not given:
        return None
    health = dict(old or {})
    if health.get("test") == ["NONE"]:
        health["test"] = []
    for key, flag in _HEALTH_DURATIONS:
        text = getattr(args, f"health_{key}")
        if text is not None:
            if text.strip().startswith("-"):
                raise UnitError(f'invalid argument "{text}" for "{flag}" flag: duration cannot be negative')
            health[key] = parse_duration(text, flag)
    if args.health_retries is not None:
        health["retries"] = parse_int(args.health_retries, "--health-retries")
    if args.health_cmd is not None:
        health["test"] = ["CMD-SHELL", args.health_cmd] if args.health_cmd.strip() else []
    health.setdefault("test", [])
    return health


def file_ref(kind: str, text: str, flag: str) -> dict:
    """Docker's --secret / --config value: NAME, or source=NAME,target=T,uid=U,gid=G,mode=M (mode in Go's
    integer syntax: 0444 is octal); the task-spec reference with the name only (the leader finds the id)."""
    text = text or ""
    fields = [f for f in text.split(",")] if text else []
    ref: dict = {f"{kind}_name": None}
    if len(fields) == 1 and "=" not in fields[0]:
        ref[f"{kind}_name"] = fields[0]
    else:
        for field in fields:
            key, sep, value = field.partition("=")
            if not sep or not key:
                raise UnitError(f'invalid argument "{text}" for "{flag}" flag: invalid field \'{field}\' must be a '
                                "key=value pair")
            key = key.lower()
            if key in ("source", "src"):
                ref[f"{kind}_name"] = value
            elif key == "target":
                ref["target"] = value
            elif key in ("uid", "gid"):
                if not value.isdigit():
                    raise UnitError(f'invalid argument "{text}" for "{flag}" flag: invalid {key} {value!r}: '
                                    "expected a number")
                ref[key] = value
            elif key == "mode":
                try:
                    ref["mode"] = int(value, 8) if re.fullmatch(r"0[0-7]+", value) else int(value, 0)
                except ValueError:
                    raise UnitError(f'invalid argument "{text}" for "{flag}" flag: invalid mode specified: '
                                    f"{value!r}") from None
                if not 0 <= ref["mode"] <= 0o7777:
                    raise UnitError(f'invalid argument "{text}" for "{flag}" flag: invalid mode specified: '
                                    f"{value!r}")
            else:
                raise UnitError(f'invalid argument "{text}" for "{flag}" flag: invalid field in {kind} request: '
                                f"{key}")
    if not ref[f"{kind}_name"]:
        raise UnitError(f'invalid argument "{text}" for "{flag}" flag: source is required')
    return ref


def file_refs(kind: str, items: list[str], flag: str) -> list[dict]:
    refs = [file_ref(kind, item, flag) for item in items]
    seen = set()
    for ref in refs:  # the daemon says it too; here it fails before any request
        target = ref.get("target") or ref[f"{kind}_name"]
        if target in seen:
            raise UnitError(f"duplicate {kind} target for {ref[f'{kind}_name']} not allowed")
        seen.add(target)
    return refs


def updated_refs(kind: str, old: list[dict], add: list[str], remove: list[str]) -> list[dict]:
    """--KIND-rm NAME, then --KIND-add (Docker's order); an added one replaces an old one of the same name."""
    added = file_refs(kind, add, f"--{kind}-add")
    gone = set(remove) | {r[f"{kind}_name"] for r in added}
    return [dict(r) for r in old if r.get(f"{kind}_name") not in gone] + added


def build_create_body(args, name: str | None = None) -> dict:
    """The POST /v1/services body for parsed `service create` arguments; unset options are left out."""
    name = name or args.name
    if not name:
        raise UnitError("a service name is required")
    task = {"image": args.image}
    if not args.image or not args.image.strip():
        raise UnitError("an image is required")
    if args.command:
        task["args"] = list(args.command)
    if args.env:
        task["env"] = dict(parse_kv(item, "--env") for item in args.env)
    task.update(task_options(args))
    task.update(container_opts.create_options(args))
    if args.env_file:  # read here: files in order, a later one wins, then --env wins (the server knows no files)
        task["env"] = {**container_opts.read_env_files(args.env_file), **task.get("env", {})}
    health = healthcheck_options(args)
    if health is not None:
        task["healthcheck"] = health
    if task.get("command") == []:
        del task["command"]  # --entrypoint "" on create: the image's own entrypoint
    if args.constraint:
        task.setdefault("placement", {})["constraints"] = [_check_constraint(c) for c in args.constraint]
    if args.placement_pref:
        task.setdefault("placement", {})["preferences"] = placement_prefs(args.placement_pref, "--placement-pref")
    for kind in ("secret", "config"):
        if getattr(args, kind, None):
            task[f"{kind}s"] = file_refs(kind, getattr(args, kind), f"--{kind}")
    body = {"name": name, "mode": args.mode, "labels": dict(parse_kv(item, "--label") for item in args.label),
            "task": task}
    if args.replicas is not None:
        if args.mode == "global":
            raise UnitError("--replicas can only be used with replicated mode")
        body["replicas"] = parse_int(args.replicas, "--replicas")
    if args.publish or args.endpoint_mode:
        body["endpoint"] = {"mode": args.endpoint_mode or "vip",
                            "ports": [_strip(p) for p in publish_list(args.publish)]}
    body.update(update_configs(args))
    return body


def _strip(port: dict) -> dict:
    """A port for a request body: an omitted published port is left out (the leader picks one)."""
    return {k: v for k, v in port.items() if v is not None}


def updated_endpoint(args, old: dict | None) -> dict | None:
    """The endpoint after --publish-rm, then --publish-add (Docker's order), and --endpoint-mode; None when no
    such flag was given. A port added again with the same published port and protocol replaces the old one."""
    if not (args.publish_add or args.publish_rm or args.endpoint_mode):
        return None
    old = old or {}
    added = publish_list(args.publish_add, "--publish-add")
    ports = [dict(p) for p in old.get("ports") or []]
    for text in args.publish_rm:
        try:
            ports = [p for p in ports if not mesh_ports.publish_rm_matches(p, text)]
        except mesh_ports.PortError as exc:
            raise UnitError(f'invalid argument "{text}" for "--publish-rm" flag: {exc}') from None
    for port in added:
        if port["published_port"] is not None:
            ports = [p for p in ports if (p.get("published_port"), p["protocol"])
                     != (port["published_port"], port["protocol"])]
        ports.append(port)
    return {"mode": args.endpoint_mode or old.get("mode") or "vip", "ports": [_strip(p) for p in ports]}


def build_update_body(args, service: dict) -> dict:
    """The POST /v1/services/{ref}/update body: the changed parts only, computed from the current service."""
    spec = service["spec"]
    old_task = spec.get("task") or {}
    body: dict = {}
    if args.replicas is not None:
        if spec.get("mode") == "global":
            raise UnitError("--replicas can only be used with replicated mode")
        body["replicas"] = parse_int(args.replicas, "--replicas")
    if args.label_add or args.label_rm:
        labels = dict(spec.get("labels") or {})
        labels.update(parse_kv(item, "--label-add") for item in args.label_add)  # Docker: add, then remove
        for key in args.label_rm:
            labels.pop(parse_key(key, "--label-rm"), None)
        body["labels"] = labels
    task = task_options(args)
    if args.image is not None:
        if not args.image.strip():
            raise UnitError("invalid --image: empty")
        task["image"] = args.image
    if args.task_args is not None:
        task["args"] = _split_words(args.task_args, "--args")
    if args.env_add or args.env_rm:
        env = dict(old_task.get("env") or {})
        for key in args.env_rm:  # Docker: remove, then add
            env.pop(parse_key(key, "--env-rm"), None)
        env.update(parse_kv(item, "--env-add") for item in args.env_add)
        task["env"] = env
    if args.constraint_add or args.constraint_rm:
        old = list((old_task.get("placement") or {}).get("constraints") or [])
        added = [_check_constraint(c) for c in args.constraint_add]
        removed = {_norm_constraint(c) for c in args.constraint_rm}
        constraints, seen = [], set()
        for expr in old + added:  # Docker: add, then remove
            norm = _norm_constraint(expr)
            if norm not in removed and norm not in seen:
                seen.add(norm)
                constraints.append(expr)
        task.setdefault("placement", {})["constraints"] = constraints
    if args.placement_pref_add or args.placement_pref_rm:
        old_prefs = list((old_task.get("placement") or {}).get("preferences") or [])
        removed = placement_prefs(args.placement_pref_rm, "--placement-pref-rm")
        added = placement_prefs(args.placement_pref_add, "--placement-pref-add")
        prefs = [p for p in old_prefs if p not in removed]  # Docker: remove, then add at the end
        task.setdefault("placement", {})["preferences"] = prefs + added
    task.update(container_opts.update_options(args, old_task))
    health = healthcheck_options(args, old_task.get("healthcheck"))
    if health is not None:
        task["healthcheck"] = health
    for kind in ("secret", "config"):
        add, remove = getattr(args, f"{kind}_add", []), getattr(args, f"{kind}_rm", [])
        if add or remove:
            task[f"{kind}s"] = updated_refs(kind, old_task.get(f"{kind}s") or [], add, remove)
    if task:
        body["task"] = task
    endpoint = updated_endpoint(args, spec.get("endpoint"))
    if endpoint is not None:
        body["endpoint"] = endpoint
    body.update(update_configs(args))
    body["force"] = bool(args.force)
    return body


def _leaves(tree: dict, prefix: tuple) -> list[tuple]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.extend(_leaves(value, prefix + (key,)))
        else:
            out.append(prefix + (key,))
    return out


def update_paths(args) -> list[tuple]:
    """The fields of the service record that `service update` changes, for the retry rule
    (client.still_meaningful): a retry after "update out of sequence" re-applies the flags to the fresh spec
    only while none of these was changed by someone else.
      --replicas, --image, --args, --entrypoint and the task options: the field they set;
      --label-add/--label-rm KEY, --env-add/--env-rm KEY: that key of the labels or env (another key changed
        meanwhile is kept and retried over);
      --constraint-add/--constraint-rm: the constraint list;  --placement-pref-add/-rm: the preference list;
      --force: the task's force_update counter."""
    paths: list[tuple] = []
    if args.replicas is not None:
        paths.append(("spec", "replicas"))
    for item in args.label_add:
        paths.append(("spec", "labels", item.partition("=")[0]))
    for key in args.label_rm:
        paths.append(("spec", "labels", key.partition("=")[0]))
    paths.extend(_leaves(task_options(args), ("spec", "task")))
    paths.extend(container_opts.update_paths(args))
    if args.image is not None:
        paths.append(("spec", "task", "image"))
    if args.task_args is not None:
        paths.append(("spec", "task", "args"))
    for item in list(args.env_add) + list(args.env_rm):
        paths.append(("spec", "task", "env", item.partition("=")[0]))
    if args.constraint_add or args.constraint_rm:
        paths.append(("spec", "task", "placement", "constraints"))
    if args.placement_pref_add or args.placement_pref_rm:
        paths.append(("spec", "task", "placement", "preferences"))
    if args.no_healthcheck or _health_flags_given(args):
        paths.append(("spec", "task", "healthcheck"))
    if args.force:
        paths.append(("spec", "task", "force_update"))
    for kind in ("secret", "config"):
        if getattr(args, f"{kind}_add", None) or getattr(args, f"{kind}_rm", None):
            paths.append(("spec", "task", f"{kind}s"))
    if args.publish_add or args.publish_rm or args.endpoint_mode:
        paths.append(("spec", "endpoint"))
    for key, config in update_configs(args).items():
        if isinstance(config, dict):
            paths.extend(("spec", key, field) for field in config)
        else:
            paths.append(("spec", key))
    return paths


def parse_scale_args(items: list[str]) -> list[tuple[str, int]]:
    """["web=3", "api=0"] -> [("web", 3), ("api", 0)]; a repeated service keeps its last value."""
    result: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not re.fullmatch(r"\d+", value.strip()):
            raise UnitError(f"invalid scale specifier {item!r}: expected SERVICE=REPLICAS with REPLICAS a whole "
                            "number >= 0, e.g. web=3")
        result[name.strip()] = int(value.strip())
    return list(result.items())


_ADJECTIVES = ("admiring", "amazing", "blissful", "bold", "brave", "busy", "calm", "clever", "cool", "dazzling",
               "eager", "ecstatic", "elastic", "epic", "festive", "focused", "friendly", "gallant", "gifted",
               "happy", "hopeful", "jolly", "keen", "kind", "laughing", "loving", "lucid", "magical", "modest",
               "nifty", "nostalgic", "optimistic", "peaceful", "practical", "quirky", "relaxed", "serene",
               "sharp", "stoic", "sweet", "tender", "trusting", "upbeat", "vibrant", "wizardly", "zealous")
_NAMES = ("agnesi", "babbage", "bardeen", "bell", "boole", "curie", "darwin", "dijkstra", "einstein", "euler",
          "feynman", "franklin", "galileo", "gauss", "goldberg", "hamilton", "hodgkin", "hopper", "hypatia",
          "johnson", "kepler", "knuth", "lamarr", "lamport", "liskov", "lovelace", "maxwell", "mccarthy",
          "meitner", "noether", "pascal", "pasteur", "ritchie", "shannon", "tesla", "thompson", "torvalds",
          "turing", "wilson", "wozniak", "yonath")


def _pick(words: tuple) -> str:
    return words[int.from_bytes(os.urandom(4), "big") % len(words)]


def random_name() -> str:
    """A Docker-style generated name such as "nostalgic_hopper"."""
    return f"{_pick(_ADJECTIVES)}_{_pick(_NAMES)}"


# ==== tables (pure) =============================================================================
def _title(text: str | None) -> str:
    return (text or "").capitalize()


def ls_rows(services: list[dict]) -> list[list[str]]:
    rows = []
    for s in services:
        spec = s["spec"]
        status = s.get("replicas_status") or {}
        replicas = f"{status.get('running', 0)}/{status.get('desired') or 0}"
        per_node = ((spec.get("task") or {}).get("placement") or {}).get("max_replicas_per_node")
        if per_node:
            replicas += f" (max {per_node} per node)"
        update = s.get("update_status") or {}
        if update.get("state") and update["state"] not in ("completed",) and \
                update.get("spec_version") == s.get("spec_version"):
            replicas += f" ({update['state'].replace('_', ' ')})"
        rows.append([s["id"][:12], spec["name"], spec.get("mode") or "", replicas,
                     (spec.get("task") or {}).get("image") or "", mesh_ports.format_ports(spec.get("endpoint"))])
    return rows


LS_HEADERS = ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
PS_HEADERS = ["ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"]


def _task_created(task: dict) -> float:
    return task.get("created_at") or task["status"].get("timestamp") or 0


def order_tasks(tasks: list[dict]) -> list[tuple[dict, bool]]:
    """(task, is_history) in display order: per slot (or node, for global services), the live task first,
    then older tasks newest first. Slots keep the order in which the server listed them."""
    groups: dict[tuple, list[dict]] = {}
    for t in tasks:
        key = (t.get("service_id"), "slot", t["slot"]) if t.get("slot") is not None else \
            (t.get("service_id"), "node", t.get("node_id"))
        groups.setdefault(key, []).append(t)
    out = []
    for group in groups.values():
        group.sort(key=lambda t: (t.get("desired_state") != "running", -_task_created(t)))
        out.extend((t, i > 0) for i, t in enumerate(group))
    return out


def task_error(task: dict, trunc: bool = True) -> str:
    """Docker's ERROR column: the task's err (or why a pending task cannot be scheduled), quoted; untruncated, an
    unhealthy task's err is followed by its last health check's output (Docker shows it only in inspect)."""
    status = task.get("status") or {}
    err = status.get("err") or ""
    message = status.get("message") or ""
    if not err and status.get("state") == "pending" and message.startswith("no suitable node"):
        err = message
    if not trunc and status.get("health") == "unhealthy" and status.get("health_output"):
        err = f"{err} (last health check: {status['health_output']})"
    err = " ".join(err.split())  # one line
    if trunc and len(err) > MAX_ERROR_WIDTH:
        err = err[:MAX_ERROR_WIDTH - 1] + "…"
    return f"\"{err}\"" if err else ""


def current_state(task: dict, now: float) -> str:
    status = task.get("status") or {}
    state = _title(status.get("state"))
    ts = status.get("timestamp")
    if not ts:
        return state
    return f"{state} {human_age(now - ts).lower()} ago"


def ps_rows(tasks: list[dict], now: float, no_trunc: bool = False) -> list[list[str]]:
    rows = []
    for task, history in order_tasks(tasks):
        name = task.get("name") or f"{task.get('service_name')}.{task.get('slot') or task.get('node_id')}"
        rows.append([task["id"] if no_trunc else task["id"][:12],
                     (" \\_ " + name) if history else name,
                     (task.get("spec") or {}).get("image") or "",
                     task.get("node_name") or "",
                     _title(task.get("desired_state")),
                     current_state(task, now),
                     task_error(task, trunc=not no_trunc)])
    return rows


# ==== convergence (pure decision) ===============================================================
class Decision:
    """state: "waiting", "converged" or "failed"; reason: why it failed."""

    __slots__ = ("state", "reason")

    def __init__(self, state: str, reason: str = ""):
        self.state = state
        self.reason = reason

    def __eq__(self, other) -> bool:
        return isinstance(other, Decision) and (self.state, self.reason) == (other.state, other.reason)

    def __repr__(self) -> str:
        return f"Decision({self.state!r}, {self.reason!r})"


WAITING = Decision("waiting")


def failure_count(progress: dict) -> int:
    """Failed tasks of the current spec in a progress answer; "failed_count" (exact, added by the CLI when the
    server's list of failures is full) wins over the length of the capped list."""
    if isinstance(progress.get("failed_count"), int):
        return progress["failed_count"]
    return len(progress.get("failed") or [])


def progress_line(progress: dict) -> str:
    return f"overall progress: {progress.get('running', 0)} out of {progress.get('desired') or 0} tasks"


# Docker's progress bar per slot: how far along its way to running a task's state is
_BAR_STATES = ("new", "pending", "assigned", "accepted", "preparing", "starting", "running")
BAR_WIDTH = 50


def progress_lines(progress: dict) -> list[str]:
    """The terminal view: the overall line, then one line per slot (`1/3: running   [=====>   ]`), as Docker's."""
    lines = [progress_line(progress)]
    slots = progress.get("slots") or []
    desired = progress.get("desired") or len(slots)
    if not slots or desired > 100:
        return lines
    for item in slots:
        state = item.get("state") or ""
        step = _BAR_STATES.index(state) + 1 if state in _BAR_STATES else 0
        filled = BAR_WIDTH * step // len(_BAR_STATES)
        bar = "=" * max(0, filled - 1) + (">" if filled else "") + " " * (BAR_WIDTH - filled)
        label = f"{item['slot']}/{desired}" if isinstance(item.get("slot"), int) else str(item.get("slot"))[:12]
        lines.append(f"{label}: {state:<10}[{bar}]")
    return lines


class TerminalProgress:
    """Redraws the progress lines in place (ANSI: cursor up, clear line), the way `docker service` does on a
    terminal; elsewhere the wait prints a plain line on each change instead."""

    def __init__(self, out):
        self.out = out
        self.drawn = 0

    def draw(self, lines: list[str]) -> None:
        text = ""
        if self.drawn:
            text += f"\x1b[{self.drawn}A"
        for line in lines:
            text += "\x1b[2K" + line + "\n"
        for _ in range(max(0, self.drawn - len(lines))):  # the view shrank: clear what is left below
            text += "\x1b[2K\n"
        self.out.write(text)
        self.out.flush()
        self.drawn = max(self.drawn, len(lines))


class ConvergenceTracker:
    """Feed it progress answers (GET /v1/services/{ref}/progress) with their times; it decides when to stop.

    - converged: running == desired and no task is pending with a reason (a global service showing 0 tasks only
      after `settle` seconds, since the orchestrator creates its tasks after the create is committed);
    - failed: more than desired + FAILURE_MARGIN failures beyond `baseline_failures` (failures that existed
      before a scale); a task pending with "no suitable node" for more than `pending_grace` seconds;
      with restart condition none, tasks that ended (they are never replaced) after a failure; the timeout.
    `None` as progress means "no answer this time" (e.g. a 503 during a leader change): only the timeout counts.
    """

    def __init__(self, start: float, *, timeout: float = DEFAULT_TIMEOUT, baseline_failures: int = 0,
                 global_mode: bool = False, restart_condition: str | None = None,
                 pending_grace: float | None = None, settle: float | None = None, follow_update: str | None = None):
        self.follow_update = follow_update  # "update" or "rollback": also wait for the rolling update to end
        self.start = start
        self.timeout = timeout
        self.baseline = baseline_failures
        self.global_mode = global_mode
        self.restart_condition = restart_condition
        self.pending_grace = PENDING_GRACE if pending_grace is None else pending_grace
        self.settle = GLOBAL_SETTLE if settle is None else settle
        self.max_failures = baseline_failures
        self.pending_since: float | None = None
        self.last: dict | None = None
        self.last_failure: dict | None = None

    def feed(self, progress: dict | None, now: float) -> Decision:
        if progress is not None:
            decision = self._judge(progress, now)
            if decision is not WAITING:
                return decision
        if now - self.start >= self.timeout:
            last = self.last or {}
            return Decision("failed", f"it did not converge within {self.timeout:g}s "
                                      f"({last.get('running', 0)} out of {last.get('desired') or 0} tasks running)")
        return WAITING

    def _judge(self, progress: dict, now: float) -> Decision:
        self.last = progress
        status = progress.get("update_status") if self.follow_update else None
        if status:
            state = status.get("state")
            if state in STOPPED_UPDATES:
                return Decision("failed", status.get("message") or state)
            if self.follow_update == "update" and state in ("rollback_started", "rollback_completed"):
                return Decision("failed", status.get("message") or state)
            if state in ("updating", "rollback_started"):
                return WAITING  # a rolling update is under way (or watching its last tasks: --update-monitor)
        running = progress.get("running") or 0
        desired = progress.get("desired") or 0
        if progress.get("failed"):
            self.last_failure = progress["failed"][-1]
        self.max_failures = max(self.max_failures, failure_count(progress))
        failures = self.max_failures - self.baseline
        if failures > desired + FAILURE_MARGIN:
            return Decision("failed", f"its tasks keep failing ({failures} failures{self._last_failure()})")
        pending = progress.get("pending") or []
        if pending:
            if self.pending_since is None:
                self.pending_since = now
            elif now - self.pending_since > self.pending_grace:
                return Decision("failed", f"a task is pending: {pending[0]}")
        else:
            self.pending_since = None
        if pending:
            return WAITING
        if running == desired:
            if desired == 0 and self.global_mode and now - self.start < self.settle:
                return WAITING
            return Decision("converged")
        ended = progress.get("ended") or 0
        if self.restart_condition == "none" and ended and running + ended >= desired:
            if failures > 0:
                return Decision("failed", f"{ended} task(s) ended and restart condition none does not restart "
                                          f"them{self._last_failure()}")
            return Decision("converged")
        return WAITING

    def _last_failure(self) -> str:
        if not self.last_failure:
            return ""
        return f"; last: {self.last_failure.get('task')}: {self.last_failure.get('error')}"


def decide(samples, **options) -> Decision:
    """The decision after a sequence of (time, progress) samples, the first time being the start of the wait."""
    samples = list(samples)
    if not samples:
        return WAITING
    tracker = ConvergenceTracker(samples[0][0], **options)
    decision = WAITING
    for now, progress in samples:
        decision = tracker.feed(progress, now)
        if decision is not WAITING:
            return decision
    return decision


# ==== talking to the daemon ======================================================================
_RETRY_STATUSES = (500, 502, 503, 504)


def _get_or_none(client, path: str):
    """A GET during the wait: None for a transient server error (no leader yet, leader change)."""
    try:
        return client.get(path)
    except DaemonError as exc:
        if exc.status in _RETRY_STATUSES:
            return None
        raise


def count_failures(client, ref: str, progress: dict) -> int:
    """Failed tasks of the current spec: from the progress answer, or exactly from the task list when the
    progress route's list of failures is full (it shows only the last few)."""
    failed = progress.get("failed") or []
    if len(failed) < FAILED_LIST_CAP:
        return len(failed)
    service = client.get(f"/v1/services/{_ref(ref)}")
    tasks = client.get(f"/v1/services/{_ref(ref)}/tasks")
    return sum(1 for t in tasks if t.get("spec_version") == service.get("spec_version")
               and (t.get("status") or {}).get("state") in ("failed", "rejected"))


def wait_for_convergence(client, service: dict, verb: str, *, timeout: float = DEFAULT_TIMEOUT,
                         baseline_failures: int = 0, quiet: bool = False, out=None,
                         clock=time.monotonic, sleep=time.sleep, interval: float | None = None,
                         follow_update: str | None = None) -> None:
    """Poll the progress of a service just written (its view from the write's answer) until it converges;
    raise CLIError when it does not. Progress lines go to `out` (stdout) only when they change."""
    out = out if out is not None else sys.stdout
    interval = POLL_INTERVAL if interval is None else interval
    sid, name = service["id"], service["spec"]["name"]
    start = clock()
    tracker = ConvergenceTracker(start, timeout=timeout, baseline_failures=baseline_failures,
                                 global_mode=service["spec"].get("mode") == "global",
                                 restart_condition=((service["spec"].get("task") or {}).get("restart_policy")
                                                    or {}).get("condition"), follow_update=follow_update)

    def fail(reason: str) -> CLIError:
        if reason.startswith(("update ", "rollback ")):  # the rolling update stopped, and says why
            return CLIError(f"service {name}: {reason} (see 'swarmctl service inspect {name}')")
        return CLIError(f"service {name} was {verb}, but {reason}; the swarm keeps working on it "
                        f"(see 'swarmctl service ps {name}')")

    # Reads come from the local replica, which may lag behind the leader that took the write: wait until
    # it has the written version, or the progress would describe the old spec.
    version = service.get("version") or 0
    while True:
        current = _get_or_none(client, f"/v1/services/{_ref(sid)}")
        if current is not None and (current.get("version") or 0) >= version:
            break
        decision = tracker.feed(None, clock())
        if decision.state == "failed":
            raise fail(decision.reason)
        sleep(interval)
    last_line = None
    terminal = TerminalProgress(out) if not quiet and getattr(out, "isatty", lambda: False)() else None
    while True:
        progress = _get_or_none(client, f"/v1/services/{_ref(sid)}/progress")
        if progress is not None and len(progress.get("failed") or []) >= FAILED_LIST_CAP:
            progress = dict(progress, failed_count=count_failures(client, sid, progress))
        if progress is not None and terminal is not None:
            lines = progress_lines(progress)
            if lines != last_line:
                terminal.draw(lines)
                last_line = lines
        elif progress is not None and not quiet:
            line = progress_line(progress)
            if line != last_line:
                print(line, file=out, flush=True)
                last_line = line
        decision = tracker.feed(progress, clock())
        if decision.state == "converged":
            if not quiet:
                print("verify: Service converged", file=out, flush=True)
            return
        if decision.state == "failed":
            raise fail(decision.reason)
        sleep(interval)


def _timeout(args) -> float:
    if getattr(args, "timeout", None) is None:
        return DEFAULT_TIMEOUT
    return parse_duration(args.timeout, "--timeout")


# ==== commands ===================================================================================
def create(client, args) -> int:
    timeout = _timeout(args)
    generated = not args.name
    body = build_create_body(args, name=args.name or random_name())
    for attempt in range(5):
        try:
            service = client.post("/v1/services", body)
            break
        except DaemonError as exc:
            if not (generated and exc.status == 409 and attempt < 4):
                raise
            body["name"] = random_name()  # a generated name that is taken: draw another
    quiet = args.quiet or args.format == "json"
    if args.format != "json":
        print(service["id"], flush=True)
    if not args.detach:
        wait_for_convergence(client, service, "created", timeout=timeout, quiet=quiet)
    if args.format == "json":
        print_json(client.get(f"/v1/services/{_ref(service['id'])}"))
    return 0


def ls(client, args) -> int:
    services = client.get("/v1/services" + filter_query(args.filter))
    if args.format == "json":
        print_json(services)
    elif args.quiet:
        for s in services:
            print(s["id"])
    else:
        print_table(LS_HEADERS, ls_rows(services))
    return 0


def ps(client, args) -> int:
    tasks = []
    query = filter_query(args.filter)
    for ref in args.services:
        tasks.extend(client.get(f"/v1/services/{_ref(ref)}/tasks{query}"))
    if args.format == "json":
        print_json(tasks)
    elif args.quiet:
        for task, _history in order_tasks(tasks):
            print(task["id"] if args.no_trunc else task["id"][:12])
    else:
        print_table(PS_HEADERS, ps_rows(tasks, time.time(), no_trunc=args.no_trunc))
    return 0


def inspect(client, args) -> int:
    found, status = [], 0
    for ref in args.services:
        try:
            found.append(client.get(f"/v1/services/{_ref(ref)}"))
        except DaemonError as exc:
            if len(args.services) == 1:
                raise
            print(f"Error response from daemon: {exc}", file=sys.stderr)
            status = 1
    print_json(found[0] if len(args.services) == 1 else found)
    return status


def _baseline(client, ref: str) -> int:
    progress = _get_or_none(client, f"/v1/services/{_ref(ref)}/progress")
    return count_failures(client, ref, progress) if progress is not None else 0


def scale(client, args) -> int:
    wanted = parse_scale_args(args.scales)
    timeout = _timeout(args)
    status, scaled = 0, []
    for name, replicas in wanted:
        try:
            baseline = 0 if args.detach else _baseline(client, name)
            # the version read goes with the request; a retry after "update out of sequence" is made only while
            # the replicas are still what was read (client.update_with_retry): another scale in between wins
            answer, _service = update_with_retry(
                lambda: client.get(f"/v1/services/{_ref(name)}"),
                lambda _service: ({"replicas": replicas}, [("spec", "replicas")]),
                lambda service, body: client.post(with_version(f"/v1/services/{_ref(service['id'])}/scale", service),
                                                  body))
        except DaemonError as exc:
            print(f"Error response from daemon: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{name} scaled to {replicas}", flush=True)
        scaled.append((answer["service"], baseline))
    if not args.detach:
        for service, baseline in scaled:
            try:
                wait_for_convergence(client, service, "scaled", timeout=timeout, baseline_failures=baseline)
            except CLIError as exc:
                if len(scaled) == 1:
                    raise
                print(f"Error: {exc}", file=sys.stderr)
                status = 1
    return status


def rebalance_cmd(client, args) -> int:
    answer = client.post(f"/v1/services/{_ref(args.service)}/rebalance", {})
    print(answer["service"]["spec"]["name"], flush=True)
    return 0


def rollback(client, args) -> int:
    timeout = _timeout(args)
    answer = client.post(f"/v1/services/{_ref(args.service)}/rollback", {})
    new = answer["service"]
    print(new["spec"]["name"], flush=True)
    if not args.detach:
        wait_for_convergence(client, new, "rolled back", timeout=timeout, quiet=args.quiet,
                             follow_update="rollback")
    return 0


def update(client, args) -> int:
    if args.rollback:
        given = [a for a in update_paths(args) if a != ("spec", "task", "force_update")]
        if given or args.force:
            raise CLIError("--rollback cannot be used with other options that change the service")
        return rollback(client, args)
    timeout = _timeout(args)
    build_update_body(args, {"spec": {}})  # bad option values fail before any request
    paths = update_paths(args)
    first = client.get(f"/v1/services/{_ref(args.service)}")
    baseline = 0 if args.detach else _baseline(client, first["id"])
    reads = iter([first])

    def read():  # the first read is the one above; a retry reads again
        return next(reads, None) or client.get(f"/v1/services/{_ref(first['id'])}")

    answer, service = update_with_retry(
        read, lambda current: (build_update_body(args, current), paths),
        lambda current, body: client.post(with_version(f"/v1/services/{_ref(current['id'])}/update", current), body))
    new = answer["service"]
    print(new["spec"]["name"], flush=True)
    if not args.detach:
        if new.get("spec_version") != service.get("spec_version"):
            baseline = 0  # a new task spec: earlier failures belong to the old one
        wait_for_convergence(client, new, "updated", timeout=timeout, baseline_failures=baseline,
                             quiet=args.quiet, follow_update="update")
    return 0


def rm(client, args) -> int:
    status = 0
    for ref in args.services:
        try:
            client.delete(f"/v1/services/{_ref(ref)}")
        except DaemonError as exc:
            print(f"Error response from daemon: {exc}", file=sys.stderr)
            status = 1
            continue
        print(ref)
    return status


def logs(client, args) -> int:
    query = []
    if args.tail != "all":
        query.append(f"tail={parse_int(args.tail, '--tail')}")
    if args.since:
        query.append(f"since={parse_since(args.since):.6f}")
    if args.follow:
        query.append("follow=1")
    path = f"/v1/services/{_ref(args.service)}/logs" + ("?" + "&".join(query) if query else "")
    try:
        for record in client.stream(path, timeout=None if args.follow else client.timeout):
            if "warning" in record:
                sys.stdout.flush()
                print(f"warning: {record['warning']}", file=sys.stderr, flush=True)
                continue
            print(format_log_line(record, args), flush=args.follow)
    except DaemonError as exc:
        if exc.status == 404:
            raise CLIError(f"no such task or service: {args.service}") from None
        raise
    except KeyboardInterrupt:  # Ctrl-C while following: as docker, the end of the command, no traceback
        sys.stdout.flush()
        return 130
    sys.stdout.flush()
    return 0


def format_log_line(record: dict, args) -> str:
    """One line as docker prints it: [timestamp ]<service>.<slot>.<task>@<node>    | line (--raw: no prefix)."""
    out = ""
    if args.timestamps:
        out = (format_log_timestamp(record["ts"]) if record.get("ts") else "-") + " "
    if not args.raw:
        out += logprefix(record["task"], no_trunc=args.no_trunc, no_task_ids=args.no_task_ids) + "    | "
    return out + record.get("line", "")