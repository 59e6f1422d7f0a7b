"""Dispatcher at scale (issue 8, point 4): deadlines in a heap, assignment deltas, batched status reports,
status reports that wake nothing, the cached manager list, and the agent following the leader hint."""

import asyncio
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from swarmctl.agent.session import Session
from swarmctl.api.peer import POOL_LIMIT, PeerClient
from swarmctl.manager import dispatcher as dispatcher_module
from swarmctl.manager.dispatcher import Dispatcher, StatusBatcher
from swarmctl.manager.sessions import AssignmentLog, Deadlines, apply_delta, assignment_key, visible
from swarmctl.state.machine import StateMachine
from swarmctl.state.records import new_node


class MachineStore:
    """Test stand-in for RaftStore: the real state machine, applied directly (no Raft), counting writes."""

    def __init__(self):
        self.machine = StateMachine()
        self.writes = 0
        self.leader = True

    def is_leader(self):
        return self.leader

    def get(self, kind, record_id):
        return self.machine.get(kind, record_id)

    def list(self, kind):
        return self.machine.list(kind)

    def find(self, kind, path, value):
        return self.machine.find(kind, path, value)

    def watch(self, callback):
        return self.machine.watch(callback)

    async def write(self, ops, request_id=None, timeout=3.0):
        self.writes += 1
        return self.machine.apply_batch([(request_id, time.time(), ops)])[0]


def task(task_id, node_id="n1", state="assigned", desired="running", image="nginx"):
    return {"id": task_id, "service_id": "s", "service_name": "web", "slot": 1, "node_id": node_id,
            "spec": {"image": image}, "spec_version": 1, "desired_state": desired,
            "status": {"state": state, "message": "", "err": "", "timestamp": 0.0, "container_id": None,
                       "exit_code": None}}


def put(store, record, kind="task"):
    store.machine.apply_batch([(None, 1.0, [{"op": "put", "kind": kind, "id": record["id"], "record": record}])])


# ---- deadlines ------------------------------------------------------------------------------------
def test_deadlines_pop_only_expired_and_latest():
    d = Deadlines()
    d.set("a", 10.0)
    d.set("b", 5.0)
    d.set("a", 20.0)  # a heartbeat moves a's deadline: the old entry is stale
    assert d.pop_expired(4.0) == []
    assert d.pop_expired(12.0) == ["b"]
    assert d.pop_expired(12.0) == []
    assert d.pop_expired(25.0) == ["a"]
    assert len(d) == 0


def test_deadlines_discard_and_bounded_heap():
    d = Deadlines()
    for i in range(10_000):  # many heartbeats of few nodes do not grow the heap without bound
        d.set(f"n{i % 10}", float(i))
    assert len(d._heap) <= 4 * 10 + 64 + 1
    d.discard("n3")
    expired = d.pop_expired(1e9)
    assert sorted(expired) == sorted(f"n{i}" for i in range(10) if i != 3)


@given(st.lists(st.tuples(st.integers(0, 20), st.floats(0, 100)), max_size=200), st.floats(0, 100))
def test_deadlines_match_a_scan(sets, now):
    d = Deadlines()
    latest = {}
    for key, deadline in sets:
        d.set(str(key), deadline)
        latest[str(key)] = deadline
    assert sorted(d.pop_expired(now)) == sorted(k for k, v in latest.items() if v <= now)


# ---- deltas ---------------------------------------------------------------------------------------
def test_status_is_not_part_of_the_assignment():
    t = task("t1")
    moved = dict(t, status=dict(t["status"], state="running"), version=7, updated_at=9.0)
    assert assignment_key(t) == assignment_key(moved)
    assert assignment_key(t) != assignment_key(dict(t, desired_state="shutdown"))
    assert not visible(task("t", state="pending"))
    assert not visible(task("t", state="complete", desired="shutdown"))
    assert visible(task("t", state="complete", desired="running"))


def test_log_too_old_or_unknown_means_full_list():
    log = AssignmentLog(keep=3)
    log.reset([])
    base = log.seq
    for i in range(5):
        log.observe(f"t{i}", task(f"t{i}"))
    assert log.changed_since(base) is None  # older than what the log keeps
    assert log.changed_since(log.seq + 5) is None  # from the future (another leader)
    assert log.changed_since(log.seq - 2) == {"t3", "t4"}
    assert log.changed_since(log.seq) == set()


ops = st.lists(st.tuples(st.integers(0, 8), st.sampled_from(["assigned", "running", "failed", "shutdown"]),
                         st.sampled_from(["running", "shutdown"]), st.sampled_from(["a", "b"]),
                         st.booleans(), st.booleans()), max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(2, 50))
def test_applying_deltas_equals_the_full_list(changes, keep):
    """The agent polls at random points; whatever it got (deltas or a full list when too far behind),
    its assignment set equals the full list the manager would send."""
    tasks = {}
    log = AssignmentLog(keep=keep)
    full = [t for t in tasks.values() if visible(t)]
    log.reset(full)
    agent = apply_delta({}, {"full": True, "tasks": full})
    agent_seq = log.seq

    def poll():
        changed = log.changed_since(agent_seq)
        if changed is None:
            current = [t for t in tasks.values() if visible(t)]
            log.reset(current)
            return apply_delta(agent, {"full": True, "tasks": current}), log.seq
        answer = {"full": False, "changed": [tasks[i] for i in sorted(changed) if i in tasks and i in log.shown],
                  "removed": [i for i in sorted(changed) if i not in tasks or i not in log.shown]}
        return apply_delta(agent, answer), log.seq

    for number, state, desired, image, delete, do_poll in changes:
        task_id = f"t{number}"
        if delete and task_id in tasks:
            tasks.pop(task_id)
            log.observe(task_id, None)
        else:
            tasks[task_id] = task(task_id, state=state, desired=desired, image=image)
            log.observe(task_id, tasks[task_id])
        if do_poll:
            agent, agent_seq = poll()
    agent, agent_seq = poll()
    expected = {t["id"]: assignment_key(t) for t in tasks.values() if visible(t)}
    assert {i: assignment_key(t) for i, t in agent.items()} == expected


# ---- the dispatcher on the real state machine -----------------------------------------------------
async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


def test_dispatcher_deltas_and_status_reports_wake_nothing():
    async def main():
        store = MachineStore()
        put(store, dict(new_node("n1", "worker", "w1", "10.0.0.1"), heartbeat_period=1), kind="node")
        put(store, task("t1"))
        d = Dispatcher(store, 1.0)
        d.start()
        try:
            first = await d.assignments("n1", None, 0, deltas=True)
            assert first["full"] and [t["id"] for t in first["tasks"]] == ["t1"]
            # the agent's own report: written, but no change for the agent and no wake-up of its long-poll
            poll = asyncio.create_task(d.assignments("n1", first["version"], 0.5, deltas=True))
            await settle()
            assert await d.update_status("n1", [{"task_id": "t1", "state": "running"}]) == 1
            assert store.get("task", "t1")["status"]["state"] == "running"
            await settle()
            assert not poll.done()
            answer = await poll
            assert answer == {"version": first["version"], "full": False, "changed": [], "removed": [],
                              "report_window": dispatcher_module.REPORT_WINDOW}
            # a report that moves nothing writes nothing
            writes = store.writes
            assert await d.update_status("n1", [{"task_id": "t1", "state": "running"}]) == 0
            assert store.writes == writes
            # a real change wakes the long-poll and comes as a delta
            poll = asyncio.create_task(d.assignments("n1", answer["version"], 5, deltas=True))
            await settle()
            put(store, task("t2"))
            put(store, dict(store.get("task", "t1"), desired_state="shutdown"))
            delta = await asyncio.wait_for(poll, 1)
            assert not delta["full"] and sorted(t["id"] for t in delta["changed"]) == ["t1", "t2"]
            store.machine.apply_batch([(None, 1.0, [{"op": "delete", "kind": "task", "id": "t2"}])])
            await settle()
            delta2 = await d.assignments("n1", delta["version"], 0, deltas=True)
            assert delta2["removed"] == ["t2"] and delta2["changed"] == []
            # a sequence of another epoch (another leader) gets the full list
            other = await d.assignments("n1", "otherepoch:3", 0, deltas=True)
            assert other["full"] and [t["id"] for t in other["tasks"]] == ["t1"]
            # an agent that does not ask for deltas always gets the full list
            assert (await d.assignments("n1", other["version"], 0))["full"]
        finally:
            await d.stop()
    asyncio.run(main())


def test_batched_reports_share_raft_writes():
    async def main():
        store = MachineStore()
        for i in range(50):
            put(store, dict(new_node(f"n{i}", "worker", f"w{i}", "10.0.0.1")), kind="node")
            put(store, task(f"t{i}", node_id=f"n{i}"))
        batcher = StatusBatcher(store, max_items=20)
        batcher.start()
        try:
            writes = store.writes
            counts = await asyncio.gather(*(batcher.submit(f"n{i}", [{"task_id": f"t{i}", "state": "starting"},
                                                                     {"task_id": f"t{i}", "state": "running"}])
                                            for i in range(50)))
            assert counts == [2] * 50
            assert all(store.get("task", f"t{i}")["status"]["state"] == "running" for i in range(50))
            # 100 items, 20 per batch: a handful of writes, not one per report
            assert store.writes - writes <= 6
            assert batcher.writes == store.writes - writes
            # a node cannot report another node's task
            assert await batcher.submit("n1", [{"task_id": "t2", "state": "failed"}]) == 0
        finally:
            await batcher.stop()
    asyncio.run(main())


def test_down_detection_by_deadline_and_no_scan_per_heartbeat(monkeypatch):
    monkeypatch.setattr(dispatcher_module, "MISSED_PERIODS", 2)

    async def main():
        store = MachineStore()
        for i in range(3):
            node = new_node(f"n{i}", "worker", f"w{i}", "10.0.0.1")
            node["description"]["heartbeat_period"] = 0.1
            put(store, node, kind="node")
        d = Dispatcher(store, 0.1)
        d.start()
        calls = {"list": 0}
        real_list = store.list

        def counting_list(kind):
            calls["list"] += 1
            return real_list(kind)
        store.list = counting_list
        try:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:  # n0 and n1 heartbeat, n2 is silent
                await d.heartbeat("n0", {"heartbeat_period": 0.1})
                await d.heartbeat("n1", {"heartbeat_period": 0.1})
                d.manager_addrs()
                await asyncio.sleep(0.05)
            assert store.get("node", "n2")["status"]["state"] == "down"
            assert store.get("node", "n0")["status"]["state"] == "ready"
            assert store.get("node", "n1")["status"]["state"] == "ready"
            assert calls["list"] <= 1  # the manager list once, then cached; Down detection lists nothing
        finally:
            await d.stop()
    asyncio.run(main())


# ---- the agent's side -----------------------------------------------------------------------------
def test_session_follows_the_leader_hint():
    s = Session(lambda: None, ["10.0.0.1:4243", "10.0.0.2:4243", "10.0.0.3:4243"], 1.0, dict, None, None)
    assert s.managers[s._current] == "10.0.0.1:4243"
    s.follow_leader("10.0.0.3:4243")
    assert s.managers[s._current] == "10.0.0.3:4243"
    s.follow_leader("10.9.9.9:4243")  # not a known manager: stay
    s.follow_leader(None)
    assert s.managers[s._current] == "10.0.0.3:4243"


def test_peer_pool_holds_a_long_poll_per_node():
    import ssl
    client = PeerClient(ssl.create_default_context())
    assert client.limit == POOL_LIMIT >= 1000

    async def main():
        session = client._get_session()
        assert session.connector.limit >= 1000 and session.connector.limit_per_host >= 1000
        await client.close()
    asyncio.run(main())


def test_a_large_batch_is_split_into_raft_entries_of_200():
    async def main():
        store = MachineStore()
        put(store, new_node("n1", "worker", "w1", "10.0.0.1"), kind="node")
        for i in range(450):
            put(store, task(f"t{i}"))
        batcher = StatusBatcher(store)
        batcher.start()
        try:
            writes = store.writes
            count = await batcher.submit("n1", [{"task_id": f"t{i}", "state": "running"} for i in range(450)])
            assert count == 450 and store.writes - writes == 3
        finally:
            await batcher.stop()
    asyncio.run(main())


class ScriptedPeer:
    """Test double for the PeerClient's network side only: each address answers as scripted, so the
    session's choice of manager can be checked without three daemons (tests/integration run those)."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    async def call(self, addr, method, path, body=None, timeout=10.0):
        self.calls.append(addr)
        answer = self.answers[addr]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_session_goes_straight_to_the_leader_a_follower_names():
    from swarmctl.errors import APIError
    misdirected = APIError("not the leader: the leader is 10.0.0.3:4243", 421)
    misdirected.leader = "10.0.0.3:4243"
    peer = ScriptedPeer({"10.0.0.1:4243": misdirected, "10.0.0.2:4243": APIError("boom", 503),
                         "10.0.0.3:4243": {"ok": True}})
    s = Session(lambda: peer, ["10.0.0.1:4243", "10.0.0.2:4243", "10.0.0.3:4243"], 1.0, dict, None, None)
    assert asyncio.run(s.call("POST", "/v1/session/heartbeat", {})) == {"ok": True}
    assert peer.calls == ["10.0.0.1:4243", "10.0.0.3:4243"]  # the follower named the leader: no detour via .2
    assert s.managers[s._current] == "10.0.0.3:4243"  # and the next call starts there
    peer.calls.clear()
    asyncio.run(s.call("POST", "/v1/session/heartbeat", {}))
    assert peer.calls == ["10.0.0.3:4243"]


def test_session_redirects_are_bounded():
    from swarmctl.agent.session import ManagersUnavailable
    from swarmctl.errors import APIError

    def misdirected(to):
        error = APIError(f"not the leader: the leader is {to}", 421)
        error.leader = to
        return error
    # two followers that name each other (a stale leader view on both): the call gives up, it does not loop
    peer = ScriptedPeer({"a:1": misdirected("b:1"), "b:1": misdirected("a:1")})
    s = Session(lambda: peer, ["a:1", "b:1"], 1.0, dict, None, None)
    try:
        asyncio.run(s.call("POST", "/v1/session/heartbeat", {}))
    except (ManagersUnavailable, APIError):
        pass
    else:
        raise AssertionError("a redirect loop must fail")
    assert len(peer.calls) <= 3


def test_heartbeat_node_updates_share_raft_writes():
    from swarmctl.manager.dispatcher import NodeUpdateBatcher

    async def main():
        store = MachineStore()
        for i in range(450):
            node = new_node(f"n{i}", "worker", f"w{i}", "10.0.0.1")
            node["status"]["state"] = "down"
            put(store, node, kind="node")
        batcher = NodeUpdateBatcher(store)
        batcher.start()
        try:
            writes = store.writes
            # 450 nodes come back at once (a join storm, or nodes after an election)
            await asyncio.gather(*(batcher.submit(f"n{i}", [(["status", "state"], "ready")]) for i in range(450)))
            assert all(store.get("node", f"n{i}")["status"]["state"] == "ready" for i in range(450))
            assert store.writes - writes <= 3  # entries of at most 200 changes, not one write per heartbeat
            # what is already true writes nothing; the later value of a field wins
            writes = store.writes
            await batcher.submit("n1", [(["status", "state"], "ready")])
            assert store.writes == writes
            first = batcher.submit("n2", [(["status", "addr"], "10.0.0.7")])
            second = batcher.submit("n2", [(["status", "addr"], "10.0.0.8")])
            await asyncio.gather(first, second)
            assert store.get("node", "n2")["status"]["addr"] == "10.0.0.8"
            assert batcher.plan({"gone": {("status", "state"): "ready"}}) == []  # a removed node: nothing
        finally:
            await batcher.stop()
    asyncio.run(main())


def test_a_heartbeat_answers_even_when_its_write_is_slow(monkeypatch):
    monkeypatch.setattr(dispatcher_module, "HEARTBEAT_COMMIT_WAIT", 0.2)

    async def main():
        store = MachineStore()
        node = new_node("n1", "worker", "w1", "10.0.0.1")
        node["status"]["state"] = "down"
        put(store, node, kind="node")
        real_write = store.write

        async def slow_write(ops, request_id=None, timeout=3.0):
            await asyncio.sleep(1.0)  # a loaded Raft log
            return await real_write(ops, request_id, timeout)
        store.write = slow_write
        d = Dispatcher(store, 1.0)
        d.start()
        try:
            began = time.monotonic()
            await d.heartbeat("n1", {"heartbeat_period": 1.0})
            assert time.monotonic() - began < 0.6  # answered after the wait, not after the write
            await asyncio.sleep(1.2)
            assert store.get("node", "n1")["status"]["state"] == "ready"  # and written after all
        finally:
            await d.stop()
    asyncio.run(main())


def test_a_burst_of_assignment_changes_goes_out_in_few_answers():
    async def main():
        store = MachineStore()
        put(store, dict(new_node("n1", "worker", "w1", "10.0.0.1"), heartbeat_period=1), kind="node")
        d = Dispatcher(store, 1.0)
        d.start()
        try:
            version = (await d.assignments("n1", None, 0, deltas=True))["version"]
            await asyncio.sleep(dispatcher_module.ASSIGNMENT_MIN_INTERVAL)
            # after a quiet spell, the first change goes out at once
            poll = asyncio.create_task(d.assignments("n1", version, 5, deltas=True))
            await settle()
            began = time.monotonic()
            put(store, task("t0"))
            first = await asyncio.wait_for(poll, 1)
            assert time.monotonic() - began < 0.1 and [t["id"] for t in first["changed"]] == ["t0"]
            # then a burst of 20 changes, one every 20 ms: a few answers, each holding several changes
            answers, version = [], first["version"]

            async def poller():
                nonlocal version
                while sum(len(a["changed"]) for _, a in answers) < 20:
                    answer = await d.assignments("n1", version, 2, deltas=True)
                    version = answer["version"]
                    if answer["changed"]:
                        answers.append((time.monotonic(), answer))
            polling = asyncio.create_task(poller())
            for i in range(1, 21):
                put(store, task(f"t{i}"))
                await asyncio.sleep(0.02)
            await asyncio.wait_for(polling, 5)
            assert sum(len(a["changed"]) for _, a in answers) == 20
            assert len(answers) <= 4, [len(a["changed"]) for _, a in answers]
            gaps = [b[0] - a[0] for a, b in zip(answers, answers[1:])]
            assert all(g >= dispatcher_module.ASSIGNMENT_MIN_INTERVAL - 0.02 for g in gaps), gaps
        finally:
            await d.stop()
    asyncio.run(main())


def test_a_node_just_joined_has_the_join_grace_for_its_first_heartbeat(monkeypatch):
    monkeypatch.setattr(dispatcher_module, "MISSED_PERIODS", 2)
    monkeypatch.setattr(dispatcher_module, "JOIN_GRACE", 0.8)

    async def main():
        store = MachineStore()
        d = Dispatcher(store, 0.1)
        d.start()
        try:
            for name in ("late", "silent", "beating"):  # they join after the leader started
                node = new_node(name, "worker", name, "10.0.0.1")
                node["description"]["heartbeat_period"] = 0.1
                put(store, node, kind="node")
            await asyncio.sleep(0)
            deadline = time.monotonic() + 0.5  # past 2 periods (0.2 s), within the join grace
            while time.monotonic() < deadline:
                await d.heartbeat("beating", {"heartbeat_period": 0.1})
                await asyncio.sleep(0.05)
            assert store.get("node", "late")["status"]["state"] != "down"
            await d.heartbeat("late", {"heartbeat_period": 0.1})  # its first heartbeat, late but in the grace
            await asyncio.sleep(0.6)  # 'late' now has the usual 2 periods again; 'silent' passes the grace
            assert store.get("node", "silent")["status"]["state"] == "down"
            assert store.get("node", "late")["status"]["state"] == "down"
        finally:
            await d.stop()
    asyncio.run(main())


def test_answers_are_paced_by_the_number_of_nodes():
    """At 1,000 nodes, one answer per node per 0.25 s was 4,000 answers (and as many reports) per second
    during a 100k-task create: the interval grows with the nodes, and agents gather reports for longer."""
    d = Dispatcher(MachineStore(), 1.0)
    assert d.answer_interval() == dispatcher_module.ASSIGNMENT_MIN_INTERVAL
    assert d.report_window() == dispatcher_module.REPORT_WINDOW  # small cluster: reports go out at once
    for i in range(1000):
        d._deadlines.set(f"n{i}", 1e9)
    interval = d.answer_interval()
    assert interval == 1000 / dispatcher_module.ANSWERS_PER_SECOND
    assert 1000 / interval <= dispatcher_module.ANSWERS_PER_SECOND
    assert d.report_window() == interval / 2
    for i in range(1000, 5000):
        d._deadlines.set(f"n{i}", 1e9)
    assert d.answer_interval() == dispatcher_module.ASSIGNMENT_MAX_INTERVAL


def test_the_answer_names_the_report_window():
    async def main():
        store = MachineStore()
        put(store, dict(new_node("n1", "worker", "w1", "10.0.0.1"), heartbeat_period=1), kind="node")
        d = Dispatcher(store, 1.0)
        answer = await d.assignments("n1", None, 0, deltas=True)
        assert answer["report_window"] == dispatcher_module.REPORT_WINDOW
    asyncio.run(main())


# ---- Down detection on a loaded leader ------------------------------------------------------------
def _down_detection(monkeypatch, names, body, reconnect=0.0):
    """Run body(store, dispatcher) against a started dispatcher whose nodes `names` have a 0.1 s period and
    a grace of 2 periods (plus `reconnect` per node after the start)."""
    monkeypatch.setattr(dispatcher_module, "MISSED_PERIODS", 2)
    monkeypatch.setattr(dispatcher_module, "RECONNECT_GRACE_PER_NODE", reconnect)

    async def main():
        store = MachineStore()
        for name in names:
            node = new_node(name, "worker", name, "10.0.0.1")
            node["description"]["heartbeat_period"] = 0.1
            put(store, node, kind="node")
        d = Dispatcher(store, 0.1)
        d.start()
        try:
            await body(store, d)
        finally:
            await d.stop()
    asyncio.run(main())


def test_a_session_request_counts_as_a_heartbeat(monkeypatch):
    async def body(store, d):
        deadline = time.monotonic() + 0.8  # 4 times the grace of 2 periods
        while time.monotonic() < deadline:  # no heartbeats at all: a long-poll, a status report
            await d.assignments("polling", None, 0)
            await d.update_status("reporting", [])
            await asyncio.sleep(0.05)
        assert store.get("node", "silent")["status"]["state"] == "down"
        assert store.get("node", "polling")["status"]["state"] != "down"
        assert store.get("node", "reporting")["status"]["state"] != "down"
    _down_detection(monkeypatch, ["polling", "reporting", "silent"], body)


def test_the_leaders_own_stall_does_not_count_against_nodes(monkeypatch):
    async def body(store, d):
        await d.heartbeat("n1", {"heartbeat_period": 0.1})
        time.sleep(1.0)  # the leader's loop is stalled 5 times the node's grace (0.2 s)
        await asyncio.sleep(0.05)
        assert store.get("node", "n1")["status"]["state"] != "down"  # its heartbeat may be waiting for us
        assert d.now() < time.monotonic() - 0.8
        await asyncio.sleep(0.4)  # the grace, counted on a loop that runs
        assert store.get("node", "n1")["status"]["state"] == "down"
    _down_detection(monkeypatch, ["n1"], body)


def test_a_new_leaders_grace_grows_with_the_number_of_nodes(monkeypatch):
    async def body(store, d):  # grace: 2 periods (0.2 s) + 5 x 0.1 s to reconnect
        await asyncio.sleep(0.45)
        assert all(n["status"]["state"] != "down" for n in store.list("node"))
        await asyncio.sleep(0.5)
        assert all(n["status"]["state"] == "down" for n in store.list("node"))
    _down_detection(monkeypatch, [f"n{i}" for i in range(5)], body, reconnect=0.1)


def test_a_dispatcher_that_lost_leadership_marks_nothing_down(monkeypatch):
    async def body(store, d):
        store.leader = False
        await asyncio.sleep(0.5)
        assert store.get("node", "n1")["status"]["state"] != "down"
        assert store.writes == 0
    _down_detection(monkeypatch, ["n1"], body)


def test_election_timeouts_grow_with_the_cluster():
    from swarmctl.state.raft import election_timeouts
    assert election_timeouts(0) == election_timeouts(5) == (0.25, 0.6)
    low, high = election_timeouts(1000)
    assert low >= 0.5 and high > low and election_timeouts(200) == (low, high)
