"""`swarmctl version`: the client's version and, when the local daemon answers, the daemon's (like `docker version`)."""

from __future__ import annotations

import platform

from swarmctl import __version__
from swarmctl.cli.client import CLIError
from swarmctl.cli.output import print_json


def add_parser(sub) -> None:
    p = sub.add_parser("version", help="show the client's and the local daemon's versions")
    p.add_argument("--format", choices=["json"], help="print a JSON object {client, server}")
    p.set_defaults(func=version)


def version(client, args) -> int:
    local = {"version": __version__, "python": platform.python_version()}
    server, error = None, None
    try:
        info = client.get("/v1/info")
        server = {"version": info.get("version") or "unknown",
                  "node_id": info.get("node_id"), "role": info.get("role")}
    except CLIError as exc:
        error = str(exc)
    if args.format == "json":
        print_json({"client": local, "server": server})
    else:
        print(f"Client:\n Version:  {local['version']}\n Python:   {local['python']}")
        if server is not None:
            print(f"\nServer:\n Version:  {server['version']}")
            if server["node_id"]:
                print(f" Node:     {server['node_id']} ({server['role']})")
    if error is not None:
        raise CLIError(error)  # like `docker version`: the client part, then the daemon's error and exit 1
    return 0
