"""swarmctl.cluster.swarm: token and address checks, and each state against a fake daemon."""

from __future__ import annotations

import pytest

from ansible_collections.swarmctl.cluster.plugins.modules import swarm

TOKEN = "SWMTKN-1-" + "a" * 50 + "-" + "b" * 25
MANAGER_TOKEN = "SWMTKN-1-" + "a" * 50 + "-" + "c" * 25
INACTIVE = {"node_id": None, "cluster_id": None, "role": None, "local_node_state": "inactive", "is_manager": False}
MANAGER = {"node_id": "n1", "cluster_id": "c1", "role": "manager", "local_node_state": "active", "is_manager": True}
WORKER = {"node_id": "n2", "cluster_id": "c1", "role": "worker", "local_node_state": "active", "is_manager": False}


def test_token_problem():
    assert swarm.token_problem(TOKEN) is None
    assert swarm.token_problem(" %s\n" % TOKEN) is None
    assert "required" in swarm.token_problem("")
    assert "must start with" in swarm.token_problem("hello")
    bad = "SWMTKN-1-" + "a" * 49 + "-" + "b" * 25
    message = swarm.token_problem(bad)
    assert "malformed" in message and bad not in message  # never echo the token


def test_addr_problem():
    assert swarm.addr_problem("127.0.0.81:2377") is None
    assert swarm.addr_problem("manager1:2377") is None
    assert "HOST:PORT" in swarm.addr_problem("127.0.0.81")
    assert "port" in swarm.addr_problem("127.0.0.81:99999")


def test_is_unreachable():
    assert swarm.is_unreachable(swarm.SwarmctlError("could not connect to the manager at x: refused", 503))
    assert not swarm.is_unreachable(swarm.SwarmctlError("invalid join token: the token is wrong", 403))


def manager_routes(daemon):
    daemon.routes[("GET", "/v1/info")] = (200, MANAGER)
    daemon.routes[("GET", "/v1/swarm")] = (200, {"id": "c1", "spec": {}, "managers": ["127.0.0.81:2378"]})
    daemon.routes[("GET", "/v1/swarm/join-token/worker")] = (200, {"role": "worker", "token": TOKEN,
                                                                   "managers": ["127.0.0.81:2377"]})
    daemon.routes[("GET", "/v1/swarm/join-token/manager")] = (200, {"role": "manager", "token": MANAGER_TOKEN,
                                                                    "managers": ["127.0.0.81:2377"]})


def test_init_check_mode_then_real(fake_daemon, run_module):
    fake_daemon.routes[("GET", "/v1/info")] = (200, INACTIVE)
    args = {"swarmctl_host": fake_daemon.host, "advertise_addr": "127.0.0.81"}
    result = run_module("swarm", args, check_mode=True)
    assert result["changed"] and result["actions"] == ["Swarm cluster created"]
    assert result["diff"]["before"]["local_node_state"] == "inactive"
    assert result["diff"]["after"]["local_node_state"] == "active"
    assert fake_daemon.writes() == []

    def init(body):
        manager_routes(fake_daemon)
        return 200, {"node_id": "n1", "cluster_id": "c1"}
    fake_daemon.routes[("POST", "/v1/swarm/init")] = init
    result = run_module("swarm", args)
    assert result["changed"] and result["node_id"] == "n1"
    assert fake_daemon.writes() == [("POST", "/v1/swarm/init", {"advertise_addr": "127.0.0.81"})]
    assert result["swarm_facts"]["JoinTokens"] == {"Worker": TOKEN, "Manager": MANAGER_TOKEN}
    assert result["swarm_facts"]["manager_addrs"] == ["127.0.0.81:2377"]
    again = run_module("swarm", args)
    assert not again["changed"] and again["actions"] == [] and "diff" not in again
    assert len(fake_daemon.writes()) == 1


def test_present_on_worker_fails(fake_daemon, run_module):
    fake_daemon.routes[("GET", "/v1/info")] = (200, WORKER)
    result = run_module("swarm", {"swarmctl_host": fake_daemon.host})
    assert result["failed"] and "worker" in result["msg"]


def test_rotate_tokens(fake_daemon, run_module):
    manager_routes(fake_daemon)
    fake_daemon.routes[("POST", "/v1/swarm/join-token/rotate")] = lambda body: (200, {"role": body["role"],
                                                                                      "token": TOKEN})
    args = {"swarmctl_host": fake_daemon.host, "rotate_worker_token": True}
    result = run_module("swarm", args, check_mode=True)
    assert result["changed"] and result["actions"] == ["Worker join token rotated"]
    assert result["diff"]["after"]["join_tokens"] == {"worker": "rotated"}
    assert fake_daemon.writes() == []
    result = run_module("swarm", args)
    assert result["changed"]
    assert fake_daemon.writes() == [("POST", "/v1/swarm/join-token/rotate", {"role": "worker"})]


def test_join_tries_remotes_in_order(fake_daemon, run_module):
    fake_daemon.routes[("GET", "/v1/info")] = (200, INACTIVE)

    def join(body):
        if body["remote_addr"] == "127.0.0.89:2377":
            return 503, {"message": "could not connect to the manager at 127.0.0.89:2377: refused"}
        fake_daemon.routes[("GET", "/v1/info")] = (200, WORKER)
        return 200, {"node_id": "n2", "role": "worker"}
    fake_daemon.routes[("POST", "/v1/swarm/join")] = join
    args = {"swarmctl_host": fake_daemon.host, "state": "join", "join_token": TOKEN,
            "remote_addrs": ["127.0.0.89:2377", "127.0.0.81:2377"]}
    result = run_module("swarm", args, check_mode=True)
    assert result["changed"] and fake_daemon.writes() == []
    result = run_module("swarm", args)
    assert result["changed"] and result["node_id"] == "n2" and result["swarm_facts"] == {}
    assert [b["remote_addr"] for _m, _p, b in fake_daemon.writes()] == ["127.0.0.89:2377", "127.0.0.81:2377"]
    assert TOKEN not in str(result)  # the no_log parameter is masked wherever it would appear
    again = run_module("swarm", args)
    assert not again["changed"] and len(fake_daemon.writes()) == 2


def test_join_stops_at_a_real_error(fake_daemon, run_module):
    fake_daemon.routes[("GET", "/v1/info")] = (200, INACTIVE)
    fake_daemon.routes[("POST", "/v1/swarm/join")] = (403, {"message": "invalid join token: the token is wrong "
                                                                       "or has been rotated"})
    args = {"swarmctl_host": fake_daemon.host, "state": "join", "join_token": TOKEN,
            "remote_addrs": ["127.0.0.81:2377", "127.0.0.82:2377"]}
    result = run_module("swarm", args)
    assert result["failed"] and "rotated" in result["msg"] and not result["changed"]
    assert len(fake_daemon.writes()) == 1


@pytest.mark.parametrize("token, remotes, message", [
    ("not-a-token", ["127.0.0.81:2377"], "must start with"),
    ("SWMTKN-1-abc-def", ["127.0.0.81:2377"], "malformed"),
    (TOKEN, ["127.0.0.81"], "HOST:PORT"),
    (TOKEN, [" "], "at least one manager"),
])
def test_join_bad_input_fails_before_any_request(fake_daemon, run_module, token, remotes, message):
    fake_daemon.routes[("GET", "/v1/info")] = (200, INACTIVE)
    for check_mode in (True, False):
        result = run_module("swarm", {"swarmctl_host": fake_daemon.host, "state": "join", "join_token": token,
                                      "remote_addrs": remotes}, check_mode=check_mode)
        assert result["failed"] and message in result["msg"]
    assert fake_daemon.writes() == []


def test_join_needs_token_and_remotes(fake_daemon, run_module):
    result = run_module("swarm", {"swarmctl_host": fake_daemon.host, "state": "join"})
    assert result["failed"] and "join_token" in result["msg"] and "remote_addrs" in result["msg"]


def test_leave(fake_daemon, run_module):
    fake_daemon.routes[("GET", "/v1/info")] = (200, MANAGER)
    result = run_module("swarm", {"swarmctl_host": fake_daemon.host, "state": "absent"}, check_mode=True)
    assert result["failed"] and "force=true" in result["msg"]

    def leave(body):
        fake_daemon.routes[("GET", "/v1/info")] = (200, INACTIVE)
        return 200, {}
    fake_daemon.routes[("POST", "/v1/swarm/leave")] = leave
    args = {"swarmctl_host": fake_daemon.host, "state": "absent", "force": True}
    result = run_module("swarm", args, check_mode=True)
    assert result["changed"] and fake_daemon.writes() == []
    result = run_module("swarm", args)
    assert result["changed"] and result["node_id"] is None
    assert fake_daemon.writes() == [("POST", "/v1/swarm/leave", {"force": True})]
    assert not run_module("swarm", args)["changed"]


def test_remove(fake_daemon, run_module):
    manager_routes(fake_daemon)
    node = {"id": "w1", "spec": {"role": "worker"}, "status": {"state": "ready"}}
    fake_daemon.routes[("GET", "/v1/nodes/w1")] = (200, node)
    fake_daemon.routes[("GET", "/v1/nodes/gone")] = (404, {"message": "No such node: gone"})
    fake_daemon.routes[("DELETE", "/v1/nodes/w1")] = (200, {})
    args = {"swarmctl_host": fake_daemon.host, "state": "remove", "node_id": "w1"}
    result = run_module("swarm", args)
    assert result["failed"] and "not down" in result["msg"]
    node["status"]["state"] = "down"
    assert run_module("swarm", args, check_mode=True)["changed"] and fake_daemon.writes() == []
    assert run_module("swarm", args)["changed"]
    assert fake_daemon.writes() == [("DELETE", "/v1/nodes/w1", None)]
    assert not run_module("swarm", dict(args, node_id="gone"))["changed"]
    node["spec"]["role"] = "manager"
    assert "demote" in run_module("swarm", args)["msg"]


def test_daemon_not_running(tmp_path, run_module):
    result = run_module("swarm", {"swarmctl_host": f"unix://{tmp_path}/none.sock"})
    assert result["failed"] and "Cannot connect to the swarmctl daemon" in result["msg"]


def test_task_history_retention_limit(fake_daemon, run_module):
    manager_routes(fake_daemon)
    fake_daemon.routes[("GET", "/v1/swarm")] = (200, {"id": "c1", "version": 7, "spec": {"task_history_limit": 5}})
    fake_daemon.routes[("POST", "/v1/swarm/update?version=7")] = lambda body: (200, {"spec": body, "version": 8})
    args = {"swarmctl_host": fake_daemon.host, "task_history_retention_limit": 2}
    result = run_module("swarm", args, check_mode=True)
    assert result["changed"] and fake_daemon.writes() == []
    assert result["diff"]["before"]["task_history_retention_limit"] == 5
    assert result["diff"]["after"]["task_history_retention_limit"] == 2
    result = run_module("swarm", args)
    assert result["changed"] and "Swarm settings updated: task_history_retention_limit" in result["actions"]
    assert fake_daemon.writes() == [("POST", "/v1/swarm/update?version=7", {"task_history_limit": 2})]
    same = run_module("swarm", dict(args, task_history_retention_limit=5))
    assert not same["changed"] and len(fake_daemon.writes()) == 1


def test_task_history_retention_limit_out_of_range(fake_daemon, run_module):
    manager_routes(fake_daemon)
    result = run_module("swarm", {"swarmctl_host": fake_daemon.host, "task_history_retention_limit": -1})
    assert result["failed"] and "between 0 and 1000" in result["msg"]
    assert fake_daemon.requests == []
