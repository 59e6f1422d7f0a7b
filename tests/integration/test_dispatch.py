"""Dispatcher at scale on real daemons (issue 8, point 4): sessions follow the leader, a status report does
not send the full assignment list back, Down detection by deadlines still works, and after a leader change
the sessions move to the new leader."""

import time

from tests.integration.harness import check, nodes_json, wait_for
from tests.integration.test_failover import leader_of

IMAGE = "swarmctl-test/busybox:latest"


def session_of(daemon):
    return daemon.info().get("session") or {}


def test_sessions_follow_the_leader_deltas_and_down(docker_cluster):
    managers, workers = docker_cluster.form(3, 2)
    leader = wait_for(lambda: leader_of(managers), what="a leader")
    leader_addr = leader.info()["manager_addr"]
    for d in managers + workers:  # every node's session goes to the leader, none through a follower
        wait_for(lambda: session_of(d).get("manager") == leader_addr, timeout=10, what=f"{d.name} on the leader")
    check(leader.cli("service", "create", "--name", "web", "--stop-grace-period", "0s", "--replicas", "4",
                     "--constraint", "node.role==worker", IMAGE, "sleep", "3600", timeout=120))
    def running():
        tasks = check(leader.cli("service", "ps", "--format", "json", "web")).json()
        return sum(1 for t in tasks if t["status"]["state"] == "running") == 4
    wait_for(running, timeout=60, what="4 running tasks")
    full = {w.name: session_of(w)["full_lists"] for w in workers}
    # the running reports were written; none of them made the leader send a full list again
    time.sleep(2)
    assert {w.name: session_of(w)["full_lists"] for w in workers} == full
    assert all(count <= 2 for count in full.values()), full
    # Down detection: kill a worker daemon; it is Down within its grace (3 periods of 0.5 s) plus slack
    victim = workers[0]
    victim.kill()
    start = time.monotonic()
    wait_for(lambda: any(n["description"]["hostname"] == victim.name and n["status"]["state"] == "down"
                         for n in nodes_json(leader)), timeout=10, interval=0.1, what="the killed worker Down")
    assert time.monotonic() - start < 3 * docker_cluster.heartbeat + 2.0
    others = {n["description"]["hostname"]: n["status"]["state"] for n in nodes_json(leader)}
    assert all(state == "ready" for name, state in others.items() if name != victim.name), others
    # a leader change: the sessions move to the new leader
    leader.kill()
    survivors = [m for m in managers if m is not leader]
    new_leader = wait_for(lambda: leader_of(survivors), timeout=15, what="a new leader")
    new_addr = new_leader.info()["manager_addr"]
    for d in survivors + workers[1:]:
        wait_for(lambda: session_of(d).get("manager") == new_addr, timeout=15, what=f"{d.name} on the new leader")
