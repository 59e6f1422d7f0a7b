"""`swarmctl node ...`: ls, ps, inspect, update, promote, demote, rm."""

from __future__ import annotations

import sys
import time
from urllib.parse import quote

from swarmctl.cli.client import CLIError, DaemonError, filter_query, update_with_retry, with_version
from swarmctl.cli.output import print_json, print_table
from swarmctl.cli.service_cmds import order_tasks, ps_rows  # node ps shows the rows of service ps


def add_parsers(sub) -> None:
    node = sub.add_parser("node", help="manage swarm nodes").add_subparsers(dest="action", required=True,
                                                                            metavar="COMMAND")
    p = node.add_parser("ls", help="list nodes")
    p.add_argument("-q", "--quiet", action="store_true", help="only display IDs")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="filter on the server: id, label, node.label, membership, name, role (repeatable)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=ls)

    p = node.add_parser("ps", help="list tasks running on one or more nodes, defaults to the current node",
                        description="List the tasks assigned to the nodes (default: this node, `self`), as "
                                    "`service ps` shows them.")
    p.add_argument("-q", "--quiet", action="store_true", help="only display task IDs")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="filter on the server: id, name, label, desired-state (running|shutdown|accepted) "
                        "(repeatable)")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format (default table)")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate IDs and errors")
    p.add_argument("nodes", nargs="*", metavar="NODE", help="node id, unique id prefix, hostname, or self")
    p.set_defaults(func=ps)

    p = node.add_parser("inspect", help="show a node")
    p.add_argument("--format", choices=["json"], default="json")
    p.add_argument("node", metavar="NODE")
    p.set_defaults(func=inspect)

    p = node.add_parser("update", help="change a node's availability or labels")
    p.add_argument("--availability", choices=["active", "pause", "drain"])
    p.add_argument("--label-add", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--label-rm", action="append", default=[], metavar="KEY")
    p.add_argument("node", metavar="NODE")
    p.set_defaults(func=update)

    for name, func in (("promote", promote), ("demote", demote)):
        p = node.add_parser(name, help=f"{name} one or more nodes")
        p.add_argument("nodes", nargs="+", metavar="NODE")
        p.set_defaults(func=func)

    p = node.add_parser("rm", help="remove one or more nodes from the swarm")
    p.add_argument("-f", "--force", action="store_true", help="remove a node that is not down")
    p.add_argument("nodes", nargs="+", metavar="NODE")
    p.set_defaults(func=rm)


def _title(text: str | None) -> str:
    return (text or "").capitalize()


STALE_WARNING = ("WARNING: The swarm does not have a leader. Showing this manager's last known state of the "
                 "nodes, which may be out of date.")


def ls(client, args) -> int:
    query = filter_query(args.filter)
    try:
        nodes = client.get("/v1/nodes" + query)
    except DaemonError as exc:
        # A manager that lost quorum can still show what it last knew, marked as such (reads are otherwise
        # linearizable, and so refused without a leader, as in Docker).
        if exc.status == 503 and "does not have a leader" in str(exc):
            warning = STALE_WARNING
        elif exc.status == 507:  # this manager cannot write its journal, so it cannot confirm a read
            warning = f"WARNING: {exc} Showing this manager's last known state of the nodes, which may be out of date."
        else:
            raise
        nodes = client.get("/v1/nodes?stale=1" + filter_query(args.filter, "&"))
        print(warning, file=sys.stderr)
    if args.format == "json":
        print_json(nodes)
        return 0
    if args.quiet:
        for n in nodes:
            print(n["id"])
        return 0
    me = client.get("/v1/info").get("node_id")
    rows = []
    for n in nodes:
        status = n.get("manager_status") or {}
        manager = ""
        if status:
            manager = "Leader" if status.get("leader") else _title(status.get("reachability"))
        rows.append([n["id"] + (" *" if n["id"] == me else ""), n["description"]["hostname"],
                     _title(n["status"]["state"]), _title(n["spec"]["availability"]), manager])
    print_table(["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS"], rows)
    return 0


PS_HEADERS = ["ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR", "PORTS"]


def task_ports(task: dict) -> str:
    """Docker's PORTS of a task: its host-mode published ports, `*:8080->80/tcp`."""
    return ", ".join(f"*:{p['port']}->{p['target']}/{p.get('protocol') or 'tcp'}"
                     for p in task.get("ports") or [] if p.get("mode") == "host")


def ps(client, args) -> int:
    tasks, seen = [], set()
    query = filter_query(args.filter)
    for ref in args.nodes or ["self"]:
        for task in client.get(f"/v1/nodes/{quote(ref, safe='')}/tasks{query}"):
            if task["id"] not in seen:  # a node named twice
                seen.add(task["id"])
                tasks.append(task)
    if args.format == "json":
        print_json(tasks)
    elif args.quiet:
        for task, _history in order_tasks(tasks):
            print(task["id"] if args.no_trunc else task["id"][:12])
    else:
        ports = {t["id"]: task_ports(t) for t in tasks}
        rows = ps_rows(tasks, time.time(), no_trunc=args.no_trunc)
        ordered = [t for t, _history in order_tasks(tasks)]
        print_table(PS_HEADERS, [row + [ports[t["id"]]] for row, t in zip(rows, ordered)])
    return 0


def inspect(client, args) -> int:
    print_json(client.get(f"/v1/nodes/{quote(args.node, safe='')}"))
    return 0


def _parse_labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or any(c.isspace() for c in key):
            raise CLIError(f"invalid label {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def update_paths(args) -> list[tuple]:
    """The fields of the node record `node update` changes, for the retry rule (client.still_meaningful): after
    "update out of sequence" (a heartbeat or another update changed the node) the command retries while
    --availability's field and each --label-add/--label-rm key are as first read."""
    paths = [("spec", "availability")] if args.availability else []
    paths += [("spec", "labels", item.partition("=")[0]) for item in args.label_add]
    paths += [("spec", "labels", key) for key in args.label_rm]
    return paths


def update(client, args) -> int:
    for key in args.label_rm:
        if not key.strip():
            raise CLIError("invalid --label-rm: empty key")
    body = {"availability": args.availability, "labels_add": _parse_labels(args.label_add),
            "labels_rm": args.label_rm}
    paths = update_paths(args)
    update_with_retry(lambda: client.get(f"/v1/nodes/{quote(args.node, safe='')}"),
                      lambda _node: (body, paths),
                      lambda node, b: client.post(with_version(f"/v1/nodes/{quote(node['id'], safe='')}/update", node), b))
    print(args.node)
    return 0


def promote(client, args) -> int:
    for ref in args.nodes:
        client.post(f"/v1/nodes/{quote(ref, safe='')}/promote")
        print(f"Node {ref} promoted to a manager in the swarm.")
    return 0


def demote(client, args) -> int:
    for ref in args.nodes:
        client.post(f"/v1/nodes/{quote(ref, safe='')}/demote")
        print(f"Manager {ref} demoted in the swarm.")
    return 0


def rm(client, args) -> int:
    for ref in args.nodes:
        client.delete(f"/v1/nodes/{quote(ref, safe='')}" + ("?force=1" if args.force else ""))
        print(ref)
    return 0
