"""The replicated state machine: deterministic writes, preconditions, idempotent request ids."""

from swarmctl.state.machine import REQUEST_MEMORY, StateMachine


def write(machine, ops, request_id=None, ts=100.0):
    return machine.apply_batch([(request_id, ts, ops)])[0]


def test_create_put_patch_delete():
    m = StateMachine()
    assert write(m, [{"op": "create", "kind": "node", "id": "a", "record": {"spec": {"labels": {}}}}])["ok"]
    assert m.get("node", "a")["version"] == 1
    result = write(m, [{"op": "patch", "kind": "node", "id": "a",
                        "set": [(["spec", "labels", "com.example.zone"], "eu")], "unset": []}], ts=200.0)
    assert result == {"ok": True, "index": 2}
    node = m.get("node", "a")
    assert node["spec"]["labels"] == {"com.example.zone": "eu"}
    assert node["created_at"] == 100.0 and node["updated_at"] == 200.0 and node["version"] == 2
    assert write(m, [{"op": "patch", "kind": "node", "id": "a", "unset": [["spec", "labels", "com.example.zone"]]}])["ok"]
    assert m.get("node", "a")["spec"]["labels"] == {}
    assert write(m, [{"op": "delete", "kind": "node", "id": "a"}])["ok"]
    assert m.get("node", "a") is None


def test_records_are_replaced_not_mutated():
    m = StateMachine()
    write(m, [{"op": "create", "kind": "node", "id": "a", "record": {"x": 1}}])
    before = m.get("node", "a")
    write(m, [{"op": "patch", "kind": "node", "id": "a", "set": {"x": 2}}])
    assert before["x"] == 1 and m.get("node", "a")["x"] == 2


def test_failed_precondition_applies_nothing():
    m = StateMachine()
    write(m, [{"op": "create", "kind": "node", "id": "a", "record": {}}])
    result = write(m, [{"op": "create", "kind": "node", "id": "b", "record": {}},
                       {"op": "create", "kind": "node", "id": "a", "record": {}}])
    assert not result["ok"] and "already exists" in result["error"]
    assert m.get("node", "b") is None and m.index == 1
    assert not write(m, [{"op": "patch", "kind": "node", "id": "zz", "set": {"x": 1}}])["ok"]
    assert write(m, [{"op": "patch", "kind": "node", "id": "zz", "set": {"x": 1}, "missing_ok": True}])["ok"]
    assert not write(m, [{"op": "put", "kind": "node", "id": "a", "record": {}, "if_version": 99}])["ok"]
    assert not write(m, [{"op": "put", "kind": "bogus", "id": "a", "record": {}}])["ok"]


def test_unique_field():
    m = StateMachine()
    write(m, [{"op": "create", "kind": "service", "id": "s1", "record": {"spec": {"name": "web"}}, "unique": "spec.name"}])
    result = write(m, [{"op": "create", "kind": "service", "id": "s2", "record": {"spec": {"name": "web"}},
                        "unique": "spec.name"}])
    assert not result["ok"] and "already exists" in result["error"]


def test_request_id_applies_once():
    m = StateMachine()
    op = [{"op": "put", "kind": "node", "id": "a", "record": {"n": 1}}]
    first = write(m, op, request_id="r1")
    again = write(m, op, request_id="r1")
    assert first == again and m.index == 1
    for i in range(REQUEST_MEMORY + 1):
        write(m, [], request_id=f"x{i}")
    assert "r1" not in m.applied


def test_watchers_and_snapshot_restore():
    m = StateMachine()
    seen = []
    cancel = m.watch(lambda index, events: seen.append((index, [(e[0], e[1], e[2]) for e in events])))
    write(m, [{"op": "create", "kind": "node", "id": "a", "record": {}}])
    assert seen == [(1, [("create", "node", "a")])]
    snap = m.snapshot()
    other = StateMachine()
    other.restore(snap)
    assert other.get("node", "a") == m.get("node", "a") and other.index == 1
    cancel()
    write(m, [{"op": "delete", "kind": "node", "id": "a"}])
    assert len(seen) == 1


def test_same_writes_same_state_on_every_replica():
    writes = [("r%d" % i, float(i), [{"op": "put", "kind": "task", "id": "t%d" % (i % 5), "record": {"i": i}}])
              for i in range(50)]
    a, b = StateMachine(), StateMachine()
    a.apply_batch(writes)
    for w in writes:
        b.apply_batch([w])
    assert a.snapshot()["data"] == b.snapshot()["data"]


def test_indexed_find_matches_a_full_scan():
    """find() on an indexed field (task.node_id, task.service_id) answers exactly what a scan would, through
    creates, patches that move a task, deletes, failed writes and a snapshot restore."""
    import random
    rng = random.Random(3)
    m = StateMachine()
    nodes, services = ["n1", "n2", "n3", None], ["s1", "s2"]

    def scan(path, value):
        return sorted(t["id"] for t in m.list("task") if t.get(path) == value)

    def check():
        for value in nodes:
            assert sorted(t["id"] for t in m.find("task", "node_id", value)) == scan("node_id", value)
        for value in services + ["nope"]:
            assert sorted(t["id"] for t in m.find("task", "service_id", value)) == scan("service_id", value)

    for step in range(400):
        task_id = f"t{rng.randrange(40)}"
        exists = m.get("task", task_id) is not None
        roll = rng.random()
        if not exists or roll < 0.2:
            write(m, [{"op": "put", "kind": "task", "id": task_id,
                       "record": {"node_id": rng.choice(nodes), "service_id": rng.choice(services)}}])
        elif roll < 0.7:
            write(m, [{"op": "patch", "kind": "task", "id": task_id, "set": [("node_id", rng.choice(nodes))]}])
        elif roll < 0.8:  # a failed write changes no index
            write(m, [{"op": "patch", "kind": "task", "id": task_id, "set": [("node_id", "n9")]},
                      {"op": "create", "kind": "task", "id": task_id, "record": {}}])
        else:
            write(m, [{"op": "delete", "kind": "task", "id": task_id}])
        if step % 50 == 0:
            check()
    check()
    restored = StateMachine()
    restored.restore(m.snapshot())
    m = restored
    check()
    assert m.find("task", "node_id", ["unhashable"]) == []


def test_a_patch_shares_what_it_does_not_change_and_never_mutates_the_old_record():
    import copy as _copy
    from swarmctl.state.machine import StateMachine
    m = StateMachine()
    record = {"spec": {"image": "busybox", "env": {"A": "1"}}, "status": {"state": "new", "err": "x"}, "labels": {}}
    m.apply_batch([(None, 1.0, [{"op": "create", "kind": "task", "id": "t1", "record": record}])])
    old = m.get("task", "t1")
    frozen = _copy.deepcopy(old)
    value = {"deep": ["list"]}
    m.apply_batch([(None, 2.0, [{"op": "patch", "kind": "task", "id": "t1",
                                  "set": [(["status", "state"], "running"), (["labels", "k"], value),
                                          (["new", "branch", "leaf"], 1)],
                                  "unset": [["status", "err"], ["missing", "path"]]}])])
    new = m.get("task", "t1")
    assert old == frozen  # readers holding the old record see it unchanged
    assert new["status"] == {"state": "running"} and new["labels"] == {"k": {"deep": ["list"]}}
    assert new["new"] == {"branch": {"leaf": 1}}
    assert new["spec"] is old["spec"]  # untouched subtrees are shared, not copied
    value["deep"].append("mutated by the caller")
    assert new["labels"]["k"] == {"deep": ["list"]}  # a container value is copied in


def test_fresh_ops_are_taken_over_and_others_copied():
    from swarmctl.state.machine import StateMachine
    m = StateMachine()
    mine = {"spec": {"image": "a"}}
    m.apply_batch([(None, 1.0, [{"op": "create", "kind": "task", "id": "t1", "record": mine}])])
    mine["spec"]["image"] = "changed after the write"
    assert m.get("task", "t1")["spec"]["image"] == "a"  # not fresh: the caller's object is copied
    decoded = {"spec": {"image": "b"}}
    m.apply_batch([(None, 1.0, [{"op": "create", "kind": "task", "id": "t2", "record": decoded}])], fresh=True)
    assert m.get("task", "t2")["spec"] is decoded["spec"]  # fresh (decoded from the Raft log): no copy
