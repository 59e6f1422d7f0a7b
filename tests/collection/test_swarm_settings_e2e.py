"""End to end through ansible: swarmctl.cluster.swarm creates a swarm on an interface's address label with Raft and
dispatcher settings, updates them (the other manager's running replica takes them up), fails without claiming a
change, and swarmctl.cluster.info answers with community.docker.docker_swarm_info's names.

Two daemons on the harness addresses of indexes 1 and 2 (127.0.0.(11 + offset) and the next); the label
lo:sw<N> is added to node1's address by the test and removed after it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

from tests.collection.test_modules_e2e import Env, failed_with, ok
from tests.integration.harness import IP_OFFSET, Daemon, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env():
    root = tempfile.mkdtemp(prefix="swcs-", dir="/tmp")
    e = Env(root, "unix:///nonexistent", "none")  # no tasks here: the daemons need no engine
    e.manager, e.worker = Daemon(1, root, heartbeat=0.5), Daemon(2, root, heartbeat=0.5)
    ip, name = e.manager.ip, f"lo:sw{10 + IP_OFFSET + 1}"
    subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo", "label", name], check=True, capture_output=True)
    e.label = name
    try:
        e.manager.start()
        e.worker.start()
        yield e
    finally:
        for d in (e.worker, e.manager):
            d.stop()
        subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo", "label", name], check=False,
                       capture_output=True)
        if os.environ.get("SWARMCTL_KEEP_LOGS") is None:
            shutil.rmtree(root, ignore_errors=True)


def raft_conf(env, daemon) -> dict:
    return (env.api(daemon).get("/v1/info").get("raft") or {}).get("conf") or {}


def test_info_names_outside_a_swarm(env):
    result = env.ansible("info", {"nodes": True, "unlock_key": True})
    assert ok(result) and not result["changed"]
    assert result["can_talk_to_docker"] is True
    assert result["docker_swarm_active"] is False and result["docker_swarm_manager"] is False
    assert "swarm_unlock_key" not in result and "nodes" not in result


def test_a_failed_init_is_not_changed(env):
    """It said changed=true and 'Swarm cluster created' for an address the daemon refused."""
    for args, message in (({"advertise_addr": "nosuch0"}, "no such network interface 'nosuch0'"),
                          ({"advertise_addr": env.label, "data_path_port": 4789}, "data_path_port is not supported"),
                          ({"advertise_addr": env.label, "keep_old_snapshots": 2}, "keep_old_snapshots must be 0")):
        result = env.ansible("swarm", dict(args, state="present"))
        assert failed_with(result, message), args
        assert result["changed"] is False and result["actions"] == [], result
    assert env.api().get("/v1/info")["local_node_state"] == "inactive"


SETTINGS = {"election_tick": 8, "heartbeat_tick": 2, "snapshot_interval": 5000, "dispatcher_heartbeat_period": 1}


def test_init_on_a_label_with_settings(env):
    args = dict(SETTINGS, state="present", advertise_addr=env.label,
                listen_addr="%s:%d" % (env.label, env.manager.port))
    predicted = env.ansible("swarm", args, check=True, diff=True)
    assert ok(predicted) and predicted["changed"] and predicted["diff"]["after"]["election_tick"] == 8
    real = env.ansible("swarm", args, diff=True)
    assert ok(real) and real["changed"] and real["actions"] == ["Swarm cluster created"], real
    assert real["swarm_facts"]["spec"]["election_tick"] == 8
    info = env.api().get("/v1/info")
    assert info["addr"] == env.manager.ip
    conf = wait_for(lambda: (c := raft_conf(env, env.manager)).get("election_tick") == 8 and c, timeout=5,
                    what="the replica runs with the settings")
    assert conf["election_timeout"] == [0.4, 0.96] and conf["heartbeat_period"] == 0.1
    assert conf["snapshot_interval"] == 5000
    again = env.ansible("swarm", args)
    assert ok(again) and not again["changed"], again


def test_update_reaches_the_other_manager(env):
    token = env.tokens()["Manager"]
    joined = env.ansible("swarm", {"state": "join", "join_token": token, "remote_addrs": [env.manager.addr]},
                         env.worker)
    assert ok(joined) and joined["changed"], joined
    wait_for(lambda: raft_conf(env, env.worker).get("election_tick") == 8, timeout=10,
             what="the new manager runs with the swarm's settings")
    result = env.ansible("swarm", {"state": "present", "election_tick": 12, "snapshot_interval": 2000}, diff=True)
    assert ok(result) and result["changed"], result
    assert result["actions"] == ["Swarm settings updated: election_tick, snapshot_interval"]
    assert result["diff"]["before"]["election_tick"] == 8 and result["diff"]["after"]["election_tick"] == 12
    for d in (env.manager, env.worker):
        wait_for(lambda d=d: raft_conf(env, d).get("election_timeout") == [0.6, 1.44]
                 and raft_conf(env, d)["snapshot_interval"] == 2000, timeout=10, what=f"{d.name} takes the update")
    refused = env.ansible("swarm", {"state": "present", "heartbeat_tick": 12})
    assert failed_with(refused, "must be less than election_tick (12)") and refused["changed"] is False


def test_info_returns_community_docker_names(env):
    result = env.ansible("info", {"nodes": True, "services": True, "tasks": True, "unlock_key": True})
    assert ok(result) and result["can_talk_to_docker"] is True
    assert result["docker_swarm_active"] is True and result["docker_swarm_manager"] is True
    assert result["swarm_unlock_key"] is None  # autolock is off
    assert sorted(n["Hostname"] for n in result["nodes"]) == [env.manager.name, env.worker.name]
    assert set(result["nodes"][0]) == {"ID", "Hostname", "Status", "Availability", "ManagerStatus", "EngineVersion"}
    assert {n["ManagerStatus"] for n in result["nodes"]} <= {"Leader", "reachable"}
    assert result["services"] == [] and result["tasks"] == []
    verbose = env.ansible("info", {"nodes": True, "verbose_output": True})
    assert {n["description"]["hostname"] for n in verbose["nodes"]} == {env.manager.name, env.worker.name}
