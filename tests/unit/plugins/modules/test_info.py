"""swarmctl.cluster.info: filters, and the answers on a manager, a worker and outside a swarm."""

from __future__ import annotations

import pytest

from ansible_collections.swarmctl.cluster.plugins.modules import info

NODES = [
    {"id": "aaa1", "spec": {"role": "manager", "availability": "active", "labels": {}},
     "description": {"hostname": "m1"}, "status": {"state": "ready"}},
    {"id": "bbb2", "spec": {"role": "worker", "availability": "drain", "labels": {"zone": "a"}},
     "description": {"hostname": "w1"}, "status": {"state": "down"}},
    {"id": "bbc3", "spec": {"role": "worker", "availability": "active", "labels": {"zone": "b"}},
     "description": {"hostname": "w2"}, "status": {"state": "ready"}},
]


@pytest.mark.parametrize("filters, hostnames", [
    (None, ["m1", "w1", "w2"]),
    ({"role": "worker"}, ["w1", "w2"]),
    ({"role": "worker", "state": "ready"}, ["w2"]),
    ({"id": "bb"}, ["w1", "w2"]),
    ({"name": ["m1", "w2"]}, ["m1", "w2"]),
    ({"label": "zone"}, ["w1", "w2"]),
    ({"label": "zone=b"}, ["w2"]),
    ({"availability": "drain"}, ["w1"]),
])
def test_node_filters(filters, hostnames):
    assert [n["description"]["hostname"] for n in info.apply_filters("nodes", NODES, filters)] == hostnames


def test_task_filters():
    tasks = [{"id": "t1", "name": "web.1", "service_name": "web", "service_id": "s1", "node_name": "w1",
              "node_id": "bbb2", "desired_state": "running"},
             {"id": "t2", "name": "web.2", "service_name": "web", "service_id": "s1", "node_name": None,
              "node_id": None, "desired_state": "shutdown"}]
    assert [t["id"] for t in info.apply_filters("tasks", tasks, {"service": "s1", "desired-state": "running"})] == ["t1"]
    assert [t["id"] for t in info.apply_filters("tasks", tasks, {"node": "w1"})] == ["t1"]
    assert [t["id"] for t in info.apply_filters("tasks", tasks, {"name": "web.2"})] == ["t2"]


def test_unknown_filter_key():
    with pytest.raises(info.FilterError, match="unknown nodes_filters key 'colour'"):
        info.check_filters("nodes", {"colour": "red"})


def test_manager(fake_daemon, run_module):
    fake_daemon.routes[("GET", "/v1/info")] = (200, {"local_node_state": "active", "is_manager": True})
    fake_daemon.routes[("GET", "/v1/swarm")] = (200, {"id": "c1"})
    for role in ("worker", "manager"):
        answer = {"token": "T-" + role, "managers": ["127.0.0.81:2377"]}
        fake_daemon.routes[("GET", "/v1/swarm/join-token/%s" % role)] = (200, answer)
    fake_daemon.routes[("GET", "/v1/nodes")] = (200, NODES)
    result = run_module("info", {"swarmctl_host": fake_daemon.host, "nodes": True,
                                 "nodes_filters": {"role": "manager"}}, check_mode=True)
    assert result["swarm_active"] and result["swarm_manager"] and not result["changed"]
    assert result["swarm_facts"]["JoinTokens"] == {"Worker": "T-worker", "Manager": "T-manager"}
    # community.docker's short form by default (verbose_output=false)
    assert result["nodes"] == [{"ID": "aaa1", "Hostname": "m1", "Status": "ready", "Availability": "active",
                                "ManagerStatus": None, "EngineVersion": None}]
    assert "services" not in result and "tasks" not in result
    assert result["can_talk_to_docker"] is True
    assert result["docker_swarm_active"] is True and result["docker_swarm_manager"] is True
    assert "swarm_unlock_key" not in result
    verbose = run_module("info", {"swarmctl_host": fake_daemon.host, "nodes": True, "verbose_output": True,
                                  "nodes_filters": {"role": "manager"}})
    assert [n["id"] for n in verbose["nodes"]] == ["aaa1"] and verbose["nodes"][0]["spec"]["role"] == "manager"


def test_unlock_key_and_summaries(fake_daemon, run_module):
    fake_daemon.routes[("GET", "/v1/info")] = (200, {"local_node_state": "active", "is_manager": True})
    fake_daemon.routes[("GET", "/v1/swarm")] = (200, {"id": "c1"})
    for role in ("worker", "manager"):
        fake_daemon.routes[("GET", "/v1/swarm/join-token/%s" % role)] = (200, {"token": "T", "managers": []})
    fake_daemon.routes[("GET", "/v1/swarm/unlock-key")] = (200, {"autolock": True, "unlock_key": "SWMKEY-1-abc"})
    leader = dict(NODES[0], manager_status={"leader": True, "reachability": "reachable"})
    fake_daemon.routes[("GET", "/v1/nodes")] = (200, [leader])
    fake_daemon.routes[("GET", "/v1/services")] = (200, [
        {"id": "s1", "spec": {"name": "web", "mode": "replicated", "replicas": 3, "task": {"image": "busybox"},
                              "endpoint": {"ports": [{"target_port": 80, "published_port": 8080}]}}},
        {"id": "s2", "spec": {"name": "agent", "mode": "global", "task": {"image": "busybox"}}}])
    fake_daemon.routes[("GET", "/v1/tasks")] = (200, [
        {"id": "t1", "name": "web.1", "node_name": "m1", "desired_state": "running", "spec": {"image": "busybox"},
         "status": {"state": "running", "err": "", "container_id": "c0ffee"}}])
    result = run_module("info", {"swarmctl_host": fake_daemon.host, "unlock_key": True, "nodes": True,
                                 "services": True, "tasks": True})
    assert result["swarm_unlock_key"] == "SWMKEY-1-abc"
    assert result["nodes"][0]["ManagerStatus"] == "Leader"
    assert result["services"] == [
        {"ID": "s1", "Name": "web", "Mode": "Replicated", "Replicas": 3, "Image": "busybox",
         "Ports": [{"target_port": 80, "published_port": 8080}]},
        {"ID": "s2", "Name": "agent", "Mode": "Global", "Replicas": None, "Image": "busybox", "Ports": []}]
    assert result["tasks"] == [{"ID": "t1", "ContainerID": "c0ffee", "Image": "busybox", "Node": "m1",
                                "DesiredState": "running", "CurrentState": "running", "Error": None}]
    fake_daemon.routes[("GET", "/v1/swarm/unlock-key")] = (200, {"autolock": False, "unlock_key": ""})
    assert run_module("info", {"swarmctl_host": fake_daemon.host, "unlock_key": True})["swarm_unlock_key"] is None


@pytest.mark.parametrize("state, manager", [("active", False), ("inactive", False)])
def test_worker_and_outside(fake_daemon, run_module, state, manager):
    fake_daemon.routes[("GET", "/v1/info")] = (200, {"local_node_state": state, "is_manager": manager})
    result = run_module("info", {"swarmctl_host": fake_daemon.host, "nodes": True, "services": True,
                                 "tasks": True})
    assert result["swarm_active"] == (state == "active") and result["swarm_manager"] is False
    assert result["swarm_facts"] == {} and not {"nodes", "services", "tasks"} & set(result)
    assert [r[1] for r in fake_daemon.requests] == ["/v1/info"]


def test_events_since(fake_daemon, run_module):
    fake_daemon.routes[("GET", "/v1/info")] = (200, {"local_node_state": "active", "is_manager": True})
    fake_daemon.routes[("GET", "/v1/swarm")] = (200, {"id": "c1"})
    for role in ("worker", "manager"):
        fake_daemon.routes[("GET", "/v1/swarm/join-token/%s" % role)] = (200, {"token": "T", "managers": []})
    event = {"Type": "service", "Action": "create", "Actor": {"ID": "s1", "Attributes": {"name": "web"}},
             "scope": "swarm", "time": 150, "timeNano": 150 * 10 ** 9, "index": 7}
    path = "/v1/events?since=100.000000&until=200.000000&filter=service%3Dweb&filter=type%3Dservice&filter=type%3Dnode"
    fake_daemon.routes[("GET", path)] = (200, event)  # one JSON line
    result = run_module("info", {"swarmctl_host": fake_daemon.host, "events_since": "100", "events_until": "200",
                                 "events_filters": {"type": ["service", "node"], "service": "web"}})
    assert result["events"] == [event], result


@pytest.mark.parametrize("args, message", [
    ({"events_since": "yesterday"}, "invalid events_since 'yesterday'"),
    ({"events_since": "10m", "events_until": "1h"}, "events_until is before events_since"),
    ({"events_since": "10m", "events_filters": {"colour": "red"}}, "unknown events_filters key 'colour'"),
    ({"events_until": "10m"}, "events_until and events_filters need events_since"),
])
def test_events_bad_input(fake_daemon, run_module, args, message):
    result = run_module("info", dict(args, swarmctl_host=fake_daemon.host))
    assert result["failed"] and message in result["msg"], result
    assert fake_daemon.requests == []


def test_time_forms_agree_with_the_cli():
    from ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_client import parse_timestamp
    from swarmctl.cli.units import parse_timestamp as cli_parse
    for text in ("10m", "1h30m", "1700000000", "1700000000.25", "2026-12-07T01:02:03Z",
                 "2026-12-07T01:02:03.5+01:00", "2026-12-07T01:02", "2026-12-07"):
        assert parse_timestamp(text, now=1_800_000_000.0) == cli_parse(text, now=1_800_000_000.0), text
    for bad in ("", "soon", "2026-13-01"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)
