"""swarmctl.cluster.node: the label rules of community.docker.docker_node, request mapping, check mode."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.swarmctl.cluster.plugins.modules import node as node_mod


def make_node(**spec):
    base = {"role": "worker", "availability": "active", "labels": {"zone": "a", "disk": "ssd"}}
    base.update(spec)
    return {"id": "w1abc", "spec": base, "description": {"hostname": "w1"}, "status": {"state": "ready"},
            "manager_status": None}


@pytest.mark.parametrize("labels, state, remove, expected", [
    (None, "merge", None, {"zone": "a", "disk": "ssd"}),
    ({}, "merge", None, {"zone": "a", "disk": "ssd"}),
    ({"zone": "b"}, "merge", None, {"zone": "b", "disk": "ssd"}),
    ({"rack": 3}, "merge", None, {"zone": "a", "disk": "ssd", "rack": "3"}),
    (None, "merge", ["disk", "missing"], {"zone": "a"}),
    ({"disk": "hdd"}, "merge", ["disk"], {"zone": "a", "disk": "hdd"}),
    (None, "replace", None, {}),
    ({"x": "1"}, "replace", ["x"], {"x": "1"}),
])
def test_wanted_labels(labels, state, remove, expected):
    warnings = []
    assert node_mod.wanted_labels({"zone": "a", "disk": "ssd"}, labels, state, remove, warnings.append) == expected
    assert bool(warnings) == (labels is not None and state == "merge" and "disk" in (remove or []) and "disk" in labels)


def test_bad_label_key():
    with pytest.raises(node_mod.NodeParamError, match="invalid label key"):
        node_mod.wanted_labels({}, {"has space": "1"}, "merge", None)


def test_plan_request_bodies():
    params = {"availability": "drain", "labels": {"zone": "b"}, "labels_state": "merge",
              "labels_to_remove": ["disk"], "role": "manager"}
    changes, body, action, predicted = node_mod.plan(make_node(), params)
    assert changes == ["availability", "labels", "role"]
    assert body == {"availability": "drain", "labels_add": {"zone": "b"}, "labels_rm": ["disk"]}
    assert action == "promote"
    assert predicted["spec"] == {"role": "manager", "availability": "drain", "labels": {"zone": "b"}}
    changes, body, action, predicted = node_mod.plan(make_node(), {"labels": {"k": "v"}, "labels_state": "replace"})
    assert body == {"labels": {"k": "v"}} and action is None and changes == ["labels"]
    assert predicted["spec"]["labels"] == {"k": "v"}
    assert node_mod.plan(make_node(), {"availability": "active", "role": "worker", "labels": {"zone": "a"},
                                       "labels_state": "merge"})[:3] == ([], None, None)


def test_module_check_mode_change_and_idempotence(fake_daemon, run_module):
    node = make_node()

    def update(body):
        node["spec"]["availability"] = body.get("availability", node["spec"]["availability"])
        node["spec"]["labels"].update(body.get("labels_add", {}))
        for key in body.get("labels_rm", []):
            del node["spec"]["labels"][key]
        return 200, node
    fake_daemon.routes[("GET", "/v1/nodes/w1")] = lambda body: (200, copy.deepcopy(node))
    fake_daemon.routes[("GET", "/v1/nodes/w1abc")] = lambda body: (200, copy.deepcopy(node))
    fake_daemon.routes[("POST", "/v1/nodes/w1abc/update")] = update
    args = {"swarmctl_host": fake_daemon.host, "hostname": "w1", "availability": "drain",
            "labels": {"rack": "r1"}, "labels_to_remove": ["disk"]}
    result = run_module("node", args, check_mode=True)
    assert result["changed"] and result["changes"] == ["availability", "labels"]
    assert result["diff"]["before"]["labels"] == {"zone": "a", "disk": "ssd"}
    assert result["diff"]["after"]["labels"] == {"zone": "a", "rack": "r1"}
    assert result["node"]["spec"]["availability"] == "drain" and fake_daemon.writes() == []
    result = run_module("node", args)
    assert result["changed"] and result["node"]["spec"]["labels"] == {"zone": "a", "rack": "r1"}
    assert fake_daemon.writes() == [("POST", "/v1/nodes/w1abc/update",
                                     {"availability": "drain", "labels_add": {"rack": "r1"}, "labels_rm": ["disk"]})]
    for check_mode in (False, True):
        again = run_module("node", args, check_mode=check_mode)
        assert not again["changed"] and again["changes"] == [] and "diff" not in again
    assert len(fake_daemon.writes()) == 1


def test_role_change_and_daemon_errors(fake_daemon, run_module):
    node = make_node(role="manager")
    fake_daemon.routes[("GET", "/v1/nodes/w1")] = (200, node)
    fake_daemon.routes[("POST", "/v1/nodes/w1abc/demote")] = (412, {
        "message": "cannot demote node w1abc: it is the last manager of the swarm"})
    result = run_module("node", {"swarmctl_host": fake_daemon.host, "hostname": "w1", "role": "worker"})
    assert result["failed"] and "last manager" in result["msg"] and result["status"] == 412


def test_unknown_node(fake_daemon, run_module):
    fake_daemon.routes[("GET", "/v1/nodes/nope")] = (404, {"message": "No such node: nope"})
    result = run_module("node", {"swarmctl_host": fake_daemon.host, "hostname": "nope", "availability": "drain"})
    assert result["failed"] and result["msg"] == "No such node: nope"


def test_bad_availability_is_refused_by_ansible(fake_daemon, run_module):
    result = run_module("node", {"swarmctl_host": fake_daemon.host, "hostname": "w1", "availability": "off"})
    assert result["failed"] and "availability" in result["msg"] and fake_daemon.requests == []
