"""How log lines look: the engines' timestamps and Docker's task prefix (standard library only: the CLI
uses it too)."""

from __future__ import annotations

import datetime
import re

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_log_timestamp(text: str) -> int:
    """An engine log timestamp (RFC 3339 with up to nanoseconds, e.g. 2026-12-07T01:02:03.123456789Z) as
    nanoseconds since the epoch; ValueError when it is not one."""
    m = _STAMP.match(text.strip())
    if not m:
        raise ValueError(f"not a log timestamp: {text!r}")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    when = datetime.datetime.fromisoformat(m.group(1) + zone)
    return int(when.timestamp()) * 1_000_000_000 + int((m.group(2) or "").ljust(9, "0"))


def format_log_timestamp(ns: int) -> str:
    """Nanoseconds since the epoch as the engine writes them (UTC, nine fraction digits, Z)."""
    when = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


def prefix(ctx: dict, no_trunc: bool = False, no_task_ids: bool = False) -> str:
    """Docker's `<service>.<slot>.<task id>@<node>` (the id cut to 12 characters unless no_trunc)."""
    name = f"{ctx['service']}.{ctx['slot']}"
    if not no_task_ids:
        name += "." + (ctx["id"] if no_trunc else ctx["id"][:12])
    return f"{name}@{ctx['node']}"
