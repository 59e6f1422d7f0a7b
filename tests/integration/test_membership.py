"""Forming a swarm through the CLI: init, join tokens, roles, node ls on managers and workers."""

from swarmctl.errors import NOT_A_MANAGER_MESSAGE
from tests.integration.harness import check, nodes_json, wait_for


def summary(daemon):
    nodes = nodes_json(daemon)
    ready = sum(n["status"]["state"] == "ready" for n in nodes)
    leaders = sum(bool(n["manager_status"] and n["manager_status"]["leader"]) for n in nodes)
    reachable = sum(bool(n["manager_status"] and not n["manager_status"]["leader"]
                         and n["manager_status"]["reachability"] == "reachable") for n in nodes)
    return len(nodes), ready, leaders, reachable


def test_five_node_swarm_forms_and_workers_cannot_read_state(cluster):
    managers, workers = cluster.form(3, 2)
    for m in managers:
        wait_for(lambda: summary(m) == (5, 5, 1, 2), what=f"5 ready nodes, 1 leader, 2 reachable on {m.name}")
        table = check(m.cli("node", "ls")).out
        assert table.splitlines()[0].split() == ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER", "STATUS"]
        assert table.count("Ready") == 5 and table.count("Leader") == 1 and table.count("Reachable") == 2
    for w in workers:
        result = w.cli("node", "ls")
        assert result.code != 0
        assert NOT_A_MANAGER_MESSAGE in result.err
        assert "Traceback" not in result.err
        for args in (("node", "inspect", "node1"), ("swarm", "join-token", "worker"), ("swarm", "inspect"),
                     ("node", "update", "--availability", "drain", "node1")):
            result = w.cli(*args)
            assert result.code != 0 and NOT_A_MANAGER_MESSAGE in result.err, args
    # json output: stable keys
    node = nodes_json(managers[0])[0]
    assert set(node) >= {"id", "spec", "description", "status", "manager_status", "version", "created_at"}
    inspected = check(managers[1].cli("node", "inspect", "--format", "json", "node4")).json()
    assert inspected["spec"]["role"] == "worker" and inspected["description"]["hostname"] == "node4"


def test_join_token_output_and_rotation(cluster):
    managers, _ = cluster.form(1, 0)
    m = managers[0]
    out = check(m.cli("swarm", "join-token", "worker")).out
    assert "swarmctl swarm join --token SWMTKN-1-" in out and m.addr in out
    worker_token = check(m.cli("swarm", "join-token", "-q", "worker")).out.strip()
    manager_token = check(m.cli("swarm", "join-token", "-q", "manager")).out.strip()
    assert worker_token != manager_token
    assert worker_token.split("-")[2] == manager_token.split("-")[2]  # same CA digest
    rotated = check(m.cli("swarm", "join-token", "--rotate", "-q", "worker")).out.strip()
    assert rotated != worker_token
    assert check(m.cli("swarm", "join-token", "-q", "manager")).out.strip() == manager_token
    inspect = check(m.cli("swarm", "inspect")).json()
    assert "key" not in inspect["root_ca"] and "join_secrets" not in inspect and "raft_secret" not in inspect
