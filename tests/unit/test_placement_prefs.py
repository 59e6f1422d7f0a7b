"""Placement preferences (issue 10, point 4): swarmkit's tree of groups in the grouped planner, over
hand-built node sets, and the spec validation of preferences."""

from __future__ import annotations

import collections
import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmctl.errors import BadRequest
from swarmctl.manager import services
from swarmctl.manager.scheduler import preferences, scheduler
from swarmctl.state.records import default_task_spec, new_node, new_task

NOW = 1000.0


def node(name, labels=None, engine=None, cpus=4.0, memory=8e9, state="ready", availability="active"):
    n = new_node(f"id-{name}", "worker", name, "127.0.0.1", resources={"cpus": cpus, "memory": memory},
                 engine_labels=engine or {})
    n["spec"]["labels"] = dict(labels or {})
    n["spec"]["availability"] = availability
    n["status"]["state"] = state
    return n


def service(prefs=(), name="web", **placement):
    spec = default_task_spec()
    spec["image"] = "img"
    spec["placement"].update(placement)
    if prefs:
        spec["placement"]["preferences"] = [{"spread": p} for p in prefs]
    return {"id": f"svc-{name}", "spec": {"name": name, "mode": "replicated", "replicas": 1, "labels": {},
                                          "task": spec}, "spec_version": 1}


def pending(svc, count, first_slot=1):
    return [new_task(svc, slot, None, NOW) for slot in range(first_slot, first_slot + count)]


def running(svc, node_id, slot):
    task = new_task(svc, slot, node_id, NOW)
    task["status"]["state"] = "running"
    return task


def assigned(ops):
    """node id -> tasks assigned to it by these ops."""
    out = collections.Counter()
    for op in ops:
        fields = {tuple(path): value for path, value in op["set"]}
        if ("node_id",) in fields:
            out[fields[("node_id",)]] += 1
    return out


def per_label(nodes, counts, key="zone"):
    zone = {n["id"]: n["spec"]["labels"].get(key, "") for n in nodes}
    out = collections.Counter()
    for node_id, count in counts.items():
        out[zone[node_id]] += count
    return out


def plan(nodes, tasks):
    return assigned(scheduler.plan(tasks, nodes, now=NOW))


# ---- the planner ------------------------------------------------------------------------------
def test_six_replicas_over_zones_of_one_two_and_two_nodes_give_two_per_zone():
    nodes = [node("n1", {"zone": "b"}), node("n2", {"zone": "b"}), node("n3", {"zone": "c"}),
             node("n4", {"zone": "c"}), node("n5", {"zone": "a"})]
    counts = plan(nodes, pending(service(["node.labels.zone"]), 6))
    assert per_label(nodes, counts) == {"a": 2, "b": 2, "c": 2}
    assert counts["id-n5"] == 2 and counts["id-n1"] == counts["id-n2"] == 1  # spread inside a zone
    # without the preference spread alone puts 6 tasks on 5 nodes: zone a gets what its one node takes
    plain = plan(nodes, pending(service(), 6))
    assert plain == {"id-n1": 2, "id-n2": 1, "id-n3": 1, "id-n4": 1, "id-n5": 1}


def test_nodes_without_the_label_are_one_group():
    nodes = [node("a1", {"zone": "a"}), node("x1"), node("x2"), node("x3", {"zone": ""}), node("b1", {"zone": "b"})]
    counts = plan(nodes, pending(service(["node.labels.zone"]), 6))
    assert per_label(nodes, counts) == {"": 2, "a": 2, "b": 2}
    # ties go by label value: the group without the label ("") first, then a, b
    assert per_label(nodes, plan(nodes, pending(service(["node.labels.zone"]), 2))) == {"": 1, "a": 1}


def test_engine_labels():
    nodes = [node("s1", engine={"disk": "ssd"}), node("s2", engine={"disk": "ssd"}), node("h1", engine={"disk": "hdd"})]
    counts = plan(nodes, pending(service(["engine.labels.disk"]), 4))
    assert counts["id-h1"] == 2 and counts["id-s1"] == counts["id-s2"] == 1


def test_two_levels_spread_evenly_at_each_level():
    nodes = [node(f"{zone}{rack}{i}", {"zone": zone, "rack": f"{zone}{rack}"})
             for zone, racks in (("a", 1), ("b", 3)) for rack in range(racks) for i in range(2)]
    counts = plan(nodes, pending(service(["node.labels.zone", "node.labels.rack"]), 12))
    assert per_label(nodes, counts) == {"a": 6, "b": 6}
    assert per_label(nodes, counts, "rack") == {"a0": 6, "b0": 2, "b1": 2, "b2": 2}
    assert sorted(counts.values()) == [1] * 6 + [3, 3]


def test_existing_tasks_of_the_service_count():
    nodes = [node("a1", {"zone": "a"}), node("a2", {"zone": "a"}), node("b1", {"zone": "b"}),
             node("c1", {"zone": "c"})]
    svc = service(["node.labels.zone"])
    existing = [running(svc, "id-a1", 1), running(svc, "id-a1", 2), running(svc, "id-b1", 3)]
    other = service(name="other")
    others = [running(other, "id-c1", s) for s in range(1, 5)]  # another service's tasks do not count
    counts = plan(nodes, existing + others + pending(svc, 3, first_slot=4))
    assert counts == {"id-c1": 2, "id-b1": 1}  # a2 is empty, but zone a has 2 tasks already
    # the existing tasks are on the nodes, the new ones even the zones out: 2, 2, 2
    assert per_label(nodes, counts + collections.Counter({"id-a1": 2, "id-b1": 1})) == {"a": 2, "b": 2, "c": 2}
    assert plan(nodes, existing + others + pending(service(), 3, first_slot=4))["id-a2"] >= 1


def test_a_zone_filtered_out_by_constraints_gets_none():
    nodes = [node("a1", {"zone": "a", "tier": "gpu"}), node("b1", {"zone": "b"}), node("b2", {"zone": "b"}),
             node("c1", {"zone": "c"}), node("c2", {"zone": "c", "tier": "gpu"})]
    svc = service(["node.labels.zone"], constraints=["node.labels.tier!=gpu"])
    counts = plan(nodes, pending(svc, 6))
    assert per_label(nodes, counts) == {"b": 3, "c": 3}
    assert counts["id-c1"] == 3 and counts["id-b1"] + counts["id-b2"] == 3
    # a drained or down node is filtered out the same way
    nodes[1]["spec"]["availability"] = "drain"
    nodes[2]["status"]["state"] = "down"
    assert per_label(nodes, plan(nodes, pending(svc, 6))) == {"c": 6}


def test_max_replicas_per_node_fills_the_other_zones_and_explains_the_rest():
    nodes = [node("a1", {"zone": "a"}), node("b1", {"zone": "b"}), node("b2", {"zone": "b"})]
    svc = service(["node.labels.zone"], max_replicas_per_node=3)
    assert plan(nodes, pending(svc, 6)) == {"id-a1": 3, "id-b1": 2, "id-b2": 1}
    ops = scheduler.plan(pending(svc, 10), nodes, now=NOW)
    assert assigned(ops) == {"id-a1": 3, "id-b1": 3, "id-b2": 3}  # zone a full at 3: b takes the rest
    messages = [dict((tuple(p), v) for p, v in op["set"])[("status", "message")] for op in ops
                if ("node_id",) not in {tuple(p) for p, _ in op["set"]}]
    assert messages == ["no suitable node (max replicas per node limit exceeded on 3 nodes)"]


def test_binpack_and_random_inside_the_leaves():
    nodes = [node("a1", {"zone": "a"}), node("a2", {"zone": "a"}), node("b1", {"zone": "b"}),
             node("b2", {"zone": "b"})]
    binpack = service(["node.labels.zone"], strategy="binpack")
    binpack["spec"]["task"]["resources"]["reservations"]["memory"] = 1e9
    counts = plan(nodes, pending(binpack, 6))
    assert per_label(nodes, counts) == {"a": 3, "b": 3}
    assert sorted(counts.values()) == [3, 3]  # each zone packs one node
    counts = plan(nodes, pending(service(["node.labels.zone"], strategy="random"), 10))
    assert per_label(nodes, counts) == {"a": 5, "b": 5}


def test_no_preferences_places_exactly_as_before():
    nodes = [node("a1", {"zone": "a"}, cpus=2), node("b1", {"zone": "b"}), node("b2", {"zone": "b"}, memory=2e9),
             node("c1")]
    plain = service()
    plain["spec"]["task"]["resources"]["reservations"] = {"cpus": 0.5, "memory": 5e8}
    empty = copy.deepcopy(plain)
    empty["spec"]["task"]["placement"]["preferences"] = []
    tasks = [running(plain, "id-a1", 1)] + pending(plain, 9, first_slot=2)
    ops = scheduler.plan(copy.deepcopy(tasks), nodes, now=NOW)
    with_empty = scheduler.plan([dict(t, spec=empty["spec"]["task"]) for t in copy.deepcopy(tasks)], nodes, now=NOW)
    assert ops == with_empty
    assert assigned(ops) == {"id-c1": 3, "id-b1": 3, "id-b2": 2, "id-a1": 1}


def test_preference_groups_are_planned_apart():
    """Tasks of one version with different preferences are not one group (the planner compares placement)."""
    nodes = [node("a1", {"zone": "a"}), node("b1", {"zone": "b"}), node("b2", {"zone": "b"})]
    svc = service(["node.labels.zone"])
    tasks = pending(svc, 2)
    other = copy.deepcopy(svc["spec"]["task"])
    other["placement"]["preferences"] = []
    tasks += [dict(t, spec=other) for t in pending(svc, 2, first_slot=3)]
    counts = plan(nodes, tasks)
    assert sum(counts.values()) == 4 and counts["id-a1"] >= 1


# ---- property ---------------------------------------------------------------------------------
ZONES = ["", "a", "b", "c", "d"]


@st.composite
def cluster_st(draw):
    count = draw(st.integers(1, 12))
    nodes = []
    for i in range(count):
        labels = {}
        zone = draw(st.sampled_from(ZONES + [None]))
        if zone is not None:
            labels["zone"] = zone
        labels["rack"] = draw(st.sampled_from(["r1", "r2", "r3"]))
        nodes.append(node(f"n{i}", labels, cpus=draw(st.sampled_from([1, 4, 16])),
                          memory=draw(st.sampled_from([1e9, 8e9]))))
    existing = draw(st.lists(st.integers(0, count - 1), max_size=8))
    return nodes, existing, draw(st.integers(1, 40)), draw(st.sampled_from(["spread", "binpack", "random"]))


@settings(max_examples=150, deadline=None)
@given(cluster_st(), st.booleans())
def test_property_tasks_go_to_the_least_loaded_group(cluster, two_levels):
    """All nodes eligible, no reservations or per-node limit (every group can always take a task). Zones are the
    values of node.labels.zone, a node without it or with "" in the zone "". The property at the top level:
    every zone that got a new task ends with at most one task more than the least loaded zone (counting the
    service's existing tasks). Without existing tasks that is: the zones' counts differ by at most 1. With two
    levels (zone, then rack) the same holds for the racks inside each zone."""
    nodes, existing_on, replicas, strategy = cluster
    svc = service(["node.labels.zone", "node.labels.rack"] if two_levels else ["node.labels.zone"],
                  strategy=strategy)
    existing = [running(svc, nodes[i]["id"], slot) for slot, i in enumerate(existing_on, start=1)]
    before = collections.Counter(t["node_id"] for t in existing)
    new = plan(nodes, existing + pending(svc, replicas, first_slot=len(existing) + 1))
    assert sum(new.values()) == replicas
    after = before + new

    def check(group_nodes, key):
        counts_after = per_label(group_nodes, {n["id"]: after[n["id"]] for n in group_nodes}, key)
        counts_new = per_label(group_nodes, {n["id"]: new[n["id"]] for n in group_nodes}, key)
        for label in {n["spec"]["labels"].get(key, "") for n in group_nodes}:
            counts_after.setdefault(label, 0)
        least = min(counts_after.values())
        for label, added in counts_new.items():
            if added:
                assert counts_after[label] <= least + 1, (key, counts_after, counts_new)
        if not before:
            assert max(counts_after.values()) - least <= 1

    check(nodes, "zone")
    if two_levels:
        by_zone = collections.defaultdict(list)
        for n in nodes:
            by_zone[n["spec"]["labels"].get("zone", "")].append(n)
        for group in by_zone.values():
            check(group, "rack")


# ---- validation -------------------------------------------------------------------------------
def test_parse():
    assert preferences.parse({"spread": "node.labels.zone"}) == (False, "zone")
    assert preferences.parse({"spread": "engine.labels.disk"}) == (True, "disk")
    assert preferences.parse({"spread": "Node.Labels.zone"}) == (False, "zone")  # swarmkit: prefix in any case


@pytest.mark.parametrize("pref, message", [
    ({"pack": "node.labels.zone"}, "unsupported placement preference pack (only spread is supported)"),
    ({"spread": "node.hostname"}, "invalid placement preference 'spread=node.hostname': spread over "
                                  "node.labels.KEY or engine.labels.KEY"),
    ({"spread": "node.labels."}, "invalid placement preference 'spread=node.labels.': missing label name"),
    ({}, "invalid placement preference '{}': expected one strategy and its argument, "
         "e.g. {\"spread\": \"node.labels.zone\"}"),
])
def test_validate_spec_rejects_bad_preferences(pref, message):
    with pytest.raises(BadRequest) as info:
        services.build_spec({"name": "web", "mode": "replicated", "replicas": 1,
                             "task": {"image": "nginx", "placement": {"preferences": [pref]}}})
    assert info.value.message == message


def test_default_spec_has_no_preferences_and_a_good_one_is_kept():
    assert default_task_spec()["placement"]["preferences"] == []
    checked = services.build_spec({"name": "web", "mode": "replicated", "replicas": 1,
                                   "task": {"image": "nginx", "placement": {"preferences": [
                                       {"spread": "node.labels.zone"}, {"spread": "engine.labels.disk"}]}}})
    assert checked["task"]["placement"]["preferences"] == [{"spread": "node.labels.zone"},
                                                          {"spread": "engine.labels.disk"}]
