"""API fuzzing with schemathesis against GET /v1/openapi.json, on live daemons (bounded: a fixed number of
generated requests per operation, a few minutes at most).

- the local socket of a manager in a swarm, and of a daemon that is in no swarm: no 5xx, every error a JSON
  body with a one-line message, and the daemon still up and answering afterwards;
- the management port of that manager without a client certificate: only 401/403, except the two public
  routes (GET /v1/ca, POST /v1/join), which must not answer 5xx.

schemathesis speaks HTTP through `requests`; requests-unixsocket2 (PyPI) gives it the unix socket.
Operations that would make the daemon act on addresses taken from the input (join a swarm at a generated
address, create a swarm on one) run only where they are refused before that (join on the manager), leave
only where there is nothing to leave; init is left out on the manager (force_new_cluster restarts its Raft).
"""

from __future__ import annotations

import os
import time
import warnings
from urllib.parse import quote

import pytest

schemathesis = pytest.importorskip("schemathesis")
requests_unixsocket = pytest.importorskip("requests_unixsocket")
import requests  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from tests.integration.harness import check  # noqa: E402

PUBLIC = {("GET", "/v1/ca"), ("POST", "/v1/join")}
# Streamed answers stay open until their end: the events stream until `until` (without it, until the client goes)
# and `service logs` while it follows. Their other parameters are generated; these are fixed so that every
# answer ends (until a time long past: the kept history, then the end; no following).
STREAM_BOUNDS = {("GET", "/v1/events"): {"query": {"until": 1}},
                 ("GET", "/v1/services/{ref}/logs"): {"query": {"follow": False}}}
REQUEST_TIMEOUT = 30
DERANDOMIZE = os.environ.get("SWARMCTL_FUZZ_RANDOM") is None  # the same inputs every run unless asked


class Fuzz:
    """Runs the generated requests of every operation against one base URL and records what went wrong."""

    def __init__(self, doc: dict, base_url: str, session: requests.Session, *, skip=(), allowed=None):
        self.schema = schemathesis.openapi.from_dict(doc)
        self.base_url = base_url
        self.session = session
        self.skip = set(skip)
        self.allowed = allowed      # (method, path, status, body) -> bool; None: any status below 500
        self.sent = 0
        self.unsent: dict[str, int] = {}
        self.statuses: dict[int, int] = {}
        self.problems: list[str] = []

    def check(self, case, response) -> None:
        status = response.status_code
        self.statuses[status] = self.statuses.get(status, 0) + 1
        where = f"{case.method} {case.formatted_path} -> {status}"
        if status >= 500:
            self.problems.append(f"{where}: {response.text[:300]}")
        if self.allowed is not None and not self.allowed(case.method.upper(), case.path, status, response.text):
            self.problems.append(f"{where}: not allowed here ({response.text[:200]})")
        if status >= 400:
            try:
                body = response.json()
            except ValueError:
                self.problems.append(f"{where}: the error is not JSON: {response.text[:200]!r}")
                return
            message = body.get("message") if isinstance(body, dict) else None
            if not isinstance(message, str) or not message or "\n" in message:
                self.problems.append(f"{where}: no one-line message: {body!r:.200}")

    def run_operation(self, operation, examples: int, before=None, **overrides) -> None:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode, **overrides)

            @settings(max_examples=examples, deadline=None, database=None, derandomize=DERANDOMIZE,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                      print_blob=False)
            @given(case=strategy)
            def send(case):
                if before is not None:
                    before()
                try:
                    response = case.call(base_url=self.base_url, session=self.session, timeout=REQUEST_TIMEOUT,
                                         verify=False)
                except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError) as exc:
                    self.unsent[type(exc).__name__] = self.unsent.get(type(exc).__name__, 0) + 1
                    return  # refused by the client library itself: nothing was sent
                self.sent += 1
                self.check(case, response)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                send()

    def run(self, examples: int, refs: dict[str, list[str]] | None = None, before=None) -> None:
        for result in self.schema.get_all_operations():
            operation = result.ok()
            key = (operation.method.upper(), operation.path)
            if key in self.skip:
                continue
            fixed = dict(STREAM_BOUNDS.get(key, {}))
            self.run_operation(operation, examples, before, **fixed)
            names = [p.name for p in operation.path_parameters]
            for name in names:  # the same again with path parameters that name real records
                for value in (refs or {}).get(name, []):
                    self.run_operation(operation, max(2, examples // 4), before, path_parameters={name: value},
                                       **fixed)

    def report(self) -> str:
        unsent = f" (not sent, refused by requests: {self.unsent})" if self.unsent else ""
        return f"{self.sent} requests, statuses {dict(sorted(self.statuses.items()))}{unsent}"


class _SocketAdapter(requests_unixsocket.UnixAdapter):
    """requests-unixsocket2's adapter with the socket fixed: schemathesis joins paths onto an http:// base URL
    (an http+unix:// one loses its scheme there), so the URL names a placeholder host and this adapter
    connects every request to the daemon's socket."""

    def __init__(self, socket_path: str):
        super().__init__()
        self._socket_url = "http+unix://" + quote(socket_path, safe="")

    def get_connection(self, url, proxies=None):
        return super().get_connection(self._socket_url, proxies)


def unix_session(socket_path: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    session.mount("http://daemon/", _SocketAdapter(socket_path))
    return session, "http://daemon"


def openapi_of(daemon) -> dict:
    session, base = unix_session(daemon.socket)
    response = session.get(base + "/v1/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def assert_alive(daemon) -> None:
    assert daemon.running, f"{daemon.name} crashed:\n{daemon.tail()}"
    info = daemon.info()
    assert info["node_id"] or info["local_node_state"] == "inactive"


def test_fuzz_the_local_socket_of_a_manager(fuzz_manager):
    manager = fuzz_manager
    doc = openapi_of(manager)
    session, base = unix_session(manager.socket)

    def ensure_fuzz_service():  # a fuzzed rm may remove it; later operations should still find one
        if session.get(base + "/v1/services/fuzz", timeout=10).status_code == 404:
            check(manager.cli("service", "create", "-d", "--name", "fuzz", "--mode", "global", "--constraint",
                              "node.labels.fuzz==never", "swarmctl-test/busybox:latest"))

    # leave would end the swarm under test; init with force_new_cluster restarts this manager's Raft, which
    # took longer than the 30 s request timeout here (an open finding); both are left out
    fuzz = Fuzz(doc, base, session, skip={("POST", "/v1/swarm/leave"), ("POST", "/v1/swarm/init")})
    started = time.monotonic()
    fuzz.run(examples=28, refs={"ref": ["fuzz", "node1"], "role": ["worker", "manager"]})
    ensure_fuzz_service()
    print(f"manager, local socket: {fuzz.report()} in {time.monotonic() - started:.0f}s")
    assert fuzz.sent >= 2000, fuzz.report()
    assert not fuzz.problems, "\n".join(fuzz.problems[:30])
    assert_alive(manager)
    assert manager.info()["local_node_state"] == "active"


def test_fuzz_the_local_socket_of_a_daemon_in_no_swarm(fuzz_cluster):
    daemon = fuzz_cluster.daemon(1)
    doc = openapi_of(daemon)
    session, base = unix_session(daemon.socket)
    # init and join would act on generated addresses; everything else must be refused cleanly
    fuzz = Fuzz(doc, base, session, skip={("POST", "/v1/swarm/init"), ("POST", "/v1/swarm/join")})
    started = time.monotonic()
    fuzz.run(examples=10, refs={"role": ["worker"]})
    print(f"daemon in no swarm, local socket: {fuzz.report()} in {time.monotonic() - started:.0f}s")
    assert fuzz.sent >= 600, fuzz.report()
    assert not fuzz.problems, "\n".join(fuzz.problems[:30])
    assert_alive(daemon)
    assert daemon.info()["local_node_state"] == "inactive"


def test_fuzz_the_management_port_without_a_certificate(fuzz_manager):
    manager = fuzz_manager
    doc = openapi_of(manager)
    session = requests.Session()

    def allowed(method, path, status, body):
        if (method, path) in PUBLIC:
            return status < 500
        if status == 400 and body.startswith('{"message": "bad request: '):
            return True  # refused by the HTTP parser before any route, as any server does (a line over 8190 bytes)
        return status in (401, 403)

    fuzz = Fuzz(doc, f"https://{manager.addr}", session, allowed=allowed)
    started = time.monotonic()
    fuzz.run(examples=10, refs={"ref": ["fuzz", "node1"]})
    print(f"manager, management port without a certificate: {fuzz.report()} in {time.monotonic() - started:.0f}s")
    assert fuzz.sent >= 600, fuzz.report()
    assert not fuzz.problems, "\n".join(fuzz.problems[:30])
    assert_alive(manager)
