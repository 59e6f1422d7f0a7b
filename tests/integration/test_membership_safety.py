"""Membership changes are answered only once committed, Raft membership and node records are reconciled until
they agree, and retried membership requests apply once."""

import http.client
import json
import os
import socket
import uuid

from swarmctl.security import tls
from swarmctl.security.certs import generate_key, make_csr
from tests.integration.harness import check, nodes_json, wait_for


class _Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self._path)


def local(daemon, method, path, body=None, request_id=None):
    """One request to a daemon's local socket with a chosen X-Request-Id; returns (status, JSON)."""
    conn = _Unix(daemon.socket)
    headers = {"X-Request-Id": request_id or uuid.uuid4().hex, "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = json.loads(response.read() or b"null")
    conn.close()
    return response.status, data


def reachability(daemon):
    return {n["description"]["hostname"]: (n["spec"]["role"], (n["manager_status"] or {}).get("reachability"))
            for n in nodes_json(daemon)}


def leader_of(managers):
    for m in managers:
        if m.running and m.info().get("raft", {}).get("is_leader"):
            return m
    return None


def test_join_and_promote_answer_once_committed(cluster):
    first = cluster.daemon(1)
    check(first.cli("swarm", "init", "--advertise-addr", first.ip))
    token = check(first.cli("swarm", "join-token", "-q", "manager")).out.strip()
    second = cluster.daemon(2)
    check(second.cli("swarm", "join", "--token", token, first.addr))
    # no waiting: when join answered, the leader's configuration already holds the new member, committed
    assert sorted(first.info()["raft"]["members"]) == ["127.0.0.11:2378", "127.0.0.12:2378"]
    check(second.cli("node", "update", "--label-add", "joined=yes", "node2"))  # a quorum of 2 commits writes
    worker_token = check(first.cli("swarm", "join-token", "-q", "worker")).out.strip()
    third = cluster.daemon(3)
    check(third.cli("swarm", "join", "--token", worker_token, first.addr))
    check(first.cli("node", "promote", "node3"))
    # promote answered: node3 is a committed member now, not at some later heartbeat
    assert "127.0.0.13:2378" in first.info()["raft"]["members"]
    wait_for(lambda: reachability(first)["node3"] == ("manager", "reachable"), timeout=10, what="node3 reachable")
    # promoting a node that is not up reports an error instead of success
    fourth = cluster.daemon(4)
    check(fourth.cli("swarm", "join", "--token", worker_token, first.addr))
    fourth.kill()
    wait_for(lambda: reachability(first)["node4"][0] == "worker" and
             {n["description"]["hostname"]: n["status"]["state"] for n in nodes_json(first)}["node4"] == "down",
             timeout=10, what="node4 down")
    result = first.cli("node", "promote", "node4", timeout=90)
    assert result.code != 0 and "has not joined the Raft cluster" in result.err, result
    assert "127.0.0.14:2378" not in first.info()["raft"]["members"]


def test_reconciler_readds_a_manager_missing_from_raft(cluster):
    managers, _ = cluster.form(3, 0)
    for m in managers:  # restart with the fault hooks on (they are off unless the environment asks)
        m.stop()
    for m in managers:
        m.env = {"SWARMCTL_FAULT_HOOKS": "1"}
        m.start()
    leader = wait_for(lambda: leader_of(managers), timeout=20, what="a leader")
    victim = next(m for m in managers if m is not leader)
    raft_addr = f"{victim.ip}:{victim.port + 1}"
    victim.stop()  # remove it from Raft while it is down, behind the store's back: its record stays a manager
    status, answer = local(leader, "POST", "/v1/debug/raft/remove-member", {"addr": raft_addr})
    assert status == 200 and raft_addr not in answer["members"], (status, answer)
    assert reachability(leader)[victim.name] == ("manager", "unreachable")
    victim.start()
    # the reconciler sees a manager record, a replica that runs, and no Raft membership: it adds it back
    wait_for(lambda: raft_addr in leader.info()["raft"]["members"], timeout=20, what="re-added to Raft")
    wait_for(lambda: reachability(leader)[victim.name] == ("manager", "reachable"), timeout=20,
             what=f"{victim.name} reachable again")
    check(victim.cli("node", "update", "--label-add", "back=1", victim.name))


def test_retried_membership_requests_apply_once(cluster):
    managers, workers = cluster.form(1, 2)
    m = managers[0]
    # token rotation: the retry answers with the same token and rotates nothing more
    rid = uuid.uuid4().hex
    s1, a1 = local(m, "POST", "/v1/swarm/join-token/rotate", {"role": "worker"}, rid)
    s2, a2 = local(m, "POST", "/v1/swarm/join-token/rotate", {"role": "worker"}, rid)
    assert s1 == s2 == 200 and a1["token"] == a2["token"], (a1, a2)
    # node rm: a retry of a removal that succeeded succeeds too (not "No such node")
    workers[1].kill()
    wait_for(lambda: {n["description"]["hostname"]: n["status"]["state"] for n in nodes_json(m)}["node3"] == "down",
             timeout=10, what="node3 down")
    rid = uuid.uuid4().hex
    s1, a1 = local(m, "DELETE", "/v1/nodes/node3", None, rid)
    s2, a2 = local(m, "DELETE", "/v1/nodes/node3", None, rid)
    assert (s1, s2) == (200, 200), (a1, a2)
    s3, a3 = local(m, "DELETE", "/v1/nodes/node3")
    assert s3 == 404, a3  # a new request for a node that is gone
    # a join retried with the same request id and key makes one node, not two
    token = check(m.cli("swarm", "join-token", "-q", "worker")).out.strip()
    key = generate_key()
    body = {"token": token, "csr": make_csr(key).decode(), "hostname": "ghost", "addr": "127.0.0.19",
            "manager_addr": "127.0.0.19:2377", "raft_addr": "127.0.0.19:2378"}
    ca_file = os.path.join(cluster.root, "ca.pem")
    with open(m.data_dir + "/certs/ca.pem") as src, open(ca_file, "w") as dst:
        dst.write(src.read())
    ctx = tls.client_context(ca_file)
    rid = uuid.uuid4().hex
    answers = []
    for _ in range(2):
        conn = http.client.HTTPSConnection(m.ip, m.port, context=ctx, timeout=30)
        conn.request("POST", "/v1/join", body=json.dumps(body), headers={"X-Request-Id": rid,
                                                                         "Content-Type": "application/json"})
        response = conn.getresponse()
        answers.append((response.status, json.loads(response.read())))
        conn.close()
    assert [a[0] for a in answers] == [200, 200], answers
    assert answers[0][1]["node_id"] == answers[1][1]["node_id"]
    assert [n["description"]["hostname"] for n in nodes_json(m)].count("ghost") == 1
    # another key with the same request id is another node: a request id never names someone else's node
    body["csr"] = make_csr(generate_key()).decode()
    conn = http.client.HTTPSConnection(m.ip, m.port, context=ctx, timeout=30)
    conn.request("POST", "/v1/join", body=json.dumps(body), headers={"X-Request-Id": rid,
                                                                     "Content-Type": "application/json"})
    response = conn.getresponse()
    other = json.loads(response.read())
    assert response.status == 200 and other["node_id"] != answers[0][1]["node_id"], other
