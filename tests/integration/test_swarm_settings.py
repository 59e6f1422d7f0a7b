"""`swarm init` on an interface's address label, with Raft and dispatcher settings that every manager's running
replica takes up (shown by `info --format json` as raft.conf), and `swarm update` of them reaching the other
managers. The label is the test's own loopback address (127.0.0.(10 + offset + 1)), added and removed here."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.harness import IP_OFFSET, check, nodes_json, wait_for


@pytest.fixture
def label():
    """(ip, label) of an address label on lo for node1's address; removed after the test, also on failure."""
    ip, name = f"127.0.0.{10 + IP_OFFSET + 1}", f"lo:sw{10 + IP_OFFSET + 1}"
    subprocess.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo", "label", name], check=True,
                   capture_output=True)
    try:
        yield ip, name
    finally:
        subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo", "label", name], check=False,
                       capture_output=True)


def raft_conf(daemon) -> dict:
    return (check(daemon.cli("info", "--format", "json")).json().get("raft") or {}).get("conf") or {}


def test_bad_addresses_and_settings_are_one_line_and_change_nothing(cluster, label):
    ip, name = label
    m = cluster.daemon(1)
    for args, message in (
            (["--advertise-addr", "nosuch0"], "no such network interface 'nosuch0'"),
            (["--advertise-addr", "lo"], "multiple addresses on interface lo"),
            (["--advertise-addr", name, "--data-path-port", "4789"], "data_path_port is not supported"),
            (["--advertise-addr", name, "--data-path-addr", name], "data_path_addr is not supported"),
            (["--advertise-addr", name, "--max-snapshots", "3"], "only 0 is supported"),
            (["--advertise-addr", name, "--heartbeat-tick", "6"], "must be less than election_tick")):
        res = m.cli("swarm", "init", *args)
        assert res.code != 0 and message in res.err and len(res.err.strip().splitlines()) == 1, (args, res)
    assert check(m.cli("info", "--format", "json")).json()["local_node_state"] == "inactive"


def test_init_on_a_label_with_raft_settings_that_reach_every_manager(cluster, label):
    ip, name = label
    m1 = cluster.daemon(1)
    check(m1.cli("swarm", "init", "--advertise-addr", name, "--listen-addr", f"{name}:{m1.port}",
                 "--election-tick", "8", "--heartbeat-tick", "2", "--snapshot-interval", "5000",
                 "--dispatcher-heartbeat", "1s"))
    info = check(m1.cli("info", "--format", "json")).json()
    assert info["addr"] == ip and info["manager_addr"] == f"{ip}:{m1.port}"
    spec = check(m1.cli("swarm", "inspect")).json()["spec"]
    assert (spec["election_tick"], spec["heartbeat_tick"], spec["snapshot_interval"],
            spec["dispatcher_heartbeat_period"]) == (8, 2, 5000, 1.0)
    conf = wait_for(lambda: (c := raft_conf(m1)) and c["election_tick"] == 8 and c, timeout=5,
                    what="the leader's replica takes the settings")
    assert conf["election_timeout"] == [0.4, 0.96] and conf["heartbeat_period"] == 0.1
    assert conf["snapshot_interval"] == 5000 and conf["heartbeat_tick"] == 2

    m2, m3 = cluster.join(2, role="manager"), cluster.join(3, role="manager")
    for d in (m2, m3):
        wait_for(lambda d=d: raft_conf(d).get("election_tick") == 8 and raft_conf(d)["snapshot_interval"] == 5000,
                 timeout=10, what=f"{d.name} runs with the swarm's Raft settings")
    # the daemons run with --heartbeat-period 0.5: the swarm's 1 s reaches every node
    wait_for(lambda: {n["description"].get("heartbeat_period") for n in nodes_json(m1)} == {1.0}, timeout=10,
             what="every node heartbeats at the swarm's period")

    # an update through a follower reaches every manager's running replica, no restart
    check(m2.cli("swarm", "update", "--election-tick", "12", "--snapshot-interval", "2000"))
    for d in (m1, m2, m3):
        wait_for(lambda d=d: raft_conf(d).get("election_timeout") == [0.6, 1.44]
                 and raft_conf(d)["snapshot_interval"] == 2000, timeout=10, what=f"{d.name} takes the update")
    res = m1.cli("swarm", "update", "--heartbeat-tick", "12")
    assert res.code != 0 and "invalid heartbeat_tick 12: it must be less than election_tick (12)" in res.err, res
    res = m1.cli("swarm", "update", "--log-entries-for-slow-followers", "500")
    assert res.code != 0 and "only 0 is supported" in res.err, res
    assert check(m1.cli("swarm", "inspect")).json()["spec"]["heartbeat_tick"] == 2
    # the cluster still works under the new timeouts: a leader, three reachable managers
    wait_for(lambda: sorted(str((n.get("manager_status") or {}).get("reachability")) for n in nodes_json(m1))
             == ["reachable"] * 3, timeout=10, what="three reachable managers")
