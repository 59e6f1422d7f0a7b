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

    def request(self, method, path, body=None):
        conn = _UnixConnection(self.path, self.timeout)
        try:
            payload = json.dumps(body).encode("utf-8") if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
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
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)$")


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
