"""`swarmctl events`: the swarm's events as `docker events` prints them, from the local manager."""

from __future__ import annotations

import datetime
import json
import sys

from swarmctl.cli.client import CLIError, filter_query
from swarmctl.cli.units import parse_timestamp

TYPES = ("service", "node", "task", "secret", "config", "cluster")
ACTIONS = ("create", "update", "remove")
FILTERS = ("type", "event", "service", "node", "secret", "config", "scope")


def add_parser(sub) -> None:
    p = sub.add_parser("events", help="stream the swarm's events (service, node, task, secret, config, cluster)")
    p.add_argument("--since", metavar="TIME", help="replay the kept events from TIME (RFC 3339, Unix seconds, or a"
                                                   " duration before now such as 10m)")
    p.add_argument("--until", metavar="TIME", help="stop streaming at TIME (same forms)")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="type=service|node|task|secret|config|cluster, event=create|update|remove, service=NAME, "
                        "node=NAME, secret=NAME, config=NAME, scope=swarm (repeatable: the same key is OR'ed)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=run)


def check_filters(items: list[str]) -> None:
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"bad format of filter (expected name=value): {item!r}")
        if key not in FILTERS:
            raise CLIError(f"invalid filter '{key}'")
        if key == "type" and value not in TYPES:
            raise CLIError(f"invalid filter 'type={value}': expected one of {', '.join(TYPES)}")
        if key == "event" and value not in ACTIONS:
            raise CLIError(f"invalid filter 'event={value}': expected one of {', '.join(ACTIONS)}")


def text_line(event: dict) -> str:
    """Docker's: `2006-01-02T15:04:05.000000000+00:00 service update ID (k=v, k=v)`, attributes sorted."""
    nano = int(event.get("timeNano") or 0)
    stamp = datetime.datetime.fromtimestamp(nano // 1_000_000_000).astimezone()
    zone = stamp.strftime("%z")
    when = f"{stamp.strftime('%Y-%m-%dT%H:%M:%S')}.{nano % 1_000_000_000:09d}{zone[:3]}:{zone[3:]}"
    actor = event.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    line = f"{when} {event.get('Type')} {event.get('Action')} {actor.get('ID')}"
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line


def run(client, args) -> int:
    since = parse_timestamp(args.since, "--since") if args.since is not None else None
    until = parse_timestamp(args.until, "--until") if args.until is not None else None
    if since is not None and until is not None and until < since:
        raise CLIError("--until is before --since")
    check_filters(args.filter)
    params = []
    if since is not None:
        params.append(f"since={since:.6f}")
    if until is not None:
        params.append(f"until={until:.6f}")
    query = "&".join(params)
    path = "/v1/events" + ("?" + query if query else "") + filter_query(args.filter, "&" if query else "?")
    for event in client.stream_lines(path):
        if "error" in event and "Type" not in event:
            raise CLIError(event["error"])
        out = json.dumps(event, separators=(",", ":")) if args.format == "json" else text_line(event)
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    return 0
