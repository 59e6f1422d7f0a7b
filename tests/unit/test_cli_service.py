"""`swarmctl service ...`: unit parsing, request bodies, tables, the convergence decision, and the commands
end-to-end against a stub HTTP server on a temporary unix socket (no daemon)."""

from __future__ import annotations

import json
import os
import socketserver
import tempfile
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from swarmctl.cli import service_cmds as sc
from swarmctl.cli.client import CLIError
from swarmctl.cli.main import build_parser, main
from swarmctl.cli.units import (UnitError, human_age, parse_bytes, parse_cpus, parse_duration, parse_int, parse_key,
                                parse_kv)

# ==== units =====================================================================================


@pytest.mark.parametrize("text, expected", [
    ("1024", 1024), ("0", 0), ("512k", 512 * 1024), ("512K", 512 * 1024), ("128M", 128 * 1024 ** 2),
    ("128m", 128 * 1024 ** 2), ("128MB", 128 * 1024 ** 2), ("128MiB", 128 * 1024 ** 2), ("1g", 1024 ** 3),
    ("1.5G", int(1.5 * 1024 ** 3)), ("100b", 100), (" 64 M ", 64 * 1024 ** 2), ("2t", 2 * 1024 ** 4),
])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "  ", "-1", "-128M", "abc", "12x", "1.2.3G", "M", "inf", "nan", "1e3",
                                  "12 MM", "0x10"])
def test_parse_bytes_rejects(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_bytes(text)


def test_unit_errors_are_cli_errors_with_one_line():
    with pytest.raises(CLIError) as info:
        parse_bytes("lots", "--limit-memory")
    assert isinstance(info.value, ValueError)
    assert "--limit-memory" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("10", 10.0), ("0", 0.0), ("2.5", 2.5), ("5s", 5.0), ("500ms", 0.5), ("1m30s", 90.0), ("2h", 7200.0),
    ("1h2m3s", 3723.0), ("1.5s", 1.5), ("250us", 0.00025), ("100ns", 1e-7),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "s", "5x", "-5s", "1m30", "5 s", "abc", "1d", "5s5", "ms"])
def test_parse_duration_rejects(text):
    with pytest.raises(UnitError, match="invalid duration"):
        parse_duration(text)


def test_parse_kv_and_key():
    assert parse_kv("A=1") == ("A", "1")
    assert parse_kv("A=") == ("A", "")
    assert parse_kv("A=b=c") == ("A", "b=c")
    for bad in ("A", "=1", "A B=1", "", " =x"):
        with pytest.raises(UnitError, match="KEY=VALUE"):
            parse_kv(bad, "--env")
    assert parse_key("A") == "A" and parse_key("A=1") == "A"
    with pytest.raises(UnitError):
        parse_key("")


def test_parse_int_and_cpus():
    assert parse_int("3", "--replicas") == 3
    assert parse_int("0", "--replicas") == 0
    for bad in ("-1", "x", "1.5", ""):
        with pytest.raises(UnitError, match="--replicas"):
            parse_int(bad, "--replicas")
    assert parse_cpus("0.5") == 0.5 and parse_cpus("2") == 2.0
    for bad in ("-1", "x", "nan", "inf", ""):
        with pytest.raises(UnitError):
            parse_cpus(bad)


@pytest.mark.parametrize("seconds, expected", [
    (0, "Less than a second"), (0.9, "Less than a second"), (-5, "Less than a second"), (1, "1 second"),
    (5, "5 seconds"), (59, "59 seconds"), (60, "About a minute"), (119, "About a minute"), (180, "3 minutes"),
    (59 * 60, "59 minutes"), (3600, "About an hour"), (2 * 3600, "2 hours"), (47 * 3600, "47 hours"),
    (3 * 86400, "3 days"), (15 * 86400, "2 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years"),
])
def test_human_age(seconds, expected):
    assert human_age(seconds) == expected


# ==== request bodies ============================================================================
def _args(*argv):
    return build_parser().parse_args(list(argv))


def test_create_body_minimal_leaves_server_defaults():
    args = _args("service", "create", "--name", "web", "busybox")
    assert sc.build_create_body(args) == {"name": "web", "mode": "replicated", "labels": {},
                                          "task": {"image": "busybox"}}


def test_create_body_everything():
    args = _args("service", "create", "--name", "web", "--replicas", "3", "--constraint", "node.role==worker",
                 "--constraint", "node.labels.zone != a", "--placement-strategy", "binpack",
                 "--replicas-max-per-node", "2", "--reserve-cpu", "0.5", "--reserve-memory", "128M",
                 "--limit-cpu", "1", "--limit-memory", "1g", "-e", "A=1", "--env", "B=x=y", "--label", "team=web",
                 "--restart-condition", "on-failure", "--restart-max-attempts", "3", "--restart-delay", "1m30s",
                 "--restart-window", "2m", "--stop-grace-period", "500ms", "--network", "none",
                 "--entrypoint", "sh -c", "-d", "busybox", "sleep", "3600", "--not-an-option")
    body = sc.build_create_body(args)
    assert body == {
        "name": "web", "mode": "replicated", "replicas": 3, "labels": {"team": "web"},
        "task": {
            "image": "busybox", "args": ["sleep", "3600", "--not-an-option"], "command": ["sh", "-c"],
            "env": {"A": "1", "B": "x=y"}, "network_mode": "none",
            "resources": {"reservations": {"cpus": 0.5, "memory": 128 * 1024 ** 2},
                          "limits": {"cpus": 1.0, "memory": 1024 ** 3}},
            "restart_policy": {"condition": "on-failure", "max_attempts": 3, "delay": 90.0, "window": 120.0},
            "placement": {"constraints": ["node.role==worker", "node.labels.zone != a"],
                          "max_replicas_per_node": 2, "strategy": "binpack"},
            "stop_grace_period": 0.5,
        },
    }
    assert args.detach
    json.dumps(body)  # plain JSON


def test_create_body_generated_name_and_global():
    args = _args("service", "create", "--mode", "global", "busybox")
    body = sc.build_create_body(args, name=sc.random_name())
    assert body["mode"] == "global" and "replicas" not in body
    assert "_" in body["name"] and len(body["name"]) <= 63


@pytest.mark.parametrize("argv, message", [
    (["--replicas", "x"], "--replicas"), (["--replicas", "-1"], "--replicas"),
    (["--mode", "global", "--replicas", "2"], "replicated mode"), (["--reserve-memory", "lots"], "--reserve-memory"),
    (["--limit-cpu", "-2"], "--limit-cpu"), (["--restart-delay", "soon"], "--restart-delay"),
    (["-e", "NOVALUE"], "--env"), (["--label", "=x"], "--label"), (["--constraint", "node.role"], "constraint"),
    (["--entrypoint", "sh 'unclosed"], "--entrypoint"), (["--replicas-max-per-node", "1.5"], "per-node"),
])
def test_create_body_bad_input_is_cli_error(argv, message):
    args = _args("service", "create", "--name", "web", *argv, "busybox")
    with pytest.raises(CLIError, match=message):
        sc.build_create_body(args)


def _service(name="web", replicas=2, mode="replicated", **task):
    spec_task = {"image": "busybox", "command": None, "args": ["sleep", "3600"], "env": {"A": "1", "B": "2"},
                 "network_mode": "host",
                 "resources": {"reservations": {"cpus": 0.0, "memory": 0}, "limits": {"cpus": 0.0, "memory": 0}},
                 "restart_policy": {"condition": "any", "delay": 5.0, "max_attempts": 0, "window": 0.0},
                 "placement": {"constraints": ["node.role==worker"], "max_replicas_per_node": 0, "strategy": None},
                 "stop_grace_period": 10.0, "force_update": 0}
    spec_task.update(task)
    return {"id": "svc" + name.ljust(22, "0"), "version": 7, "spec_version": 1, "previous_spec": None,
            "created_at": 1000.0, "updated_at": 1000.0,
            "spec": {"name": name, "labels": {"team": "a", "tier": "front"}, "mode": mode,
                     "replicas": replicas if mode == "replicated" else None, "task": spec_task},
            "replicas_status": {"running": 1, "desired": replicas}}


def test_update_body_only_changed_parts():
    args = _args("service", "update", "web")
    assert sc.build_update_body(args, _service()) == {"force": False}
    args = _args("service", "update", "--replicas", "5", "--image", "busybox:2", "--force", "web")
    assert sc.build_update_body(args, _service()) == {"replicas": 5, "task": {"image": "busybox:2"}, "force": True}


def test_update_body_env_labels_constraints():
    args = _args("service", "update", "--env-add", "C=3", "--env-add", "A=9", "--env-rm", "B", "--env-rm", "A",
                 "--label-add", "x=1", "--label-rm", "tier", "--label-rm", "missing",
                 "--constraint-add", "node.labels.zone==a", "--constraint-rm", "node.role == worker",
                 "--limit-memory", "256m", "--restart-condition", "none", "--args", "sleep 10", "web")
    body = sc.build_update_body(args, _service())
    assert body == {
        "labels": {"team": "a", "x": "1"},
        "task": {"env": {"A": "9", "C": "3"},  # removes first, then adds (like Docker)
                 "placement": {"constraints": ["node.labels.zone==a"]},
                 "resources": {"limits": {"memory": 256 * 1024 ** 2}},
                 "restart_policy": {"condition": "none"}, "args": ["sleep", "10"]},
        "force": False,
    }


def test_update_body_constraint_add_then_remove_and_dedupe():
    args = _args("service", "update", "--constraint-add", "node.role==worker", "--constraint-add", "a.b==c",
                 "--constraint-rm", "a.b==c", "web")
    body = sc.build_update_body(args, _service())
    assert body["task"]["placement"]["constraints"] == ["node.role==worker"]


def test_update_body_errors():
    with pytest.raises(CLIError, match="replicated mode"):
        sc.build_update_body(_args("service", "update", "--replicas", "2", "web"), _service(mode="global"))
    with pytest.raises(CLIError, match="--env-add"):
        sc.build_update_body(_args("service", "update", "--env-add", "X", "web"), _service())
    with pytest.raises(CLIError, match="--reserve-cpu"):
        sc.build_update_body(_args("service", "update", "--reserve-cpu", "many", "web"), _service())


def test_parse_scale_args():
    assert sc.parse_scale_args(["web=3", "api=0"]) == [("web", 3), ("api", 0)]
    assert sc.parse_scale_args(["web=3", "web=1"]) == [("web", 1)]
    for bad in ("web", "web=x", "web=-1", "=3", "web=", "web=1.5"):
        with pytest.raises(CLIError, match="invalid scale specifier"):
            sc.parse_scale_args(["ok=1", bad])


# ==== tables ====================================================================================
def test_ls_rows():
    web = _service("web", replicas=3)
    web["replicas_status"] = {"running": 2, "desired": 3}
    agent = _service("agent", mode="global", placement={"constraints": [], "max_replicas_per_node": 0})
    agent["replicas_status"] = {"running": 4, "desired": 4}
    capped = _service("capped", replicas=2, placement={"max_replicas_per_node": 1})
    capped["replicas_status"] = {"running": 2, "desired": 2}
    rows = sc.ls_rows([agent, capped, web])
    assert rows == [[agent["id"][:12], "agent", "global", "4/4", "busybox", ""],
                    [capped["id"][:12], "capped", "replicated", "2/2 (max 1 per node)", "busybox", ""],
                    [web["id"][:12], "web", "replicated", "2/3", "busybox", ""]]


def _task(tid, slot, state, desired="running", ts=1000.0, created=None, err="", message="", node="n1",
          node_name="worker-1"):
    return {"id": tid.ljust(25, "x"), "service_id": "svcweb", "service_name": "web", "slot": slot,
            "node_id": node, "spec": {"image": "busybox"}, "spec_version": 1, "desired_state": desired,
            "created_at": created if created is not None else ts, "updated_at": ts, "version": 3,
            "status": {"state": state, "message": message, "err": err, "timestamp": ts, "container_id": None,
                       "exit_code": None},
            "name": f"web.{slot}" if slot is not None else f"web.{node}", "node_name": node_name}


def test_ps_rows_history_states_and_errors():
    long_err = "task: non-zero exit (1): something went badly wrong"
    tasks = [  # server order: by slot, then node, then newest first
        _task("t1new", 1, "running", ts=995.0, created=990.0),
        _task("t1old", 1, "failed", desired="shutdown", ts=980.0, created=970.0, err=long_err),
        _task("t2", 2, "pending", ts=999.5, node=None, node_name=None,
              message="no suitable node (1 node: insufficient memory)"),
    ]
    rows = sc.ps_rows(tasks, now=1000.0)
    assert rows[0] == ["t1newxxxxxxx", "web.1", "busybox", "worker-1", "Running", "Running 5 seconds ago", ""]
    assert rows[1][:6] == ["t1oldxxxxxxx", " \\_ web.1", "busybox", "worker-1", "Shutdown", "Failed 20 seconds ago"]
    assert rows[1][6] == '"' + long_err[:29] + '…"'
    assert rows[2] == ["t2xxxxxxxxxx", "web.2", "busybox", "", "Running", "Pending less than a second ago",
                       '"no suitable node (1 node: ins…"']
    full = sc.ps_rows(tasks, now=1000.0, no_trunc=True)
    assert full[1][0] == tasks[1]["id"] and full[1][6] == f'"{long_err}"'


def test_ps_rows_live_task_first_even_if_older():
    tasks = [_task("newer", 1, "failed", desired="shutdown", ts=990.0, created=990.0),
             _task("live", 1, "running", ts=995.0, created=980.0)]
    assert [r[1] for r in sc.ps_rows(tasks, now=1000.0)] == ["web.1", " \\_ web.1"]
    assert sc.ps_rows(tasks, now=1000.0)[0][0].startswith("live")


def test_print_tables(capsys):
    from swarmctl.cli.output import print_table
    print_table(sc.PS_HEADERS, sc.ps_rows([_task("a", 1, "running", ts=1000.0)], now=1000.0))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "IMAGE", "NODE", "DESIRED", "STATE", "CURRENT", "STATE", "ERROR"]
    assert "Running less than a second ago" in lines[1]


# ==== convergence decision ======================================================================
def _p(running, desired, failed=0, pending=None, ended=0):
    return {"running": running, "desired": desired,
            "failed": [{"task": f"web.{i + 1}", "error": "task: non-zero exit (1)"} for i in range(failed)],
            "pending": pending or [], "ended": ended}


def test_converges_when_all_run():
    samples = [(0.0, _p(0, 3)), (0.1, _p(1, 3)), (0.2, _p(3, 3))]
    assert sc.decide(samples[:2]).state == "waiting"
    assert sc.decide(samples).state == "converged"


def test_zero_replicas_converge_immediately_but_global_settles():
    assert sc.decide([(0.0, _p(0, 0))]).state == "converged"
    assert sc.decide([(0.0, _p(0, 0)), (0.5, _p(0, 0))], global_mode=True).state == "waiting"
    assert sc.decide([(0.0, _p(0, 0)), (0.5, _p(0, 2)), (0.6, _p(2, 2))], global_mode=True).state == "converged"
    assert sc.decide([(0.0, _p(0, 0)), (1.2, _p(0, 0))], global_mode=True).state == "converged"


def test_fails_after_more_than_desired_plus_two_failures():
    ok = [(0.0, _p(0, 1, failed=1)), (1.0, _p(0, 1, failed=3))]
    assert sc.decide(ok).state == "waiting"
    bad = ok + [(2.0, _p(0, 1, failed=4))]
    decision = sc.decide(bad)
    assert decision.state == "failed"
    assert "4 failures" in decision.reason and "web.4: task: non-zero exit (1)" in decision.reason
    # the exact count added by the CLI when the server's list (capped at 5) is full
    full = _p(0, 4, failed=5)
    assert sc.decide([(0.0, full)]).state == "waiting"
    assert sc.decide([(0.0, full), (1.0, dict(full, failed_count=7))]).state == "failed"
    # failures are counted at their highest, even if history is trimmed later
    assert sc.decide([(0.0, _p(0, 1, failed=4)), (1.0, _p(1, 1))]).state == "failed"


class _FakeClient:
    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def get(self, path):
        self.calls.append(path)
        return self.answers[path]


def test_count_failures_exact_when_the_list_is_full():
    assert sc.count_failures(_FakeClient({}), "web", _p(0, 3, failed=4)) == 4
    tasks = [{"spec_version": 2, "status": {"state": s}} for s in ("failed", "rejected", "running", "failed")]
    tasks += [{"spec_version": 1, "status": {"state": "failed"}}] * 3
    client = _FakeClient({"/v1/services/web": {"spec_version": 2}, "/v1/services/web/tasks": tasks})
    assert sc.count_failures(client, "web", _p(0, 3, failed=5)) == 3


def test_failures_from_before_a_scale_do_not_count():
    samples = [(0.0, _p(1, 2, failed=4)), (1.0, _p(1, 2, failed=5))]
    assert sc.decide(samples, baseline_failures=4).state == "waiting"
    assert sc.decide(samples + [(2.0, _p(2, 2, failed=5))], baseline_failures=4).state == "converged"


def test_pending_without_suitable_node_fails_after_grace():
    reason = "no suitable node (2 nodes: insufficient memory)"
    samples = [(0.0, _p(0, 1, pending=[reason])), (2.0, _p(0, 1, pending=[reason]))]
    assert sc.decide(samples).state == "waiting"
    decision = sc.decide(samples + [(3.5, _p(0, 1, pending=[reason]))])
    assert decision.state == "failed" and decision.reason == f"a task is pending: {reason}"
    # the clock restarts when the reason goes away
    samples = [(0.0, _p(0, 1, pending=[reason])), (2.0, _p(0, 1)), (2.5, _p(0, 1, pending=[reason])),
               (5.0, _p(0, 1, pending=[reason]))]
    assert sc.decide(samples).state == "waiting"
    # running == desired does not count while a task is still unschedulable
    assert sc.decide([(0.0, _p(2, 2, pending=[reason]))]).state == "waiting"


def test_timeout_and_missing_answers():
    samples = [(0.0, _p(1, 3)), (5.0, None), (9.9, _p(2, 3))]
    assert sc.decide(samples, timeout=10).state == "waiting"
    decision = sc.decide(samples + [(10.0, None)], timeout=10)
    assert decision.state == "failed" and "within 10s" in decision.reason and "2 out of 3" in decision.reason


def test_restart_condition_none():
    done = [(0.0, _p(0, 2)), (1.0, _p(1, 2, ended=1))]
    assert sc.decide(done, restart_condition="none").state == "converged"  # completed, never restarted
    assert sc.decide(done).state == "waiting"  # with restarts the slot will run again
    failed = [(0.0, _p(0, 2)), (1.0, _p(1, 2, failed=1, ended=1))]
    assert sc.decide(failed, restart_condition="none").state == "failed"


# ==== end to end against a stub daemon ==========================================================
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the daemon's aiohttp server

    def log_message(self, *args):
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        stub = self.server.stub
        stub.requests.append((self.command, self.path, body))
        stub.request_ids.append(self.headers.get("X-Request-Id"))
        status, data = stub.respond(self.command, self.path, body)
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()  # bytes: a stream (NDJSON)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_DELETE = _answer


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Stub:
    """Canned answers by (method, path): a value, a (status, value) pair, a list (one item per call, the last
    one repeats) or a callable(body)."""

    def __init__(self):
        self.routes: dict[tuple[str, str], object] = {}
        self.requests: list[tuple[str, str, object]] = []
        self.request_ids: list[str | None] = []

    def respond(self, method, path, body):
        answer = self.routes.get((method, path))
        if answer is None:
            return 404, {"message": f"No such route: {method} {path}"}
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if callable(answer):
            answer = answer(body)
        if isinstance(answer, tuple):
            return answer
        return 200, answer

    def paths(self, method=None):
        return [p for m, p, _ in self.requests if method in (None, m)]


@pytest.fixture
def stub(monkeypatch):
    directory = tempfile.mkdtemp(prefix="swarmctl-stub-")
    path = os.path.join(directory, "api.sock")
    server = _Server(path, _Handler)
    server.stub = Stub()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("SWARMCTL_HOST", f"unix://{path}")
    monkeypatch.setattr(sc, "POLL_INTERVAL", 0.01)
    try:
        yield server.stub
    finally:
        server.shutdown()
        server.server_close()
        os.unlink(path)
        os.rmdir(directory)


def test_create_waits_for_convergence(stub, capsys):
    svc = _service("web", replicas=2)
    stub.routes[("POST", "/v1/services")] = lambda body: dict(svc, spec=dict(svc["spec"], name=body["name"]))
    stub.routes[("GET", f"/v1/services/{svc['id']}")] = svc
    stub.routes[("GET", f"/v1/services/{svc['id']}/progress")] = [_p(0, 2), _p(0, 2), _p(1, 2), _p(2, 2)]
    assert main(["service", "create", "--name", "web", "--replicas", "2", "--env", "A=1", "busybox", "sleep",
                 "60"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [svc["id"], "overall progress: 0 out of 2 tasks", "overall progress: 1 out of 2 tasks",
                   "overall progress: 2 out of 2 tasks", "verify: Service converged"]
    method, path, body = stub.requests[0]
    assert (method, path) == ("POST", "/v1/services")
    assert body == {"name": "web", "mode": "replicated", "replicas": 2, "labels": {},
                    "task": {"image": "busybox", "args": ["sleep", "60"], "env": {"A": "1"}}}


def test_create_detached_with_generated_name_retries_a_taken_one(stub, capsys):
    svc = _service("x")
    answers = [(409, {"message": "service x already exists"}), svc]
    stub.routes[("POST", "/v1/services")] = answers
    assert main(["service", "create", "-d", "busybox"]) == 0
    assert capsys.readouterr().out == svc["id"] + "\n"
    names = [body["name"] for m, _, body in stub.requests]
    assert len(names) == 2 and all("_" in n for n in names)


def test_create_fails_when_unschedulable(stub, capsys, monkeypatch):
    monkeypatch.setattr(sc, "PENDING_GRACE", 0.05)
    svc = _service("big", replicas=1)
    reason = "no suitable node (1 node: insufficient memory)"
    stub.routes[("POST", "/v1/services")] = svc
    stub.routes[("GET", f"/v1/services/{svc['id']}")] = svc
    stub.routes[("GET", f"/v1/services/{svc['id']}/progress")] = _p(0, 1, pending=[reason])
    assert main(["service", "create", "--name", "big", "--reserve-memory", "64G", "busybox"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: service big was created, but a task is pending: " + reason)
    assert "keeps working on it" in err and err.count("\n") == 1


def test_create_bad_input_makes_no_request(stub, capsys):
    assert main(["service", "create", "--name", "web", "--limit-memory", "12Q", "busybox"]) == 1
    assert "Error: invalid --limit-memory '12Q'" in capsys.readouterr().err
    assert stub.requests == []


def test_wait_follows_a_lagging_replica(stub):
    svc = _service("web", replicas=1)
    stale = dict(svc, version=svc["version"] - 1)
    stub.routes[("GET", f"/v1/services/{svc['id']}")] = [stale, (503, {"message": "no leader"}), svc]
    stub.routes[("GET", f"/v1/services/{svc['id']}/progress")] = _p(1, 1)
    from swarmctl.cli.client import Client
    sc.wait_for_convergence(Client(), svc, "updated", quiet=True)
    assert stub.paths("GET").count(f"/v1/services/{svc['id']}") == 3


def test_ls_and_ps(stub, capsys, monkeypatch):
    svc = _service("web", replicas=2)
    stub.routes[("GET", "/v1/services")] = [[svc]]  # a list of answers: one answer, itself a list
    stub.routes[("GET", "/v1/services/web/tasks")] = [[_task("aaa", 1, "running", ts=1000.0)]]
    assert main(["service", "ls"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
    assert out[1].split() == [svc["id"][:12], "web", "replicated", "1/2", "busybox"]
    assert main(["service", "ls", "-q"]) == 0
    assert capsys.readouterr().out == svc["id"] + "\n"
    monkeypatch.setattr(sc.time, "time", lambda: 1065.0)
    assert main(["service", "ps", "web"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Running about a minute ago" in out[1] and "worker-1" in out[1]
    assert main(["service", "ps", "--format", "json", "web"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == "web.1"


def test_scale(stub, capsys):
    svc = _service("web", replicas=3)
    stub.routes[("GET", "/v1/services/web")] = svc
    stub.routes[("POST", f"/v1/services/{svc['id']}/scale?version=7")] = {"service": svc, "changes": ["replicas"]}
    stub.routes[("GET", "/v1/services/web/progress")] = _p(1, 1)
    stub.routes[("GET", f"/v1/services/{svc['id']}")] = svc
    stub.routes[("GET", f"/v1/services/{svc['id']}/progress")] = [_p(1, 3), _p(3, 3)]
    assert main(["service", "scale", "web=3"]) == 0
    assert capsys.readouterr().out.splitlines() == ["web scaled to 3", "overall progress: 1 out of 3 tasks",
                                                    "overall progress: 3 out of 3 tasks", "verify: Service converged"]
    assert ("POST", f"/v1/services/{svc['id']}/scale?version=7", {"replicas": 3}) in stub.requests


def test_scale_bad_syntax_makes_no_request(stub, capsys):
    assert main(["service", "scale", "web=2", "api=x"]) == 1
    assert capsys.readouterr().err.startswith("Error: invalid scale specifier 'api=x'")
    assert stub.requests == []


def test_scale_unknown_service_continues(stub, capsys):
    svc = _service("web", replicas=0)
    stub.routes[("GET", "/v1/services/web")] = svc
    stub.routes[("POST", f"/v1/services/{svc['id']}/scale?version=7")] = {"service": svc, "changes": ["replicas"]}
    assert main(["service", "scale", "-d", "nope=1", "web=0"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "web scaled to 0\n"
    assert "No such route" in captured.err


def test_update_posts_changed_parts(stub, capsys):
    svc = _service("web", replicas=2)
    new = dict(svc, spec_version=2, version=9)
    stub.routes[("GET", "/v1/services/web")] = svc
    stub.routes[("POST", f"/v1/services/{svc['id']}/update?version=7")] = {"service": new, "changes": ["task.env"]}
    assert main(["service", "update", "-d", "--env-add", "C=3", "--env-rm", "A", "web"]) == 0
    assert capsys.readouterr().out == "web\n"
    posts = [(p, b) for m, p, b in stub.requests if m == "POST"]
    assert posts == [(f"/v1/services/{svc['id']}/update?version=7",
                      {"task": {"env": {"B": "2", "C": "3"}}, "force": False})]


def test_update_waits_and_reports_failures(stub, capsys):
    svc = _service("web", replicas=1)
    new = dict(svc, spec_version=2, version=9)
    stub.routes[("GET", "/v1/services/web")] = svc
    stub.routes[("GET", f"/v1/services/{svc['id']}")] = [svc, new]  # the local replica lags once
    stub.routes[("POST", f"/v1/services/{svc['id']}/update?version=7")] = {"service": new, "changes": ["task.image"]}
    stub.routes[("GET", f"/v1/services/{svc['id']}/progress")] = [_p(1, 1, failed=2), _p(0, 1, failed=1),
                                                                    _p(0, 1, failed=4)]
    assert main(["service", "update", "--image", "busybox:bad", "web"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "web"
    assert captured.err.startswith("Error: service web was updated, but its tasks keep failing (4 failures")


def test_rm_inspect_logs_swarm_update(stub, capsys):
    svc = _service("web")
    stub.routes[("DELETE", "/v1/services/web")] = {}
    assert main(["service", "rm", "ghost", "web"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "web\n" and "Error response from daemon: No such route" in captured.err

    stub.routes[("GET", "/v1/services/web")] = svc
    assert main(["service", "inspect", "web"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == svc["id"]
    assert main(["service", "inspect", "web", "ghost"]) == 1
    captured = capsys.readouterr()
    assert [s["id"] for s in json.loads(captured.out)] == [svc["id"]] and "ghost" in captured.err
    assert main(["service", "inspect", "ghost"]) == 1

    ctx1 = {"service": "web", "slot": "1", "id": "abcdefabcdef0123456789", "node": "n1"}
    ctx2 = {"service": "web", "slot": "2", "id": "def0123456789abcdef", "node": "n2"}
    stub.routes[("GET", "/v1/services/web/logs?tail=2")] = "".join(json.dumps(r) + "\n" for r in [
        {"warning": "logs of task web.2.def012345678@n2 are missing: node n2 is down", "task": ctx2},
        {"ts": 1796605323123400000, "task": ctx1, "line": "hello"},
        {"ts": 1796605323123400001, "task": ctx1, "line": "world"}]).encode()
    capsys.readouterr()
    assert main(["service", "logs", "--tail", "2", "web"]) == 0  # a missing node's tasks: warned, exit 0
    captured = capsys.readouterr()
    assert captured.out == "web.1.abcdefabcdef@n1    | hello\nweb.1.abcdefabcdef@n1    | world\n"
    assert captured.err == "warning: logs of task web.2.def012345678@n2 are missing: node n2 is down\n"
    assert main(["service", "logs", "--tail", "2", "--no-trunc", "-t", "web"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == \
        "2026-12-07T01:02:03.123400000Z web.1.abcdefabcdef0123456789@n1    | hello"
    assert main(["service", "logs", "--tail", "2", "--no-task-ids", "web"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "web.1@n1    | hello"
    assert main(["service", "logs", "--tail", "2", "--raw", "web"]) == 0
    assert capsys.readouterr().out == "hello\nworld\n"
    stub.routes[("GET", "/v1/services/web/logs?since=1796605323.000000&follow=1")] = b""
    assert main(["service", "logs", "-f", "--since", "2026-12-07T01:02:03Z", "web"]) == 0
    assert main(["service", "logs", "ghost"]) == 1
    assert "no such task or service: ghost" in capsys.readouterr().err
    assert main(["service", "logs", "--tail", "x", "web"]) == 1
    assert main(["service", "logs", "--since", "yesterday", "web"]) == 1
    assert "invalid --since 'yesterday'" in capsys.readouterr().err

    stub.routes[("GET", "/v1/swarm")] = {"id": "c", "version": 4, "spec": {"default_strategy": "spread"}}
    stub.routes[("POST", "/v1/swarm/update?version=4")] = {"spec": {"default_strategy": "binpack"}}
    assert main(["swarm", "update", "--default-strategy", "binpack"]) == 0
    assert capsys.readouterr().out.endswith("Swarm updated.\n")
    assert stub.requests[-1] == ("POST", "/v1/swarm/update?version=4", {"default_strategy": "binpack"})


def test_swarm_update_cert_expiry(stub, capsys):
    stub.routes[("GET", "/v1/swarm")] = {"id": "c", "version": 4, "spec": {}}
    stub.routes[("POST", "/v1/swarm/update?version=4")] = {"spec": {"node_cert_expiry": 7776000}}
    assert main(["swarm", "update", "--cert-expiry", "2160h"]) == 0
    assert stub.requests[-1] == ("POST", "/v1/swarm/update?version=4", {"node_cert_expiry": 7776000.0})
    before = len(stub.requests)
    for bad in ("30s", "0", "abc", "-5m"):
        capsys.readouterr()
        assert main(["swarm", "update", f"--cert-expiry={bad}"]) == 1
        assert "certificate expiry" in capsys.readouterr().err
    assert len(stub.requests) == before  # nothing was sent


def test_version(stub, capsys):
    from swarmctl import __version__
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"swarmctl version {__version__}\n"
    stub.routes[("GET", "/v1/info")] = {"version": "9.9.9", "node_id": "abc", "role": "manager"}
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert f"Client:\n Version:  {__version__}" in out and "Server:\n Version:  9.9.9" in out and "abc (manager)" in out
    assert main(["version", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["client"]["version"] == __version__ and data["server"]["version"] == "9.9.9"


def test_version_without_a_daemon(capsys):
    assert main(["-H", "unix:///tmp/swarmctl-no-such-daemon.sock", "version"]) == 1
    captured = capsys.readouterr()
    assert "Client:" in captured.out and "Server:" not in captured.out
    assert "Cannot connect to the swarmctl daemon" in captured.err


def test_client_keeps_its_connection_and_reopens_a_closed_one(stub):
    """One connection for many requests; after the daemon closed it, the next request reopens it once. Every
    request carries its own X-Request-Id, kept on the retry, so a write is never applied twice."""
    from swarmctl.cli.client import Client
    stub.routes[("GET", "/v1/info")] = {"node_id": "n"}
    stub.routes[("POST", "/v1/nodes/n/update")] = {"id": "n"}
    client = Client()
    assert client.get("/v1/info") == {"node_id": "n"}
    first = client._conn
    assert first is not None
    assert client.get("/v1/info") == {"node_id": "n"} and client._conn is first
    first.sock.shutdown(2)  # as if the daemon had closed the idle connection
    assert client.post("/v1/nodes/n/update", {"labels_add": {"a": "b"}}) == {"id": "n"}
    assert client._conn is not None and client._conn is not first
    assert [p for _m, p, _b in stub.requests].count("/v1/nodes/n/update") == 1
    assert all(stub.request_ids) and len(set(stub.request_ids)) == len(stub.request_ids) == 3
    client.close()


# ==== rolling updates ===========================================================================
def test_update_and_rollback_flags_become_the_configs():
    args = _args("service", "create", "--name", "web", "--update-parallelism", "2", "--update-delay", "10s",
                 "--update-order", "start-first", "--update-failure-action", "rollback", "--update-monitor", "1m",
                 "--update-max-failure-ratio", "0.2", "--update-healthy-deadline", "30s",
                 "--update-progress-deadline", "1h", "--rollback-parallelism", "0", "--rollback-failure-action",
                 "continue", "busybox")
    body = sc.build_create_body(args)
    assert body["update_config"] == {"parallelism": 2, "delay": 10.0, "order": "start-first",
                                     "failure_action": "rollback", "monitor": 60.0, "max_failure_ratio": 0.2,
                                     "healthy_deadline": 30.0, "progress_deadline": 3600.0}
    assert body["rollback_config"] == {"parallelism": 0, "failure_action": "continue"}
    update = sc.build_update_body(_args("service", "update", "--update-parallelism", "3", "web"), {"spec": {}})
    assert update["update_config"] == {"parallelism": 3}
    assert ("spec", "update_config", "parallelism") in sc.update_paths(
        _args("service", "update", "--update-parallelism", "3", "web"))


@pytest.mark.parametrize("argv, message", [
    (["--update-max-failure-ratio", "2"], 'invalid argument "2" for "--update-max-failure-ratio" flag'),
    (["--update-delay", "soon"], "invalid --update-delay 'soon'"),
    (["--update-parallelism", "-1"], "--update-parallelism"),
    (["--update-progress-deadline", "0s"], "must be more than 0"),
])
def test_bad_update_flags_are_one_line_errors(argv, message, capsys):
    assert main(["service", "create", "--name", "web", *argv, "busybox"]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_rollback_failure_action_rollback_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["service", "create", "--rollback-failure-action", "rollback", "busybox"])
    assert exc.value.code == 2 and "invalid choice: 'rollback'" in capsys.readouterr().err


def test_the_wait_follows_the_rolling_update():
    def p(running, state, message=""):
        return dict(_p(running, 3), update_status={"state": state, "message": message})
    # all 3 run on the new spec, but the updater still watches them (monitor): not converged yet
    assert sc.decide([(0.0, p(3, "updating"))], follow_update="update").state == "waiting"
    assert sc.decide([(0.0, p(3, "updating")), (1.0, p(3, "completed"))], follow_update="update").state == "converged"
    paused = sc.decide([(0.0, p(1, "paused", "update paused due to failure or early termination of task x: boom"))],
                       follow_update="update")
    assert paused.state == "failed" and paused.reason.startswith("update paused due to failure")
    rolled = sc.decide([(0.0, p(3, "rollback_started", "update rolled back due to failure"))], follow_update="update")
    assert rolled.state == "failed" and rolled.reason == "update rolled back due to failure"
    assert sc.decide([(0.0, p(3, "rollback_completed"))], follow_update="rollback").state == "converged"
    # a scale does not follow an earlier update's state
    assert sc.decide([(0.0, p(3, "paused", "update paused"))]).state == "converged"


def test_update_fails_with_the_paused_updates_reason(stub, capsys):
    svc = _service("web", replicas=1)
    new = dict(svc, spec_version=2, version=9)
    stub.routes[("GET", "/v1/services/web")] = svc
    stub.routes[("GET", f"/v1/services/{svc['id']}")] = new
    stub.routes[("POST", f"/v1/services/{svc['id']}/update?version=7")] = {"service": new, "changes": ["task.image"]}
    reason = "update paused due to failure or early termination of task abc: task: non-zero exit (1)"
    stub.routes[("GET", f"/v1/services/{svc['id']}/progress")] = dict(_p(0, 1), update_status={
        "state": "paused", "message": reason})
    assert main(["service", "update", "--image", "busybox:bad", "web"]) == 1
    assert capsys.readouterr().err.strip() == f"Error: service web: {reason} (see 'swarmctl service inspect web')"


def test_rollback_and_update_rollback(stub, capsys):
    svc = _service("web", replicas=1)
    new = dict(svc, spec_version=3, version=10)
    stub.routes[("GET", f"/v1/services/{svc['id']}")] = new
    stub.routes[("POST", "/v1/services/web/rollback")] = {"service": new, "changes": ["rollback"]}
    assert main(["service", "rollback", "-d", "web"]) == 0
    assert capsys.readouterr().out == "web\n"
    assert main(["service", "update", "--rollback", "-d", "web"]) == 0
    assert [p for m, p, _ in stub.requests if m == "POST"] == ["/v1/services/web/rollback"] * 2
    assert main(["service", "update", "--rollback", "--image", "x", "web"]) == 1
    assert "--rollback cannot be used with other options" in capsys.readouterr().err
    stub.routes[("POST", "/v1/services/web/rollback")] = (400, {"message": "service web does not have a previous spec"})
    assert main(["service", "rollback", "web"]) == 1
    assert capsys.readouterr().err.strip() == "Error response from daemon: service web does not have a previous spec"


def test_ls_shows_an_update_that_has_not_completed():
    svc = _service("web", replicas=3)
    svc["update_status"] = {"state": "rollback_paused", "spec_version": svc["spec_version"]}
    assert "(rollback paused)" in sc.ls_rows([svc])[0][3]
    svc["update_status"]["state"] = "completed"
    assert "(" not in sc.ls_rows([svc])[0][3]


def test_progress_on_a_terminal_draws_a_line_per_slot_in_place():
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True
    lines = sc.progress_lines(dict(_p(1, 3), slots=[{"slot": 1, "state": "running"}, {"slot": 2, "state": "starting"},
                                                    {"slot": 3, "state": "pending"}]))
    assert lines[0] == "overall progress: 1 out of 3 tasks"
    assert lines[1] == "1/3: running   [" + "=" * 49 + ">]"
    assert lines[3].startswith("3/3: pending   [") and lines[3].count("=") < lines[2].count("=")
    out = Tty()
    view = sc.TerminalProgress(out)
    view.draw(lines)
    view.draw(lines[:1] + lines[1:2] * 3)
    text = out.getvalue()
    assert text.count("\x1b[4A") == 1 and text.count("\x1b[2K") == 8  # drawn twice, in place

    class Client:
        def __init__(self):
            self.answers = [dict(_p(2, 3), slots=[{"slot": i, "state": "running" if i < 3 else "starting"}
                                                  for i in (1, 2, 3)]),
                            dict(_p(3, 3), slots=[{"slot": i, "state": "running"} for i in (1, 2, 3)])]

        def get(self, path):
            if path.endswith("/progress"):
                return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            return {"id": "x", "version": 1}
    tty = Tty()
    sc.wait_for_convergence(Client(), {"id": "x", "version": 1, "spec": {"name": "web"}}, "created", out=tty,
                            sleep=lambda s: None)
    assert "1/3: running" in tty.getvalue() and tty.getvalue().endswith("verify: Service converged\n")
    plain = io.StringIO()
    sc.wait_for_convergence(Client(), {"id": "x", "version": 1, "spec": {"name": "web"}}, "created", out=plain,
                            sleep=lambda s: None)
    assert "\x1b" not in plain.getvalue() and "1/3" not in plain.getvalue()


def test_node_ps_default_self_columns_filters_and_errors(stub, capsys):
    t1 = dict(_task("aaa", 1, "running", node="n1"), ports=[{"target": 80, "protocol": "tcp", "port": 8080,
                                                              "mode": "host"},
                                                             {"target": 81, "protocol": "tcp", "port": 20001,
                                                              "mode": "ingress"}])
    t2 = _task("bbb", 2, "running", node="n2", node_name="worker-2")
    stub.routes[("GET", "/v1/nodes/self/tasks")] = [[t1]]
    stub.routes[("GET", "/v1/nodes/n1/tasks?filter=desired-state%3Drunning")] = [[t1]]
    stub.routes[("GET", "/v1/nodes/n2/tasks?filter=desired-state%3Drunning")] = [[t2]]
    stub.routes[("GET", "/v1/nodes/n1/tasks?filter=bogus%3D1")] = (400, {"message": "invalid filter 'bogus'"})
    assert main(["node", "ps"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "NAME", "IMAGE", "NODE", "DESIRED", "STATE", "CURRENT", "STATE", "ERROR",
                              "PORTS"]
    assert out[1].startswith("aaaxxxxxxxxx ") and out[1].endswith("*:8080->80/tcp") and "20001" not in out[1]
    assert main(["node", "ps", "-q", "--no-trunc", "-f", "desired-state=running", "n1", "n2", "n1"]) == 0
    assert capsys.readouterr().out.split() == [t1["id"], t2["id"]]  # each task once
    assert main(["node", "ps", "--format", "json", "-f", "desired-state=running", "n2"]) == 0
    assert [t["id"] for t in json.loads(capsys.readouterr().out)] == [t2["id"]]
    assert main(["node", "ps", "-f", "bogus=1", "n1"]) == 1
    assert capsys.readouterr().err == "Error response from daemon: invalid filter 'bogus'\n"
