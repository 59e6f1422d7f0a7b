"""What stacks need below the CLI: the task spec's user, working_dir, container labels and dns_search reach the
engine's container spec; the mesh DNS answers a stack's short names; `service update` with replace=true takes
the whole spec (as Docker's ServiceUpdate)."""

from __future__ import annotations

import copy

from swarmctl.agent.worker import LABEL_NODE, container_spec
from swarmctl.errors import BadRequest
from swarmctl.manager import services
from swarmctl.manager.endpoints import entry
from swarmctl.mesh.agent import zone_services
from swarmctl.mesh.dns import Zone
from swarmctl.state.records import default_task_spec


def test_container_spec_carries_user_working_dir_labels_and_dns_search():
    spec = dict(default_task_spec(), image="busybox", user="1000:1000", working_dir="/srv",
                labels={"a": "b", LABEL_NODE: "spoofed"}, dns_search=["shop"])
    task = {"id": "t1", "service_id": "s1", "service_name": "shop_web", "slot": 1, "spec": spec}
    container = container_spec(task, "n1")
    assert (container.user, container.working_dir, container.dns_search) == ("1000:1000", "/srv", ["shop"])
    assert container.labels["a"] == "b" and container.labels[LABEL_NODE] == "n1"  # swarmctl's own labels win
    plain = container_spec(dict(task, spec=dict(default_task_spec(), image="busybox")), "n1")
    assert (plain.user, plain.working_dir, plain.dns_search) == (None, None, None)


def test_dns_answers_a_stack_s_short_names():
    service = {"id": "svc1", "spec": {"name": "shop_api", "labels": {"com.docker.stack.namespace": "shop"},
                                      "endpoint": {"mode": "vip", "ports": [
                                          {"target_port": 80, "published_port": 8080, "protocol": "tcp",
                                           "publish_mode": "ingress"}]}}, "vip_index": 3}
    table = entry(service, [], {})
    assert table["stack"] == "shop"
    zone = Zone()
    zone.set(zone_services([table, dict(entry({"id": "svc2", "spec": {"name": "plain_x", "labels": {}}}, [], {}))],
                           "127.0.0.5"))
    assert zone.addresses["api.shop"] == zone.addresses["shop_api"] and zone.addresses["api.shop"]
    assert "tasks.api.shop" in zone.addresses
    assert "x.plain" not in zone.addresses  # not a stack's service: no short name


def test_update_with_replace_takes_the_whole_spec():
    body = {"name": "web", "labels": {"a": "1"}, "task": {"image": "busybox", "user": "1000", "env": {"A": "1"}}}
    spec = services.build_spec(copy.deepcopy(body))
    spec["task"]["force_update"] = 4
    service = {"id": "s1", "spec": spec}
    new, changed = services._plan_update(service, {"task": {"image": "busybox", "env": {"B": "2"}}}, False,
                                         replace=True)
    assert "user" not in new["task"] and new["task"]["env"] == {"B": "2"} and new["labels"] == {}
    assert new["task"]["force_update"] == 4
    assert set(changed) == {"labels", "task.env", "task.user"}
    merged, _ = services._plan_update(service, {"task": {"env": {"B": "2"}}}, False)
    assert merged["task"]["user"] == "1000"  # without replace: changes are merged in, as before
    same, nothing = services._plan_update(service, copy.deepcopy(body), False, replace=True)
    assert nothing == []
    try:
        services._plan_update(service, {"mode": "global", "task": {"image": "busybox"}}, False, replace=True)
    except BadRequest as exc:
        assert "mode" in str(exc)
    else:
        raise AssertionError("a mode change was accepted")


def test_new_task_fields_are_checked():
    for task, message in (({"user": 5}, "user must be a string"), ({"labels": {"a": 1}}, "container labels"),
                          ({"dns_search": [""]}, "dns search")):
        try:
            services.build_spec({"name": "web", "task": dict({"image": "busybox"}, **task)})
        except BadRequest as exc:
            assert message in str(exc)
        else:
            raise AssertionError(task)
