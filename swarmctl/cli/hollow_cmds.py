"""`swarmctl hollow`: run N hollow nodes (real worker nodes on the simulated runtime) in one process."""

from __future__ import annotations

import os

from swarmctl.cli.client import CLIError


def add_parser(sub) -> None:
    p = sub.add_parser("hollow", help="run N hollow worker nodes (simulated runtime) in one process, for scale tests",
                       description="Run N real worker nodes in one process: each joins with the token, has its own "
                                   "node id, certificate and data dir DIR/<i>, and keeps its own mutual-TLS session "
                                   "to the managers. Their runtime is the simulated runtime, a stand-in for the "
                                   "Docker engine used only by hollow nodes. Stop with SIGTERM or SIGINT; a killed "
                                   "process's nodes go Down.")
    p.add_argument("--count", required=True, metavar="N", help="number of nodes (1 to 10,000)")
    p.add_argument("--join", required=True, metavar="HOST:PORT", help="a manager's management address")
    p.add_argument("--token", required=True, metavar="TOKEN", help="the swarm's worker join token")
    p.add_argument("--data-dir", required=True, metavar="DIR", help="node i keeps its state in DIR/i")
    p.add_argument("--start-latency", default="0.2s", metavar="DURATION",
                   help="how long a simulated container takes to start (default %(default)s)")
    p.add_argument("--fail-rate", default="0.0", metavar="RATE",
                   help="share of simulated container starts that fail, 0 to 1 (default %(default)s)")
    p.add_argument("--resources", default="cpus=4,memory=8G", metavar="cpus=N,memory=SIZE",
                   help="what each node offers to tasks (default %(default)s)")
    p.add_argument("--name-prefix", default="hollow", metavar="PREFIX",
                   help="node i is named PREFIX-i (default %(default)s)")
    p.add_argument("--advertise-addr", metavar="IP",
                   help="the address managers reach this process's agent listener on (default: the local address "
                        "of the route to --join)")
    p.add_argument("--agent-port", default="0", metavar="PORT",
                   help="port of the one agent listener shared by all nodes (default: any free port, kept for "
                        "restarts in DIR/hollow.json)")
    p.add_argument("--heartbeat-period", default="5s", metavar="DURATION", help="(default %(default)s)")
    p.add_argument("--join-concurrency", default="16", metavar="N",
                   help="joins in flight at once (default %(default)s)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="engine label of every node")
    p.add_argument("--endpoints", action="store_true",
                   help="every node follows the mesh's endpoint stream, as a real node does (into a stand-in data "
                        "plane that forwards nothing); DIR/endpoints.json says what the nodes hold")
    p.add_argument("--log-level", default=os.environ.get("SWARMCTL_LOG_LEVEL", "warning"),
                   choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run, local=True)


def config_from_args(args):
    from swarmctl.hollow.config import HollowConfig, HollowConfigError
    try:
        return HollowConfig.from_flags(
            count=args.count, join=args.join, token=args.token, data_dir=args.data_dir,
            start_latency=args.start_latency, fail_rate=args.fail_rate, resources=args.resources,
            name_prefix=args.name_prefix, advertise_addr=args.advertise_addr, heartbeat_period=args.heartbeat_period,
            agent_port=args.agent_port, join_concurrency=args.join_concurrency, labels=args.label,
            endpoints=args.endpoints)
    except HollowConfigError as exc:
        raise CLIError(str(exc)) from None


def run(_client, args) -> int:
    config = config_from_args(args)
    from swarmctl.hollow.main import run as run_hollow
    return run_hollow(config, args.log_level)
