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

    def post(self, path: str, body=None):
        return self.request("POST", path, body if body is not None else {})

    def delete(self, path: str):
        return self.request("DELETE", path)
