"""Hollow nodes against a real manager daemon: `swarmctl hollow --count 20` joins 20 real worker nodes from
one process (simulated runtime, a stand-in for the Docker engine used only by hollow nodes), they are Ready
in `node ls`, a service of 100 replicas runs on them, draining one moves its tasks, and killing the process
makes all 20 go Down. Every process started here is stopped at the end (the `cluster` fixture and the
finally below)."""

import collections
import os
import signal
import subprocess

from tests.integration.harness import SWARMCTL, check, nodes_json, wait_for

COUNT = 20


class Hollow:
    """One `swarmctl hollow` process; its output goes to a log file in the cluster's root."""

    def __init__(self, root: str, join: str, token: str, count: int, *extra: str, name: str = "hollow"):
        self.log_path = os.path.join(root, f"{name}.log")
        self.args = SWARMCTL + ["hollow", "--count", str(count), "--join", join, "--token", token,
                                "--data-dir", os.path.join(root, name), "--name-prefix", name,
                                "--heartbeat-period", "0.5s", "--advertise-addr", join.rsplit(":", 1)[0],
                                "--log-level", "info", *extra]
        self.proc = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)


def hollow_states(manager, prefix="hollow-"):
    return {n["description"]["hostname"]: n["status"]["state"] for n in nodes_json(manager)
            if n["description"]["hostname"].startswith(prefix)}


def running_per_node(manager, service):
    tasks = check(manager.cli("service", "ps", "--format", "json", service)).json()
    return collections.Counter(t["node_name"] for t in tasks
                               if t["desired_state"] == "running" and t["status"]["state"] == "running")


def test_hollow_nodes_ready_run_a_service_drain_and_go_down(cluster):
    m = cluster.daemon(1)
    check(m.cli("swarm", "init", "--advertise-addr", m.ip))
    check(m.cli("node", "update", "--availability", "drain", "node1"))  # tasks only on hollow nodes
    token = check(m.cli("swarm", "join-token", "-q", "worker")).out.strip()
    hollow = Hollow(cluster.root, m.addr, token, COUNT, "--start-latency", "0.1s")
    hollow.start()
    try:
        wait_for(lambda: "nodes running" in hollow.output() or hollow.proc.poll() is not None, timeout=60,
                 what="the hollow nodes to join")
        assert hollow.proc.poll() is None, hollow.output()
        assert f"hollow: {COUNT} nodes running" in hollow.output() and "KiB per node" in hollow.output()
        wait_for(lambda: list(hollow_states(m).values()) == ["ready"] * COUNT, timeout=30, what="20 hollow nodes Ready")
        table = check(m.cli("node", "ls")).out
        assert sum(1 for line in table.splitlines() if "hollow-" in line and "Ready" in line) == COUNT

        check(m.cli("service", "create", "--name", "web", "--replicas", "100", "--detach", "busybox", "sleep", "1d",
                    timeout=60))
        per_node = wait_for(lambda: (lambda c: c if sum(c.values()) == 100 else None)(running_per_node(m, "web")),
                            timeout=60, what="100 replicas running")
        assert set(per_node) <= {f"hollow-{i}" for i in range(COUNT)} and len(per_node) == COUNT

        logs = check(m.cli("service", "logs", "web", timeout=60)).out
        assert "simulated runtime" in logs  # the process's one agent listener serves every node's logs

        check(m.cli("node", "update", "--availability", "drain", "hollow-3"))
        moved = wait_for(lambda: (lambda c: c if sum(c.values()) == 100 and "hollow-3" not in c else None)(
            running_per_node(m, "web")), timeout=60, what="hollow-3's tasks to move")
        assert len(moved) == COUNT - 1

        hollow.stop(signal.SIGKILL)
        wait_for(lambda: list(hollow_states(m).values()) == ["down"] * COUNT, timeout=30, what="20 hollow nodes Down")
    finally:
        hollow.stop(signal.SIGKILL)


def test_hollow_bad_token_and_unreachable_manager_one_line_errors(cluster):
    m = cluster.daemon(1)
    check(m.cli("swarm", "init", "--advertise-addr", m.ip))
    token = check(m.cli("swarm", "join-token", "-q", "worker")).out.strip()
    manager_token = check(m.cli("swarm", "join-token", "-q", "manager")).out.strip()
    check(m.cli("swarm", "join-token", "--rotate", "worker"))  # the old worker token is now wrong
    for tok, join, message in ((token, m.addr, "invalid join token"),
                               (manager_token, m.addr, "hollow nodes join as workers"),
                               (token, f"{m.ip}:{m.port + 5}", "could not connect to the manager")):
        proc = subprocess.run(SWARMCTL + ["hollow", "--count", "3", "--join", join, "--token", tok, "--data-dir",
                                          os.path.join(cluster.root, "bad"), "--advertise-addr", m.ip],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and proc.stderr.startswith("Error: ") and message in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    # the manager-token probe left again at once: a Down worker, no second manager
    roles = {n["id"]: (n["spec"]["role"], n["status"]["state"]) for n in nodes_json(m)}
    assert sorted(roles.values()) == [("manager", "ready"), ("worker", "down")], roles


def test_hollow_restart_brings_back_the_same_nodes(cluster):
    m = cluster.daemon(1)
    check(m.cli("swarm", "init", "--advertise-addr", m.ip))
    token = check(m.cli("swarm", "join-token", "-q", "worker")).out.strip()
    hollow = Hollow(cluster.root, m.addr, token, 5, name="again")
    hollow.start()
    try:
        wait_for(lambda: list(hollow_states(m, "again-").values()) == ["ready"] * 5, timeout=30, what="5 Ready")
        ids = {n["id"] for n in nodes_json(m) if n["description"]["hostname"].startswith("again-")}
        hollow.stop(signal.SIGTERM)
        assert hollow.proc.returncode == 0
        wait_for(lambda: list(hollow_states(m, "again-").values()) == ["down"] * 5, timeout=30, what="5 Down")
        hollow.start()
        wait_for(lambda: list(hollow_states(m, "again-").values()) == ["ready"] * 5, timeout=30, what="Ready again")
        again = {n["id"] for n in nodes_json(m) if n["description"]["hostname"].startswith("again-")}
        assert again == ids  # the same five nodes, none joined anew
        assert "(0 joined now)" in hollow.output()
    finally:
        hollow.stop(signal.SIGKILL)


def endpoint_report(hollow_dir):
    import json
    try:
        with open(os.path.join(hollow_dir, "endpoints.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def test_hollow_nodes_follow_the_endpoint_stream(cluster):
    """With --endpoints every hollow node long-polls the endpoint table through its real session, as a real
    node's mesh does: all 20 hold a published port's tasks, and learn of new ones within 1 s of their start."""
    m = cluster.daemon(1)
    check(m.cli("swarm", "init", "--advertise-addr", m.ip))
    check(m.cli("node", "update", "--availability", "drain", "node1"))
    token = check(m.cli("swarm", "join-token", "-q", "worker")).out.strip()
    hollow = Hollow(cluster.root, m.addr, token, COUNT, "--start-latency", "0.1s", "--endpoints")
    hollow.start()
    where = os.path.join(cluster.root, "hollow")
    try:
        wait_for(lambda: "nodes running" in hollow.output() or hollow.proc.poll() is not None, timeout=60,
                 what="the hollow nodes to join")
        assert hollow.proc.poll() is None, hollow.output()
        check(m.cli("service", "create", "--name", "web", "-p", "8080:80", "--replicas", "2", "--detach",
                    "busybox", "sleep", "1d", timeout=60))

        def holding(n):
            report = endpoint_report(where)
            entry = ((report or {}).get("routes", {}).get("tcp/8080") or {}).get(str(n))
            return report if entry and entry[0] == COUNT else None
        wait_for(lambda: holding(2), timeout=30, what="every hollow node to hold web's 2 tasks")
        check(m.cli("service", "scale", "web=4", timeout=60))
        report = wait_for(lambda: holding(4), timeout=30, what="every hollow node to hold web's 4 tasks")
        tasks = check(m.cli("service", "ps", "--format", "json", "web")).json()
        started = max(t["status"]["timestamp"] for t in tasks if t["status"]["state"] == "running")
        last = report["routes"]["tcp/8080"]["4"][2]
        print(f"endpoints at {COUNT} hollow nodes: the last node held the 4th task {last - started:.3f} s after it ran")
        assert report["following"] == COUNT
        assert last - started <= 1.0
    finally:
        hollow.stop(signal.SIGTERM)
