"""swarmctl.cluster.node_info and service_info: community.docker's parameters and return values, against a fake
daemon."""

from __future__ import annotations

from ansible_collections.swarmctl.cluster.plugins.modules import node_info

MANAGER = {"id": "aaa1", "spec": {"role": "manager", "availability": "active", "labels": {"zone": "a"}},
           "description": {"hostname": "m1", "engine_labels": {"disk": "ssd"}},
           "status": {"state": "ready", "addr": "127.0.0.81", "message": ""},
           "manager_status": {"addr": "127.0.0.81:2377", "raft_addr": "127.0.0.81:2378", "leader": True,
                              "reachability": "reachable"}}
WORKER = {"id": "bbb2", "spec": {"role": "worker", "availability": "drain", "labels": {}},
          "description": {"hostname": "w1"}, "status": {"state": "down", "addr": "127.0.0.82", "message": "gone"},
          "manager_status": None}
ACTIVE_MANAGER = {"local_node_state": "active", "is_manager": True, "node_id": "aaa1"}


def serve(fake_daemon, info=None):
    fake_daemon.routes[("GET", "/v1/info")] = (200, info or ACTIVE_MANAGER)
    fake_daemon.routes[("GET", "/v1/nodes")] = (200, [MANAGER, WORKER])
    for node in (MANAGER, WORKER):
        for ref in (node["id"], node["description"]["hostname"]):
            fake_daemon.routes[("GET", "/v1/nodes/%s" % ref)] = (200, node)


def test_docker_shape():
    node = node_info.docker_shape(MANAGER)
    assert node["id"] == node["ID"] == "aaa1" and node["spec"] == MANAGER["spec"]
    assert node["Spec"] == {"Role": "manager", "Availability": "active", "Labels": {"zone": "a"}}
    assert node["Description"] == {"Hostname": "m1", "Engine": {"Labels": {"disk": "ssd"}}}
    assert node["Status"] == {"State": "ready", "Addr": "127.0.0.81", "Message": ""}
    assert node["ManagerStatus"] == {"Leader": True, "Reachability": "reachable", "Addr": "127.0.0.81:2377"}
    worker = node_info.docker_shape(WORKER)
    assert "ManagerStatus" not in worker and worker["Description"]["Engine"] == {"Labels": {}}


def test_all_nodes_names_and_self(fake_daemon, run_module):
    serve(fake_daemon)
    args = {"swarmctl_host": fake_daemon.host}
    result = run_module("node_info", args, check_mode=True)
    assert not result["changed"] and [n["ID"] for n in result["nodes"]] == ["aaa1", "bbb2"]
    result = run_module("node_info", dict(args, name=["w1", "aaa1"]))
    assert [n["Description"]["Hostname"] for n in result["nodes"]] == ["w1", "m1"]
    # as community.docker: a node the swarm does not know is left out
    result = run_module("node_info", dict(args, name=["nope", "w1"]))
    assert [n["ID"] for n in result["nodes"]] == ["bbb2"]
    result = run_module("node_info", dict(args, self=True, name=["w1"]))
    assert [n["ID"] for n in result["nodes"]] == ["aaa1"]
    assert fake_daemon.writes() == []


def test_node_info_fails_off_a_manager_and_on_daemon_errors(fake_daemon, run_module):
    serve(fake_daemon, info={"local_node_state": "active", "is_manager": False, "node_id": "bbb2"})
    result = run_module("node_info", {"swarmctl_host": fake_daemon.host})
    assert result["failed"] and "must run on a swarm manager node" in result["msg"]
    serve(fake_daemon, info={"local_node_state": "inactive", "is_manager": False, "node_id": None})
    assert run_module("node_info", {"swarmctl_host": fake_daemon.host, "self": True})["failed"]
    serve(fake_daemon)
    fake_daemon.routes[("GET", "/v1/nodes/w")] = (400, {"message": "node w is ambiguous (2 matches)"})
    result = run_module("node_info", {"swarmctl_host": fake_daemon.host, "name": ["w"]})
    assert result["failed"] and "node w is ambiguous (2 matches)" in result["msg"]


def test_service_info(fake_daemon, run_module):
    fake_daemon.routes[("GET", "/v1/info")] = (200, ACTIVE_MANAGER)
    service = {"id": "s1", "spec": {"name": "web"}, "spec_version": 1, "replicas_status": {"running": 1, "desired": 1}}
    fake_daemon.routes[("GET", "/v1/services/web")] = (200, service)
    args = {"swarmctl_host": fake_daemon.host, "name": "web"}
    result = run_module("service_info", args, check_mode=True)
    assert not result["changed"] and result["exists"] is True and result["service"] == service
    result = run_module("service_info", dict(args, name="nope"))
    assert not result["changed"] and result["exists"] is False and result["service"] is None
    fake_daemon.routes[("GET", "/v1/info")] = (200, dict(ACTIVE_MANAGER, is_manager=False))
    result = run_module("service_info", args)
    assert result["failed"] and "must run on a swarm manager node" in result["msg"]
    assert fake_daemon.writes() == []
