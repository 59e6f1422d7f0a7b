"""The CLI's client for the local daemon API: standard library only, so commands start fast."""

from __future__ import annotations

import http.client
import json
import os
import socket

DEFAULT_HOST = "unix:///run/swarmctl/swarmctl.sock"


class CLIError(Exception):
    """An error to print on one line before exiting non-zero."""


class DaemonError(CLIError):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def resolve_host(host: str | None) -> str:
    host = host or os.environ.get("SWARMCTL_HOST") or DEFAULT_HOST
    if not host.startswith("unix://"):
        raise CLIError(f"unsupported host {host!r}: use unix:///path/to/swarmctl.sock")
    return host


# A kept-alive connection the daemon closed meanwhile fails like this before any answer arrives.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class Client:
    """Requests to the local daemon over one kept-alive connection (reopened when the daemon closed it).

    Every request carries an X-Request-Id, so the one retry on a stale connection never applies a write
    twice: the daemon applies a request id once."""

    def __init__(self, host: str | None = None, timeout: float = 60.0):
        self.host = resolve_host(host)
        self.path = self.host[len("unix://"):]
        self.timeout = timeout
        self._conn: _UnixConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _error(self, exc: Exception) -> CLIError:
        if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
            return CLIError(f"Cannot connect to the swarmctl daemon at {self.host}. Is the daemon running?")
        if isinstance(exc, PermissionError):
            return CLIError(f"Permission denied while connecting to the swarmctl daemon at {self.host}")
        return CLIError(f"error talking to the swarmctl daemon at {self.host}: {exc}")

    def request(self, method: str, path: str, body=None):
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"X-Request-Id": os.urandom(16).hex()}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for _attempt in range(2):
            reused = self._conn is not None
            conn = self._conn or _UnixConnection(self.path, self.timeout)
            self._conn = None
            try:
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and isinstance(exc, _STALE):
                    continue  # the daemon closed the idle connection before reading this request: reopen once
                raise self._error(exc) from None
            if response.will_close:
                conn.close()
            else:
                self._conn = conn
            break
        else:
            raise CLIError(f"error talking to the swarmctl daemon at {self.host}: the connection was closed")
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = {"message": raw.decode(errors="replace").strip()}
        if response.status >= 300:
            message = data.get("message") if isinstance(data, dict) else None
            raise DaemonError(message or f"HTTP {response.status}", response.status)
        return data

    def get(self, path: str):
        return self.request("GET", path)

    def stream(self, path: str, timeout: float | None = None):
        """GET a newline-delimited JSON answer on a connection of its own, yielding each record as it comes
        (timeout None: wait as long as the daemon keeps the answer open, for `logs -f`)."""
        conn = _UnixConnection(self.path, timeout)
        try:
            try:
                conn.request("GET", path, headers={"X-Request-Id": os.urandom(16).hex()})
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise self._error(exc) from None
            if response.status >= 300:
                raw = response.read()
                try:
                    data = json.loads(raw) if raw else None
                except ValueError:
                    data = {"message": raw.decode(errors="replace").strip()}
                message = data.get("message") if isinstance(data, dict) else None
                raise DaemonError(message or f"HTTP {response.status}", response.status)
            while True:
                try:
                    line = response.readline()
                except (OSError, http.client.HTTPException) as exc:
                    raise self._error(exc) from None
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()

    def stream_lines(self, path: str):
        """GET a streamed answer (JSON lines) on a connection of its own, without a read timeout: yields each
        line decoded; an error answer raises DaemonError."""
        conn = _UnixConnection(self.path, self.timeout)
        try:
            try:
                conn.request("GET", path, headers={"X-Request-Id": os.urandom(16).hex()})
                conn.sock.settimeout(None)
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise self._error(exc) from None
            if response.status >= 300:
                raw = response.read()
                try:
                    message = json.loads(raw).get("message")
                except (ValueError, AttributeError):
                    message = raw.decode(errors="replace").strip()
                raise DaemonError(message or f"HTTP {response.status}", response.status)
            while True:
                try:
                    line = response.readline()
                except (OSError, http.client.HTTPException) as exc:
                    raise self._error(exc) from None
                if not line:
                    return
                line = line.strip()
                if line:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        raise CLIError(f"bad line from the daemon: {line[:80]!r}") from None
        finally:
            conn.close()

    def post(self, path: str, body=None):
        return self.request("POST", path, body if body is not None else {})

    def delete(self, path: str):
        return self.request("DELETE", path)


# ---- updates from a read, retried on a conflict ----------------------------------------------------
# The server refuses an update whose ?version= is not the record's current version with 409 and Docker's
# text "update out of sequence". The commands that update (service update and scale, node update, swarm
# update) then read the record again and retry, at most MAX_UPDATE_RETRIES times, but only while their
# change is still meaningful: while no field that the command changes was changed by someone else since the
# command's first read. The user's own edits are then re-applied on top of the other writer's changes, so
# neither is lost; when both touched the same field, the other writer's value is one the user never saw,
# and overwriting it silently would lose it, so the command stops with "update out of sequence".
# The Ansible modules repeat this rule (plugins/module_utils/swarmctl_client.py); a unit test keeps the two
# in agreement.
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


def still_meaningful(first, fresh, paths) -> bool:
    """Whether an update planned on the record `first`, which changes the fields at `paths`, may be planned
    again on `fresh` after a conflict: true while every one of those fields is as the first read showed it."""
    return all(field_at(first, path) == field_at(fresh, path) for path in paths)


def is_out_of_sequence(exc) -> bool:
    return getattr(exc, "status", None) == 409 and OUT_OF_SEQUENCE in str(exc)


def update_with_retry(read, plan, send):
    """read() -> the record; plan(record) -> (body, paths it changes); send(record, body) -> the answer
    (a POST carrying ?version=record's version). Returns (answer, the record the update was planned on)."""
    first = current = read()
    for attempt in range(MAX_UPDATE_RETRIES + 1):
        body, paths = plan(current)
        try:
            return send(current, body), current
        except DaemonError as exc:
            if not is_out_of_sequence(exc) or attempt == MAX_UPDATE_RETRIES:
                raise
        fresh = read()
        if not still_meaningful(first, fresh, paths):
            raise DaemonError(OUT_OF_SEQUENCE, 409)
        current = fresh
    raise DaemonError(OUT_OF_SEQUENCE, 409)  # not reached


def with_version(path: str, record: dict) -> str:
    version = record.get("version")
    return path if version is None else f"{path}?version={int(version)}"


def filter_query(filters: list[str] | None, sep: str = "?") -> str:
    """`--filter KEY=VALUE` options as the API's repeated ?filter= parameters (the server applies them)."""
    from urllib.parse import quote as _quote
    parts = []
    for item in filters or ():
        if "=" not in item or not item.partition("=")[0].strip():
            raise CLIError(f"bad format of filter (expected name=value): {item!r}")
        parts.append("filter=" + _quote(item, safe=""))
    return (sep + "&".join(parts)) if parts else ""
