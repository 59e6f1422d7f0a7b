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


class Client:
    def __init__(self, host: str | None = None, timeout: float = 60.0):
        self.host = resolve_host(host)
        self.path = self.host[len("unix://"):]
        self.timeout = timeout

    def request(self, method: str, path: str, body=None):
        conn = _UnixConnection(self.path, self.timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (FileNotFoundError, ConnectionRefusedError):
            raise CLIError(f"Cannot connect to the swarmctl daemon at {self.host}. Is the daemon running?") from None
        except PermissionError:
            raise CLIError(f"Permission denied while connecting to the swarmctl daemon at {self.host}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise CLIError(f"error talking to the swarmctl daemon at {self.host}: {exc}") from None
        finally:
            conn.close()
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
