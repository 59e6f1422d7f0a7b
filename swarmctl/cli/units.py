"""Parsing of the CLI's human units (sizes, durations, KEY=VALUE items) and Docker-style ages.

Standard library only. Every parse error is a UnitError: a ValueError for callers that expect one,
and a CLIError, so an uncaught one is printed by `swarmctl` as a one-line "Error: ..." (exit 1).
"""

from __future__ import annotations

import math
import re

from swarmctl.cli.client import CLIError


class UnitError(CLIError, ValueError):
    """A value on the command line that cannot be parsed."""


# ---- sizes -------------------------------------------------------------------------------------
_SIZE = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)\s?(?:([kmgtp])i?)?b?$", re.IGNORECASE)
_MULTIPLIERS = {None: 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4, "p": 1024 ** 5}


def parse_bytes(text: str, what: str = "size") -> int:
    """"128M" -> 134217728. Binary multiples like Docker (k=1024, m=1024², g=1024³, t, p), case-insensitive,
    an optional "b"/"ib" suffix ("128MB", "128MiB"), a bare number is bytes; fractions are truncated."""
    value = (text or "").strip()
    match = _SIZE.match(value)
    if not match:
        raise UnitError(f"invalid {what} {text!r}: expected a number of bytes with an optional unit, "
                        "e.g. 1024, 512k, 128M, 1.5G")
    number, unit = match.groups()
    return int(float(number) * _MULTIPLIERS[unit.lower() if unit else None])


# ---- durations ---------------------------------------------------------------------------------
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)$")


def parse_duration(text: str, what: str = "duration") -> float:
    """Go-style durations in seconds: "500ms", "5s", "1m30s", "2h"; a bare number means seconds."""
    value = (text or "").strip()
    if _NUMBER.match(value):
        return float(value)
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not value or pos != len(value):
        raise UnitError(f"invalid {what} {text!r}: expected e.g. 10, 500ms, 5s, 1m30s or 2h")
    return total


def parse_since(text: str, now: float | None = None, what: str = "--since") -> float:
    """Docker's --since: a Unix timestamp (1700000000[.5]), an RFC 3339 date or time (2026-12-07,
    2026-12-07T01:02:03[.123][Z|+01:00], no zone: UTC), or a duration back from now (10m, 1h30m).
    Seconds since the epoch."""
    import datetime
    import time as _time
    value = (text or "").strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        return (now if now is not None else _time.time()) - parse_duration(value, what)
    except UnitError:
        pass
    iso = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        when = datetime.datetime.fromisoformat(iso)
    except ValueError:
        raise UnitError(f"invalid {what} {text!r}: expected a timestamp (2026-12-07T01:02:03Z), "
                        "a Unix time or a duration (10m)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


# ---- numbers -----------------------------------------------------------------------------------
def parse_int(text: str, what: str, minimum: int = 0) -> int:
    """A whole number >= minimum ("3"), for counts such as replicas."""
    value = (text or "").strip()
    if not re.fullmatch(r"[+-]?\d+", value) or int(value) < minimum:
        raise UnitError(f"invalid {what} {text!r}: expected a whole number >= {minimum}")
    return int(value)


def parse_cpus(text: str, what: str = "cpus") -> float:
    """A non-negative, finite number of CPUs ("0.5", "2")."""
    try:
        value = float((text or "").strip())
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise UnitError(f"invalid {what} {text!r}: expected a number of CPUs >= 0, e.g. 0.5 or 2")
    return value


# ---- KEY=VALUE ---------------------------------------------------------------------------------
def parse_kv(item: str, what: str = "value") -> tuple[str, str]:
    """"KEY=VALUE" -> (KEY, VALUE). The key must be non-empty and contain no whitespace; the value may be empty."""
    key, sep, value = (item or "").partition("=")
    if not sep or not key or any(c.isspace() for c in key):
        raise UnitError(f"invalid {what} {item!r}: expected KEY=VALUE with a non-empty KEY without spaces")
    return key, value


def parse_key(item: str, what: str = "key") -> str:
    """A bare KEY (for --env-rm / --label-rm); "KEY=VALUE" is accepted and means KEY."""
    key = (item or "").partition("=")[0]
    if not key or any(c.isspace() for c in key):
        raise UnitError(f"invalid {what} {item!r}: expected a non-empty KEY without spaces")
    return key


# ---- ages --------------------------------------------------------------------------------------
def human_age(seconds: float) -> str:
    """A duration the way Docker prints it (go-units HumanDuration): "Less than a second", "1 second",
    "5 seconds", "About a minute", "3 minutes", "About an hour", "2 hours", "3 days", "2 weeks", "3 months",
    "2 years". Negative durations (clock skew) count as zero."""
    seconds = max(0.0, float(seconds)) if math.isfinite(seconds) else 0.0
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(math.floor(seconds / 3600 + 0.5))  # rounded, like Go's d.Round(time.Hour)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


# ---- points in time ----------------------------------------------------------------------------
_UNIX = re.compile(r"^\d+(?:\.\d+)?$")
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$",
                      re.IGNORECASE)


def parse_timestamp(text: str, what: str = "time", now: float | None = None) -> float:
    """Docker's forms of a point in time (`docker events --since`), as Unix seconds: a Go duration relative to now
    ("10m", "1h30m": that long ago), Unix seconds ("1700000000", "1700000000.5"), or RFC 3339 / ISO 8601
    ("2026-12-07T01:02:03Z", "2026-12-07T01:02:03.5+01:00", "2026-12-07": local time without an offset)."""
    import datetime
    import time as _time
    value = (text or "").strip()
    now = _time.time() if now is None else now
    if _UNIX.match(value):
        return float(value)
    if value and value[-1:].isalpha() and not _RFC3339.match(value):
        try:
            return now - parse_duration(value, what)
        except UnitError:
            pass
    match = _RFC3339.match(value)
    if match:
        date, clock, fraction, zone = match.groups()
        clock = clock or "00:00:00"
        if clock.count(":") == 1:
            clock += ":00"
        try:
            stamp = datetime.datetime.fromisoformat(f"{date}T{clock}")
        except ValueError:
            match = None
        else:
            if zone:
                zone = "+00:00" if zone.upper() == "Z" else zone
                sign = 1 if zone[0] == "+" else -1
                digits = zone[1:].replace(":", "")
                offset = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
                stamp = stamp.replace(tzinfo=datetime.timezone(sign * offset))
            seconds = stamp.timestamp()
            return seconds + (float(fraction) if fraction else 0.0)
    raise UnitError(f"invalid {what} {text!r}: expected RFC 3339 (2006-01-02T15:04:05Z), Unix seconds or a "
                    "duration before now (10m)")
