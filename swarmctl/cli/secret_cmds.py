"""`swarmctl secret ...` and `swarmctl config ...`: create, ls, inspect, rm, as Docker's.

Standard library only. Both kinds share the code: they differ in the size limit, the route and in what inspect
shows (a secret's data never leaves the managers; a config's is part of its view). Bad input is a one-line
error before any request; the daemon checks everything again.
"""

from __future__ import annotations

import base64
import sys
import time
from urllib.parse import quote

from swarmctl.cli.client import CLIError, DaemonError, filter_query
from swarmctl.cli.output import print_json, print_table
from swarmctl.cli.units import human_age, parse_kv

MAX_SIZE = {"secret": 500 * 1024, "config": 1000 * 1024}  # swarmkit's; the data must be smaller (limits.py)
LS_HEADERS = {"secret": ["ID", "NAME", "DRIVER", "CREATED", "UPDATED"],  # Docker's columns (no secret drivers here)
              "config": ["ID", "NAME", "CREATED", "UPDATED"]}


def add_parsers(sub) -> None:
    for kind in ("secret", "config"):
        top = sub.add_parser(kind, help=f"manage swarm {kind}s",
                             description=f"Manage {kind}s: files given to services' tasks"
                                         + (", kept sealed by the managers." if kind == "secret" else "."))
        actions = top.add_subparsers(dest="action", required=True, metavar="COMMAND")

        p = actions.add_parser("create", help=f"create a {kind} from a file or standard input",
                               description=f"Create a {kind} from FILE, or from standard input with '-'. "
                                           "Prints its ID.")
        p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE",
                       help=f"{kind} label (repeatable)")
        p.add_argument("name", metavar="NAME")
        p.add_argument("file", metavar="FILE|-")
        p.set_defaults(func=create, kind=kind)

        p = actions.add_parser("ls", help=f"list {kind}s")
        p.add_argument("-q", "--quiet", action="store_true", help="only display IDs")
        p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                       help="filter on the server: id, label, name (repeatable)")
        p.add_argument("--format", choices=["table", "json"], default="table")
        p.set_defaults(func=ls, kind=kind)

        p = actions.add_parser("inspect", help=f"show {kind}s as JSON"
                               + (" (never the data)" if kind == "secret" else " (with the data, in base64)"))
        p.add_argument("refs", nargs="+", metavar=kind.upper())
        p.set_defaults(func=inspect, kind=kind)

        p = actions.add_parser("rm", help=f"remove one or more {kind}s (refused while a service uses one)")
        p.add_argument("refs", nargs="+", metavar=kind.upper())
        p.set_defaults(func=rm, kind=kind)


def read_data(kind: str, path: str, stdin=None) -> bytes:
    """The bytes of FILE, or of standard input for '-', within Docker's size limit."""
    try:
        if path == "-":
            data = (stdin or sys.stdin.buffer).read(MAX_SIZE[kind] + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_SIZE[kind] + 1)
    except OSError as exc:
        raise CLIError(f"open {path}: {exc.strerror or exc}") from None
    if not 1 <= len(data) < MAX_SIZE[kind]:
        raise CLIError(f"{kind} data must be larger than 0 and less than {MAX_SIZE[kind]} bytes")
    return data


def create_body(kind: str, name: str, labels: list[str], data: bytes) -> dict:
    return {"name": name, "labels": dict(parse_kv(item, "--label") for item in labels),
            "data": base64.b64encode(data).decode()}


def ls_rows(kind: str, records: list[dict], now: float) -> list[list[str]]:
    def ago(t):
        return f"{human_age(now - t)} ago" if t else ""
    driver = [""] if kind == "secret" else []
    return [[r["id"], r["spec"]["name"], *driver, ago(r.get("created_at")), ago(r.get("updated_at"))]
            for r in records]


def create(client, args) -> int:
    body = create_body(args.kind, args.name, args.label, read_data(args.kind, args.file))
    answer = client.post(f"/v1/{args.kind}s", body)
    print(answer["id"])
    return 0


def ls(client, args) -> int:
    records = client.get(f"/v1/{args.kind}s" + filter_query(args.filter))
    if args.format == "json":
        print_json(records)
    elif args.quiet:
        for r in records:
            print(r["id"])
    else:
        print_table(LS_HEADERS[args.kind], ls_rows(args.kind, records, time.time()))
    return 0


def inspect(client, args) -> int:
    found, status = [], 0
    for ref in args.refs:
        try:
            found.append(client.get(f"/v1/{args.kind}s/{quote(ref, safe='')}"))
        except DaemonError as exc:
            if len(args.refs) == 1:
                raise
            print(f"Error response from daemon: {exc}", file=sys.stderr)
            status = 1
    print_json(found)
    return status


def rm(client, args) -> int:
    """Docker's `secret rm`: each name is printed once removed; a refusal is said and the others go on."""
    status = 0
    for ref in args.refs:
        try:
            client.delete(f"/v1/{args.kind}s/{quote(ref, safe='')}")
        except DaemonError as exc:
            print(f"Error response from daemon: {exc}", file=sys.stderr)
            status = 1
            continue
        print(ref)
    return status
