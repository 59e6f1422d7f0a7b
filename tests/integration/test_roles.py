"""promote, demote, rm and leave, with Swarm's quorum guards."""

from tests.integration.harness import check, nodes_json, wait_for


def roles(daemon):
    return {n["description"]["hostname"]: (n["spec"]["role"], (n["manager_status"] or {}).get("reachability"),
                                           bool((n["manager_status"] or {}).get("leader")))
            for n in nodes_json(daemon)}


def leader_name(daemon):
    for name, (_role, _reach, leader) in roles(daemon).items():
        if leader:
            return name
    return None


def test_promote_and_demote(cluster):
    managers, workers = cluster.form(1, 2)
    m = managers[0]
    out = check(m.cli("node", "promote", "node2")).out
    assert "promoted to a manager" in out
    wait_for(lambda: roles(m)["node2"] == ("manager", "reachable", False), timeout=20, what="node2 a reachable manager")
    wait_for(lambda: workers[0].info()["raft"]["members"] == ["127.0.0.11:2378", "127.0.0.12:2378"], what="raft member")
    # the promoted node can now read and write cluster state
    check(workers[0].cli("node", "update", "--label-add", "promoted=yes", "node3"))
    assert check(workers[0].cli("node", "ls")).out.count("Ready") == 3
    # demote it again: it leaves Raft and loses access to cluster state
    check(m.cli("node", "demote", "node2"))
    wait_for(lambda: roles(m)["node2"] == ("worker", None, False), what="node2 a worker")
    wait_for(lambda: workers[0].info()["role"] == "worker" and not workers[0].info()["is_manager"], timeout=20,
             what="node2 knows it is a worker")
    assert workers[0].cli("node", "ls").code != 0
    assert m.info()["raft"]["members"] == ["127.0.0.11:2378"]


def test_demoting_the_leader_hands_over_leadership(cluster):
    managers, _ = cluster.form(3, 0)
    leader = leader_name(managers[0])
    assert leader == "node1"
    check(managers[1].cli("node", "demote", "node1"))
    wait_for(lambda: roles(managers[1])["node1"][0] == "worker", what="node1 demoted")
    wait_for(lambda: leader_name(managers[1]) in ("node2", "node3"), what="a new leader")
    wait_for(lambda: managers[0].info()["role"] == "worker", timeout=20, what="node1 became a worker")
    check(managers[2].cli("node", "update", "--label-add", "ok=1", "node1"))
    assert sorted(managers[1].info()["raft"]["members"]) == ["127.0.0.12:2378", "127.0.0.13:2378"]


def test_quorum_guards(cluster):
    managers, workers = cluster.form(3, 1)
    managers[2].kill()
    wait_for(lambda: roles(managers[0])["node3"][1] == "unreachable", what="node3 unreachable")
    result = managers[0].cli("node", "demote", "node2")
    assert result.code != 0 and "loss of quorum" in result.err
    result = managers[0].cli("node", "rm", "node2")
    assert result.code != 0 and "must be demoted" in result.err
    # the last manager cannot be demoted
    managers[2].start()
    check(managers[0].cli("node", "demote", "node3"))
    check(managers[0].cli("node", "demote", "node2"))
    wait_for(lambda: managers[0].info()["raft"]["members"] == ["127.0.0.11:2378"], what="one member")
    result = managers[0].cli("node", "demote", "node1")
    assert result.code != 0 and "last manager" in result.err


def test_rm_and_leave(cluster):
    managers, workers = cluster.form(1, 2)
    m, w1, w2 = managers[0], workers[0], workers[1]
    result = m.cli("node", "rm", "node2")
    assert result.code != 0 and "is not down" in result.err
    result = m.cli("node", "rm", "nosuchnode")
    assert result.code != 0 and "No such node: nosuchnode" in result.err
    # worker leaves: it is shown Down, then can be removed
    out = check(w1.cli("swarm", "leave")).out
    assert "left the swarm" in out
    assert w1.info()["local_node_state"] == "inactive"
    wait_for(lambda: {n["description"]["hostname"]: n["status"]["state"] for n in nodes_json(m)}["node2"] == "down",
             what="node2 down")
    check(m.cli("node", "rm", "node2"))
    assert "node2" not in [n["description"]["hostname"] for n in nodes_json(m)]
    # a running node removed with --force loses its certificate and leaves by itself
    check(m.cli("node", "rm", "--force", "node3"))
    wait_for(lambda: w2.info()["local_node_state"] == "inactive", timeout=10, what="node3 notices its removal")
    # a manager must force its leave
    result = m.cli("swarm", "leave")
    assert result.code != 0 and "--force" in result.err
    result = w1.cli("swarm", "leave")
    assert result.code != 0 and "not part of a swarm" in result.err
    check(m.cli("swarm", "leave", "--force"))
    assert m.info()["local_node_state"] == "inactive"


def test_removed_certificate_is_refused(cluster):
    managers, workers = cluster.form(1, 1)
    m, w = managers[0], workers[0]
    import shutil
    import os
    w.stop()
    keep = os.path.join(cluster.root, "node2-copy")
    shutil.copytree(w.data_dir, keep)
    wait_for(lambda: {n["description"]["hostname"]: n["status"]["state"] for n in nodes_json(m)}["node2"] == "down",
             what="node2 down")
    check(m.cli("node", "rm", "node2"))
    # bring back the old identity: the manager refuses its certificate and the node leaves
    shutil.rmtree(w.data_dir)
    shutil.copytree(keep, w.data_dir)
    w.start()
    wait_for(lambda: w.info()["local_node_state"] == "inactive", timeout=10, what="revoked node leaves")
    assert len(nodes_json(m)) == 1
