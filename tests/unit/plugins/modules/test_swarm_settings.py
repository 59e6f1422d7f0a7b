"""swarmctl.cluster.swarm: the Raft and dispatcher settings (election_tick ... dispatcher_heartbeat_period), and
that a failed run says changed=false (every module: a failure before any change is never `changed`)."""

from __future__ import annotations

import pytest

from ansible_collections.swarmctl.cluster.plugins.modules import swarm
from swarmctl.state import raftsettings
from tests.unit.plugins.modules.test_swarm import INACTIVE, MANAGER, manager_routes

RAFT = {"election_tick": 10, "heartbeat_tick": 2, "snapshot_interval": 5000, "keep_old_snapshots": 0,
        "log_entries_for_slow_followers": 0, "dispatcher_heartbeat_period": 2.5}


def test_module_ranges_are_the_daemons():
    for option, (low, high, _why) in swarm.SETTING_RANGES.items():
        assert raftsettings.RANGES[option][:2] == (low, high), option
    assert {o for o, _k, _d in swarm.SETTINGS} >= set(raftsettings.KEYS)


@pytest.mark.parametrize("args, message", [
    ({"election_tick": 1}, "election_tick must be between 2 and 400, got 1"),
    ({"heartbeat_tick": 21}, "heartbeat_tick must be between 1 and 20"),
    ({"snapshot_interval": 10}, "snapshot_interval must be between 100 and 10000000"),
    ({"keep_old_snapshots": 3}, "keep_old_snapshots must be 0, got 3: swarmctl keeps only the latest"),
    ({"log_entries_for_slow_followers": 500}, "log_entries_for_slow_followers must be 0, got 500"),
    ({"dispatcher_heartbeat_period": 0.1}, "dispatcher_heartbeat_period must be between 0.5 and 3600"),
    ({"election_tick": 3, "heartbeat_tick": 3}, "election_tick must be greater than heartbeat_tick"),
])
def test_out_of_range_is_one_line_and_no_request(fake_daemon, run_module, args, message):
    manager_routes(fake_daemon)
    result = run_module("swarm", dict(args, swarmctl_host=fake_daemon.host))
    assert result["failed"] and message in result["msg"] and "\n" not in result["msg"], result
    assert result["changed"] is False and fake_daemon.requests == []


def test_init_carries_the_settings(fake_daemon, run_module):
    fake_daemon.routes[("GET", "/v1/info")] = (200, INACTIVE)

    def init(body):
        manager_routes(fake_daemon)
        fake_daemon.routes[("GET", "/v1/swarm")] = (200, {"id": "c1", "version": 3, "spec": dict(RAFT)})
        return 200, {"node_id": "n1", "cluster_id": "c1"}
    fake_daemon.routes[("POST", "/v1/swarm/init")] = init
    args = dict(RAFT, swarmctl_host=fake_daemon.host, advertise_addr="lo:sw71")
    predicted = run_module("swarm", args, check_mode=True)
    assert predicted["changed"] and predicted["diff"]["after"]["election_tick"] == 10
    assert fake_daemon.writes() == []
    result = run_module("swarm", args)
    assert result["changed"] and result["actions"] == ["Swarm cluster created"]
    assert fake_daemon.writes() == [("POST", "/v1/swarm/init", dict(RAFT, advertise_addr="lo:sw71"))]
    again = run_module("swarm", args)
    assert not again["changed"] and len(fake_daemon.writes()) == 1


def test_update_sends_only_what_differs(fake_daemon, run_module):
    manager_routes(fake_daemon)
    fake_daemon.routes[("GET", "/v1/swarm")] = (200, {"id": "c1", "version": 7,
                                                      "spec": {"election_tick": 10, "task_history_limit": 5}})
    fake_daemon.routes[("POST", "/v1/swarm/update?version=7")] = lambda body: (200, {"spec": body, "version": 8})
    args = {"swarmctl_host": fake_daemon.host, "election_tick": 10, "snapshot_interval": 5000,
            "dispatcher_heartbeat_period": 2.5}
    result = run_module("swarm", args)
    assert result["changed"] and result["actions"] == [
        "Swarm settings updated: dispatcher_heartbeat_period, snapshot_interval"]
    assert fake_daemon.writes() == [("POST", "/v1/swarm/update?version=7",
                                     {"snapshot_interval": 5000, "dispatcher_heartbeat_period": 2.5})]
    assert result["diff"]["before"]["snapshot_interval"] is None
    assert result["diff"]["after"]["snapshot_interval"] == 5000


def test_a_failed_init_is_not_changed(fake_daemon, run_module):
    """The daemon refuses the advertise address: nothing was created, so changed=false (it said changed and
    'Swarm cluster created' before)."""
    fake_daemon.routes[("GET", "/v1/info")] = (200, INACTIVE)
    refused = {"message": "invalid advertise address 'nosuch0': no such network interface 'nosuch0'"}
    fake_daemon.routes[("POST", "/v1/swarm/init")] = (400, refused)
    result = run_module("swarm", {"swarmctl_host": fake_daemon.host, "advertise_addr": "nosuch0"})
    assert result["failed"] and "no such network interface" in result["msg"]
    assert result["changed"] is False and result["actions"] == []


def test_failed_join_leave_rotate_and_update_are_not_changed(fake_daemon, run_module):
    fake_daemon.routes[("GET", "/v1/info")] = (200, INACTIVE)
    fake_daemon.routes[("POST", "/v1/swarm/join")] = (400, {"message": "data_path_port is not supported"})
    result = run_module("swarm", {"swarmctl_host": fake_daemon.host, "state": "join", "data_path_port": 4789,
                                  "join_token": "SWMTKN-1-" + "a" * 50 + "-" + "b" * 25,
                                  "remote_addrs": ["127.0.0.71:2377"]})
    assert result["failed"] and result["changed"] is False and result["actions"] == []
    assert fake_daemon.writes()[0][2]["data_path_port"] == 4789

    manager_routes(fake_daemon)
    fake_daemon.routes[("POST", "/v1/swarm/leave")] = (503, {"message": "no leader"})
    result = run_module("swarm", {"swarmctl_host": fake_daemon.host, "state": "absent", "force": True})
    assert result["failed"] and result["changed"] is False
    fake_daemon.routes[("POST", "/v1/swarm/join-token/rotate")] = (503, {"message": "no leader"})
    result = run_module("swarm", {"swarmctl_host": fake_daemon.host, "rotate_worker_token": True})
    assert result["failed"] and result["changed"] is False
    fake_daemon.routes[("GET", "/v1/swarm")] = (200, {"id": "c1", "version": 7, "spec": {}})
    fake_daemon.routes[("POST", "/v1/swarm/update?version=7")] = (400, {"message": "invalid election_tick 9"})
    result = run_module("swarm", {"swarmctl_host": fake_daemon.host, "election_tick": 9})
    assert result["failed"] and result["changed"] is False and result["actions"] == []
    assert MANAGER["is_manager"]


def test_a_failed_secret_create_is_not_changed(fake_daemon, run_module):
    """The objects modules (secret, config): a create that fails changed nothing."""
    manager_routes(fake_daemon)
    fake_daemon.routes[("GET", "/v1/secrets")] = (200, [])
    fake_daemon.routes[("GET", "/v1/services")] = (200, [])
    fake_daemon.routes[("POST", "/v1/secrets")] = (503, {"message": "no leader"})
    result = run_module("secret", {"swarmctl_host": fake_daemon.host, "name": "s", "data": "x"})
    assert result["failed"] and "no leader" in result["msg"], result
    assert result.get("changed", False) is False, result


def test_a_failed_replace_is_changed_only_after_its_first_step(fake_daemon, run_module):
    """force=true replaces a secret (remove, then create): the removal failing changed nothing (it said
    changed=true before); the creation failing after the removal did change something."""
    manager_routes(fake_daemon)
    old = {"id": "sec1", "version": 1, "spec": {"name": "s", "labels": {}}}
    fake_daemon.routes[("GET", "/v1/secrets")] = (200, [old])
    fake_daemon.routes[("GET", "/v1/services")] = (200, [])
    fake_daemon.routes[("POST", "/v1/secrets/sec1/matches")] = (200, {"matches": False})
    fake_daemon.routes[("DELETE", "/v1/secrets/sec1")] = (503, {"message": "no leader"})
    args = {"swarmctl_host": fake_daemon.host, "name": "s", "data": "x", "force": True}
    result = run_module("secret", args)
    assert result["failed"] and "no leader" in result["msg"] and result["changed"] is False, result
    fake_daemon.routes[("DELETE", "/v1/secrets/sec1")] = (200, {})
    fake_daemon.routes[("POST", "/v1/secrets")] = (503, {"message": "no leader"})
    result = run_module("secret", args)
    assert result["failed"] and result["changed"] is True, result
