"""`swarmctl stack deploy|ls|services|ps|rm`: compose files as services, secrets and configs, as `docker stack`.

The compose work (PyYAML, jsonschema, swarmctl/stack) is imported only by `stack deploy`, so the other commands
start as fast as the rest of the CLI. A deploy is planned completely before anything changes
(swarmctl/stack/plan.py): a bad file, an unknown depends_on service or a cycle changes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from urllib.parse import quote

from swarmctl.cli.client import CLIError, DaemonError, with_version
from swarmctl.cli.output import print_json, print_table
from swarmctl.cli.service_cmds import (LS_HEADERS, PS_HEADERS, DEFAULT_TIMEOUT, ls_rows, order_tasks, ps_rows,
                                       wait_for_convergence)

NAMESPACE_LABEL = "com.docker.stack.namespace"
LS_STACK_HEADERS = ["NAME", "SERVICES"]


def _ref(ref: str) -> str:
    return quote(ref, safe="")


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0"):
        raise argparse.ArgumentTypeError(f"invalid boolean {text!r}: use true or false")
    return text.lower() in ("true", "1")


def add_parsers(sub) -> None:
    stack = sub.add_parser("stack", help="manage stacks (compose files)",
                           description="Deploy and manage stacks: the services, secrets and configs of compose files.")
    actions = stack.add_subparsers(dest="action", required=True, metavar="COMMAND")

    p = actions.add_parser("deploy", help="deploy a new stack or update an existing one",
                           description="Deploy compose files as the stack NAME: services NAME_svc, secrets and "
                                       "configs NAME_key, all labelled com.docker.stack.namespace=NAME. depends_on is "
                                       "honoured: a service is created or updated only after its dependencies run "
                                       "(service_healthy: are healthy). Unchanged services are left alone.")
    p.add_argument("-c", "--compose-file", action="append", default=[], metavar="FILE",
                   help="compose file (repeatable, later files merged into earlier ones; - reads stdin)")
    p.add_argument("--prune", action="store_true", help="remove services (and secrets, configs) of the stack that "
                                                        "are no longer in the files")
    p.add_argument("-d", "--detach", type=_bool, nargs="?", const=True, default=True, metavar="true|false",
                   help="return once the services are created or updated (default true); false: wait until "
                        "they converge")
    p.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    p.add_argument("--format", choices=["json"], help="print the plan as JSON: changed, actions, warnings")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("--timeout", help="how long to wait for a dependency or the services (default 2m)")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=deploy)

    p = actions.add_parser("ls", help="list stacks")
    p.add_argument("--format", choices=["json"])
    p.set_defaults(func=ls)

    p = actions.add_parser("services", help="list the services of a stack")
    p.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    p.add_argument("--format", choices=["json"])
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=services)

    p = actions.add_parser("ps", help="list the tasks of a stack")
    p.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", choices=["json"])
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=ps)

    p = actions.add_parser("rm", help="remove one or more stacks")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=rm)


# ---- reads -----------------------------------------------------------------------------------------------
def _optional_list(client, path: str) -> list[dict] | None:
    """A list route that a daemon may not have (secrets, configs): None when it answers 404."""
    try:
        return client.get(path)
    except DaemonError as exc:
        if exc.status in (404, 405):
            return None
        raise


def stack_services(client, name: str) -> list[dict]:
    return client.get("/v1/services?filter=" + _ref(f"label={NAMESPACE_LABEL}={name}"))


def stack_objects(client, kind: str, name: str) -> list[dict]:
    views = _optional_list(client, f"/v1/{kind}s") or []
    return sorted((v for v in views if ((v.get("spec") or {}).get("labels") or {}).get(NAMESPACE_LABEL) == name),
                  key=lambda v: v["spec"]["name"])


def stack_list(services: list[dict]) -> list[dict]:
    counts: dict[str, int] = {}
    for s in services:
        name = (s["spec"].get("labels") or {}).get(NAMESPACE_LABEL)
        if name:
            counts[name] = counts.get(name, 0) + 1
    return [{"name": n, "services": counts[n]} for n in sorted(counts)]


# ---- deploy ----------------------------------------------------------------------------------------------
def _stack_name(name: str) -> str:
    import re
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name or "") or len(name) > 40:
        raise CLIError(f"invalid stack name {name!r}: letters, digits, '_', '.' and '-', at most 40, "
                       "starting with a letter or digit")
    return name


def read_state(client, project):
    from base64 import b64encode

    from swarmctl.stack.plan import State

    def matches(view, data: bytes) -> bool:
        answer = client.post(f"/v1/secrets/{_ref(view['id'])}/matches", {"data": b64encode(data).decode()})
        return bool(answer.get("matches"))
    return State(services=client.get("/v1/services"), secrets=_optional_list(client, "/v1/secrets"),
                 configs=_optional_list(client, "/v1/configs"), secret_matches=matches)


class Runner:
    """Runs a plan through the API: objects, pruned services, services in order (waiting for the dependencies
    each needs), then the objects nothing uses any more."""

    def __init__(self, client, plan, *, out, quiet: bool, timeout: float):
        self.client, self.plan, self.out, self.quiet, self.timeout = client, plan, out, quiet, timeout
        self.views: dict[str, dict] = {}  # service name -> its view after this deploy's write (or as read)
        self.updated: set[str] = set()
        self.waited: set[str] = set()

    def say(self, line: str) -> None:
        if not self.quiet:
            print(line, file=self.out, flush=True)

    def run(self) -> None:
        for action in self.plan.objects:
            self.object(action)
        for action in self.plan.pruned:
            self.say(f"Removing service {action.name}")
            self.client.delete(f"/v1/services/{_ref(action.current['id'])}")
        for action in self.plan.services:
            if action.current is not None:
                self.views[action.name] = action.current
        for action in self.plan.services:
            self.service(action)
        for action in self.plan.cleanup:
            self.say(f"Removing {action.kind} {action.name}")
            try:
                self.client.delete(f"/v1/{action.kind}s/{_ref(action.current['id'])}")
            except DaemonError as exc:  # still in use (a task of the old spec, or another stack): kept
                print(f"Failed to remove {action.kind} {action.name}: {exc}", file=sys.stderr)

    def object(self, action) -> None:
        if action.action == "create":
            self.say(f"Creating {action.kind} {action.name}")
            self.client.post(f"/v1/{action.kind}s", action.body)
        elif action.action == "update":
            self.say(f"Updating {action.kind} {action.name}")
            self.client.post(with_version(f"/v1/{action.kind}s/{_ref(action.current['id'])}/update", action.current),
                             action.body)

    def wait(self, name: str, why: str = "") -> None:
        if name in self.waited:
            return
        view = self.views.get(name)
        if view is None:
            return
        if why:
            self.say(f"Waiting for service {name} {why}")
        wait_for_convergence(self.client, view, "updated" if name in self.updated else "created",
                             timeout=self.timeout, quiet=True,
                             follow_update="update" if name in self.updated else None)
        self.waited.add(name)

    def service(self, action) -> None:
        if action.action == "unchanged":
            return
        for dep, condition in sorted(action.depends.items()):
            state = "to be healthy" if condition == "service_healthy" else "to run"
            self.wait(dep, f"{state} (depends_on of {action.name})")
        if action.action == "create":
            self.say(f"Creating service {action.name}")
            self.views[action.name] = self.client.post("/v1/services", action.body)
        else:
            self.say(f"Updating service {action.name} (id: {action.current['id']})")
            body = {k: v for k, v in action.body.items() if k not in ("name", "mode")}
            body["replace"] = True
            answer = self.client.post(with_version(f"/v1/services/{_ref(action.current['id'])}/update",
                                                   action.current), body)
            self.views[action.name] = answer["service"]
            self.updated.add(action.name)

    def wait_all(self) -> None:
        for action in self.plan.services:
            if action.action != "unchanged":
                self.wait(action.name)


def deploy(client, args) -> int:
    from swarmctl.cli.units import parse_duration
    from swarmctl.stack import compose
    from swarmctl.stack.compose import StackError
    from swarmctl.stack.plan import plan as make_plan
    name = _stack_name(args.name)
    timeout = DEFAULT_TIMEOUT if args.timeout is None else parse_duration(args.timeout, "--timeout")
    try:
        project = compose.load(args.compose_file)
        project.print_warnings()
        state = read_state(client, project)
        plan = make_plan(name, project, state, prune=args.prune)
    except StackError as exc:
        raise CLIError(str(exc)) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a shape no check above expected
        raise CLIError(f"cannot deploy the compose files: {type(exc).__name__}: {exc}") from None
    as_json = args.format == "json"
    if not args.dry_run:
        runner = Runner(client, plan, out=sys.stdout, quiet=args.quiet or as_json, timeout=timeout)
        runner.run()
        if not args.detach:
            runner.wait_all()
    if as_json:
        print_json({"changed": plan.changed, "actions": [a.public() for a in plan.actions()],
                    "warnings": project.warnings(), "dry_run": bool(args.dry_run)})
    elif args.dry_run:
        for action in plan.actions():
            print(f"{action.action} {action.kind} {action.name}")
    return 0


# ---- ls, services, ps, rm ----------------------------------------------------------------------------------
def ls(client, args) -> int:
    stacks = stack_list(client.get("/v1/services"))
    if args.format == "json":
        print_json(stacks)
    else:
        print_table(LS_STACK_HEADERS, [[s["name"], str(s["services"])] for s in stacks])
    return 0


def services(client, args) -> int:
    found = stack_services(client, args.name)
    if args.format == "json":
        print_json(found)
        return 0
    if not found:
        print(f"Nothing found in stack: {args.name}", file=sys.stderr)
        return 0
    if args.quiet:
        for s in found:
            print(s["id"])
    else:
        print_table(LS_HEADERS, ls_rows(sorted(found, key=lambda s: s["spec"]["name"])))
    return 0


def ps(client, args) -> int:
    tasks = []
    for service in sorted(stack_services(client, args.name), key=lambda s: s["spec"]["name"]):
        tasks.extend(client.get(f"/v1/services/{_ref(service['id'])}/tasks"))
    if args.format == "json":
        print_json(tasks)
        return 0
    if not tasks:
        raise CLIError(f"nothing found in stack: {args.name}")
    if args.quiet:
        for task, _history in order_tasks(tasks):
            print(task["id"] if args.no_trunc else task["id"][:12])
    else:
        print_table(PS_HEADERS, ps_rows(tasks, time.time(), no_trunc=args.no_trunc))
    return 0


def rm(client, args) -> int:
    failed = []
    for name in args.names:
        found_services = sorted(stack_services(client, name), key=lambda s: s["spec"]["name"])
        secrets = stack_objects(client, "secret", name)
        configs = stack_objects(client, "config", name)
        if not (found_services or secrets or configs):
            print(f"Nothing found in stack: {name}", file=sys.stderr)
            continue
        error = False
        for kind, items in (("service", found_services), ("secret", secrets), ("config", configs)):
            for item in items:
                print(f"Removing {kind} {item['spec']['name']}", flush=True)
                try:
                    client.delete(f"/v1/{kind}s/{_ref(item['id'])}")
                except DaemonError as exc:
                    if exc.status == 404:
                        continue
                    print(f"Failed to remove {kind} {item['id']}: {exc}", file=sys.stderr)
                    error = True
        if error:
            failed.append(name)
    if failed:
        raise CLIError("failed to remove some resources from stack: " + ", ".join(failed))
    return 0
