# Copyright (c) 2026 swarmctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0

"""A small client for the swarmctl daemon's HTTP API over its local unix socket.

Standard library only (http.client over AF_UNIX), so modules using it need nothing on the managed host
besides Python. Errors of the daemon ({"message": ...}) and connection problems raise SwarmctlError.
Also holds the option spec and documentation shared by every module of swarmctl.cluster, and the unit
parsers (sizes, durations) the modules use.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket

from ansible.module_utils.basic import env_fallback

DEFAULT_HOST = "unix:///run/swarmctl/swarmctl.sock"
DEFAULT_TIMEOUT = 60


class SwarmctlError(Exception):
    """A failed call: the daemon's message (passed through unchanged) and the HTTP status (None: no answer)."""

    def __init__(self, message, status=None):
        super(SwarmctlError, self).__init__(message)
        self.message = message
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super(_UnixConnection, self).__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except Exception:
            sock.close()
            raise
        self.sock = sock


def socket_path(host):
    """unix:///run/swarmctl/swarmctl.sock -> /run/swarmctl/swarmctl.sock; anything else is refused."""
    host = (host or "").strip()
    if not host.startswith("unix://") or len(host) <= len("unix://"):
        raise SwarmctlError("unsupported swarmctl_host %r: use unix:///path/to/swarmctl.sock" % (host,))
    return host[len("unix://"):]


class SwarmctlClient(object):
    """get/post/delete against the daemon; each returns the parsed JSON answer."""

    def __init__(self, host=None, timeout=DEFAULT_TIMEOUT):
        self.host = host or DEFAULT_HOST
        self.path = socket_path(self.host)
        self.timeout = timeout

    def request(self, method, path, body=None, lines=False):
        """The parsed JSON answer; with lines=True a streamed answer of JSON lines, as a list."""
        conn = _UnixConnection(self.path, self.timeout)
        try:
            payload = json.dumps(body).encode("utf-8") if body is not None else None
            # one id per request: the daemon applies a retried write with the same id once
            headers = {"X-Request-Id": os.urandom(16).hex()}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            status = response.status
        except (FileNotFoundError, ConnectionRefusedError):
            raise SwarmctlError("Cannot connect to the swarmctl daemon at %s. Is the daemon running?" % self.host)
        except PermissionError:
            raise SwarmctlError("Permission denied while connecting to the swarmctl daemon at %s" % self.host)
        except socket.timeout:
            raise SwarmctlError("Timed out after %ss waiting for the swarmctl daemon at %s (%s %s)"
                                % (self.timeout, self.host, method, path))
        except (OSError, http.client.HTTPException) as exc:
            raise SwarmctlError("Error talking to the swarmctl daemon at %s: %s" % (self.host, exc))
        finally:
            conn.close()
        if lines and status < 300:
            try:
                return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
            except ValueError:
                raise SwarmctlError("bad answer from the swarmctl daemon to %s %s: not JSON lines" % (method, path))
        try:
            data = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            data = {"message": raw.decode("utf-8", "replace").strip()}
        if status >= 300:
            message = data.get("message") if isinstance(data, dict) else None
            raise SwarmctlError(message or "HTTP %d from %s %s" % (status, method, path), status)
        return data

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body=None):
        return self.request("POST", path, body if body is not None else {})

    def delete(self, path):
        return self.request("DELETE", path)


# ---- updates from a read, retried on a conflict ------------------------------------------------------
# The same rule as the swarmctl CLI (swarmctl/cli/client.py; tests/unit/test_update_retry.py keeps the two in
# agreement; modules may import only the standard library, so it is repeated here). An update carries the
# version it was planned from (?version=N); on 409 "update out of sequence" the module reads the record again
# and retries, at most MAX_UPDATE_RETRIES times, while no field that it changes was changed by someone else
# since its first read; otherwise it fails with "update out of sequence".
MAX_UPDATE_RETRIES = 3
OUT_OF_SEQUENCE = "update out of sequence"


def field_at(record, path):
    """The value at a path of keys in a record (None where the path does not exist)."""
    node = record
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def still_meaningful(first, fresh, paths):
    """Whether an update planned on the record `first`, which changes the fields at `paths`, may be planned
    again on `fresh` after a conflict: true while every one of those fields is as the first read showed it."""
    return all(field_at(first, path) == field_at(fresh, path) for path in paths)


def is_out_of_sequence(exc):
    return getattr(exc, "status", None) == 409 and OUT_OF_SEQUENCE in str(exc)


def update_with_retry(read, plan, send):
    """read() -> the record; plan(record) -> (body, paths it changes); send(record, body) -> the answer
    (a POST carrying ?version=record's version). Returns (answer, the record the update was planned on)."""
    first = current = read()
    for attempt in range(MAX_UPDATE_RETRIES + 1):
        body, paths = plan(current)
        try:
            return send(current, body), current
        except SwarmctlError as exc:
            if not is_out_of_sequence(exc) or attempt == MAX_UPDATE_RETRIES:
                raise
        fresh = read()
        if not still_meaningful(first, fresh, paths):
            raise SwarmctlError(OUT_OF_SEQUENCE, 409)
        current = fresh
    raise SwarmctlError(OUT_OF_SEQUENCE, 409)  # not reached


def with_version(path, record):
    version = record.get("version")
    return path if version is None else "%s?version=%d" % (path, int(version))


def swarmctl_argument_spec(**options):
    """The options every module has (swarmctl_host, timeout), plus the module's own."""
    spec = dict(
        swarmctl_host=dict(type="str", default=DEFAULT_HOST, fallback=(env_fallback, ["SWARMCTL_HOST"])),
        timeout=dict(type="int", default=DEFAULT_TIMEOUT),
    )
    spec.update(options)
    return spec


def client_from_module(module):
    """A client for the module's swarmctl_host; a bad host fails the module."""
    try:
        return SwarmctlClient(module.params["swarmctl_host"], module.params["timeout"])
    except SwarmctlError as exc:
        module.fail_json(msg=exc.message)


# ---- units (same rules as the swarmctl CLI) ------------------------------------------------------
_SIZE = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)\s?(?:([kmgtp])i?)?b?$", re.IGNORECASE)
_MULTIPLIERS = {None: 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4, "p": 1024 ** 5}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|\u00b5s|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)$")


def require_manager(module, client, module_name):
    """Fail the module unless the daemon it talks to is an active swarm manager (the *_info modules of managers)."""
    info = client.get("/v1/info")
    if not info.get("is_manager") or info.get("local_node_state") != "active":
        module.fail_json(msg="Error running swarmctl.cluster.%s: must run on a swarm manager node" % module_name)
    return info


def parse_bytes(value, what="size"):
    """128M -> 134217728: binary multiples (k, m, g, t, p), optional b/ib suffix; a bare number is bytes."""
    if isinstance(value, bool):
        raise ValueError("invalid %s %r: expected a number of bytes with an optional unit, e.g. 128M" % (what, value))
    if isinstance(value, int):
        if value < 0:
            raise ValueError("invalid %s %r: must be >= 0" % (what, value))
        return value
    text = str(value).strip()
    match = _SIZE.match(text)
    if not match:
        raise ValueError("invalid %s %r: expected a number of bytes with an optional unit, e.g. 1024, 512k, 128M, 1.5G"
                         % (what, value))
    number, unit = match.groups()
    return int(float(number) * _MULTIPLIERS[unit.lower() if unit else None])


def parse_duration(value, what="duration"):
    """Go-style durations in seconds: 500ms, 5s, 1m30s, 2h; a bare number means seconds."""
    if isinstance(value, bool):
        raise ValueError("invalid %s %r: expected e.g. 10, 500ms, 5s, 1m30s or 2h" % (what, value))
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("invalid %s %r: must be >= 0" % (what, value))
        return float(value)
    text = str(value).strip()
    if _NUMBER.match(text):
        return float(text)
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError("invalid %s %r: expected e.g. 10, 500ms, 5s, 1m30s or 2h" % (what, value))
    return total


_UNIX = re.compile(r"^\d+(?:\.\d+)?$")
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$",
                      re.IGNORECASE)


def parse_timestamp(value, what="time", now=None):
    """Docker's forms of a point in time, as Unix seconds (the CLI's swarmctl/cli/units.py parse_timestamp):
    a duration before now (10m), Unix seconds, or RFC 3339 (2006-01-02T15:04:05Z)."""
    import datetime
    import time as _time
    now = _time.time() if now is None else now
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value if value is not None else "").strip()
    if _UNIX.match(text):
        return float(text)
    if text and text[-1:].isalpha() and not _RFC3339.match(text):
        try:
            return now - parse_duration(text, what)
        except ValueError:
            pass
    match = _RFC3339.match(text)
    if match:
        date, clock, fraction, zone = match.groups()
        clock = clock or "00:00:00"
        if clock.count(":") == 1:
            clock += ":00"
        try:
            stamp = datetime.datetime.strptime("%sT%s" % (date, clock), "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            match = None
        else:
            if zone:
                zone = "+00:00" if zone.upper() == "Z" else zone
                sign = 1 if zone[0] == "+" else -1
                digits = zone[1:].replace(":", "")
                offset = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
                stamp = stamp.replace(tzinfo=datetime.timezone(sign * offset))
            return stamp.timestamp() + (float(fraction) if fraction else 0.0)
    raise ValueError("invalid %s %r: expected RFC 3339 (2006-01-02T15:04:05Z), Unix seconds or a duration before "
                     "now (10m)" % (what, value))
