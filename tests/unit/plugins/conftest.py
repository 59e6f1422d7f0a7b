"""Fixtures for the unit tests of the swarmctl.cluster modules (plain pytest from the repository root).

The repository root is the collection, so a temporary ansible_collections/swarmctl/cluster symlink to it
makes `ansible_collections.swarmctl.cluster.plugins...` importable the way the modules import each other.
Without ansible-core the tests are not collected at all.

`fake_daemon` serves a programmable stand-in for the daemon's API on a temporary unix socket, and
`run_module` runs a module's main() in-process against it and returns the module's JSON result.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import json
import os
import shutil
import socketserver
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler

import pytest

HAVE_ANSIBLE = importlib.util.find_spec("ansible") is not None

collect_ignore_glob = [] if HAVE_ANSIBLE else ["*.py"]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _make_collection_importable() -> None:
    try:
        importlib.import_module("ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_client")
        return  # ansible-test, or a checkout under ansible_collections/swarmctl/cluster
    except ImportError:
        pass
    root = tempfile.mkdtemp(prefix="swarmctl-coll-")
    atexit.register(shutil.rmtree, root, True)
    os.makedirs(os.path.join(root, "ansible_collections", "swarmctl"))
    os.symlink(REPO, os.path.join(root, "ansible_collections", "swarmctl", "cluster"))
    sys.path.insert(0, root)
    for name in [n for n in sys.modules if n == "ansible_collections" or n.startswith("ansible_collections.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


if HAVE_ANSIBLE:
    _make_collection_importable()


class FakeDaemon:
    """A unix-socket HTTP server; `routes[(METHOD, PATH)]` is a (status, body) pair or a function of the
    request body returning one. Every request is recorded in `requests` as (method, path, body)."""

    def __init__(self, path: str):
        self.path = path
        self.routes: dict = {}
        self.requests: list = []
        daemon = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                daemon.requests.append((self.command, self.path, body))
                route = daemon.routes.get((self.command, self.path))
                if route is None:
                    status, answer = 404, {"message": f"no fake route for {self.command} {self.path}"}
                elif callable(route):
                    status, answer = route(body)
                else:
                    status, answer = route
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(path, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def writes(self) -> list:
        return [r for r in self.requests if r[0] != "GET"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_daemon():
    root = tempfile.mkdtemp(prefix="swfake-", dir="/tmp")
    daemon = FakeDaemon(os.path.join(root, "d.sock"))
    try:
        yield daemon
    finally:
        daemon.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def run_module(capsys):
    """run_module(name, args, check_mode=False, diff=True) -> the module's result dict (failed=True on fail_json)."""
    from ansible.module_utils.testing import patch_module_args

    def run(name, args, check_mode=False, diff=True):
        module = importlib.import_module(f"ansible_collections.swarmctl.cluster.plugins.modules.{name}")
        args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        capsys.readouterr()
        with patch_module_args(args):
            with pytest.raises(SystemExit):
                module.main()
        out = capsys.readouterr().out
        return json.loads(out)

    return run
