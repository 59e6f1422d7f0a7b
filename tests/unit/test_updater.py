"""The updater (swarmctl/manager/orchestrator/updater.py) driven pass by pass over plain records: the
orchestrator's planner decides, a small world loop in the test plays the scheduler and the agents (places
pending tasks, brings them up or fails them, stops what is told to stop), and the clock moves in steps."""

from __future__ import annotations

import copy

import pytest

from swarmctl.manager.orchestrator import plan_pass
from swarmctl.manager.orchestrator.updater import fmt_duration
from swarmctl.state.machine import StateMachine
from swarmctl.state.records import default_task_spec, default_update_config, is_terminal, new_node

NODES = ["n1", "n2", "n3"]


def node(name):
    n = new_node(f"id-{name}", "worker", name, "127.0.0.1", resources={"cpus": 4.0, "memory": 4e9})
    n["status"]["state"] = "ready"
    return n


class World:
    """The store, the clock, and the stand-ins for the scheduler and the agents."""

    def __init__(self, replicas=6, rebalance=None, mode="replicated", **update):
        self.m = StateMachine()
        self.nodes = list(NODES)
        self.now = 1000.0
        self.bad_images: set[str] = set()   # tasks of these images fail when they start
        self.never_up: set[str] = set()     # tasks of these images stay starting
        self.fail_after: dict[str, float] = {}  # image -> seconds after running that the task fails
        spec = default_task_spec()
        spec["image"] = "app:1"
        spec["restart_policy"].update(delay=0.0)
        config = dict(default_update_config(), **update)
        svc = {"name": "web", "mode": mode, "replicas": replicas if mode == "replicated" else None, "labels": {}, "task": spec,
               "endpoint": {"mode": "vip", "ports": []}, "update_config": config,
               "rollback_config": default_update_config(True), "rebalance": rebalance}
        self.write([{"op": "create", "kind": "node", "id": f"id-{n}", "record": node(n)} for n in NODES]
                   + [{"op": "create", "kind": "service", "id": "svc", "record": {
                       "id": "svc", "spec": svc, "spec_version": 1, "previous_spec": None, "previous_specs": []}}])
        self.samples: list[dict] = []
        self.run(40)

    def write(self, ops):
        result = self.m.apply_batch([(None, self.now, ops)])[0]
        assert result["ok"], result

    @property
    def service(self):
        return self.m.get("service", "svc")

    def tasks(self):
        return self.m.list("task")

    def update(self, **task):
        """`service update` of the task spec (what services.update writes)."""
        s = self.service
        self.samples = []  # what happens from the update on
        spec = copy.deepcopy(s["spec"])
        spec["task"].update(task)
        version = s["spec_version"] + 1
        self.write([{"op": "patch", "kind": "service", "id": "svc", "set": [
            (["spec"], spec), (["previous_spec"], s["spec"]),
            (["previous_specs"], (s.get("previous_specs") or []) + [s["spec"]]), (["spec_version"], version),
            (["update_status"], {"state": "updating", "message": "update in progress", "started_at": self.now,
                                 "completed_at": None, "spec_version": version})]}])

    def step(self, dt=0.5):
        p = plan_pass([self.service], self.tasks(), self.m.list("node"), now=self.now)
        if p.ops:
            self.write(p.ops)
        self.agents()
        self.samples.append(self.sample())
        self.now += dt

    def agents(self):
        ops = []
        placed = 0
        for t in self.tasks():
            st = t["status"]
            image = t["spec"]["image"]
            if is_terminal(st["state"]):
                continue
            if t["desired_state"] != "running":
                ops.append(self._set(t, "shutdown", "shutdown"))
            elif st["state"] == "pending":
                target = t.get("node_id") or f"id-{self.nodes[placed % len(self.nodes)]}"
                ops.append({"op": "patch", "kind": "task", "id": t["id"], "set": [
                    (["node_id"], target), (["status", "state"], "starting"),
                    (["status", "timestamp"], self.now)]})
                placed += t.get("node_id") is None
            elif st["state"] == "starting":
                if image in self.bad_images:
                    ops.append(self._set(t, "failed", "task: non-zero exit (1)", err="task: non-zero exit (1)"))
                elif image not in self.never_up:
                    ops.append(self._set(t, "running", "running", running_at=self.now))
            elif st["state"] == "running" and image in self.fail_after \
                    and self.now - st["running_at"] >= self.fail_after[image]:
                ops.append(self._set(t, "failed", "unhealthy container", err="unhealthy container"))
        if ops:
            self.write(ops)

    def _set(self, t, state, message, err=None, running_at=None):
        sets = [(["status", "state"], state), (["status", "message"], message), (["status", "timestamp"], self.now)]
        if err:
            sets.append((["status", "err"], err))
        if running_at is not None:
            sets.append((["status", "running_at"], running_at))
        return {"op": "patch", "kind": "task", "id": t["id"], "set": sets}

    def sample(self):
        version = self.service["spec_version"]
        live = [t for t in self.tasks() if not is_terminal(t["status"]["state"])]
        running = [t for t in live if t["status"]["state"] == "running"]
        # a slot in transition: it has no running task of the current version
        def key(t):
            return t["slot"] if t["slot"] is not None else t["node_id"]
        slots = {key(t) for t in self.tasks() if t["desired_state"] == "running"}
        settled = {key(t) for t in running if t["spec_version"] == version and t["desired_state"] == "running"}
        old = {key(t) for t in running if t["spec_version"] != version and t["desired_state"] == "running"}
        return {"time": self.now, "running": len(running), "live": len(live),
                "transition": len(slots - settled - old), "status": (self.service.get("update_status") or {}),
                "images": sorted(t["spec"]["image"] for t in running)}

    def run(self, steps, dt=0.5):
        for _ in range(steps):
            self.step(dt)

    def run_until(self, state, limit=400, dt=0.5):
        for _ in range(limit):
            self.step(dt)
            if (self.service.get("update_status") or {}).get("state") == state:
                return self.service["update_status"]
        raise AssertionError(f"no {state}: {self.service.get('update_status')}")


def test_the_world_starts_with_six_running():
    w = World()
    assert w.samples[-1]["running"] == 6 and w.service.get("update_status") is None


def test_parallelism_2_never_has_more_than_2_slots_in_transition():
    w = World(parallelism=2)
    w.update(image="app:2")
    status = w.run_until("completed")
    assert max(s["transition"] for s in w.samples) == 2
    assert w.samples[-1]["images"] == ["app:2"] * 6
    assert status["message"] == "update completed" and status["completed_at"] >= status["started_at"]


def test_parallelism_0_replaces_all_at_once():
    w = World(parallelism=0)
    w.update(image="app:2")
    w.run_until("completed")
    assert max(s["transition"] for s in w.samples) == 6


def test_start_first_never_drops_below_6_running_and_stop_first_never_goes_above_6():
    first = World(parallelism=2, order="start-first")
    first.update(image="app:2")
    first.run_until("completed")
    after = first.samples
    assert min(s["running"] for s in after) >= 6 and max(s["running"] for s in after) > 6
    stop = World(parallelism=2, order="stop-first")
    stop.update(image="app:2")
    stop.run_until("completed")
    assert max(s["running"] for s in stop.samples) <= 6 and min(s["running"] for s in stop.samples) < 6
    assert first.samples[-1]["images"] == stop.samples[-1]["images"] == ["app:2"] * 6


def test_delay_waits_after_each_slot_and_monitor_before_completed():
    w = World(parallelism=1, delay=5.0, monitor=3.0)
    started = w.now
    w.update(image="app:2")
    status = w.run_until("completed")
    # 6 slots one at a time, 5 s apart after each came up, then 3 s of monitoring
    assert status["completed_at"] - started >= 5 * 5.0 + 3.0


def test_a_failing_new_image_with_failure_action_rollback_ends_rolled_back():
    w = World(parallelism=2, failure_action="rollback")
    w.bad_images.add("app:2")
    w.update(image="app:2")
    status = w.run_until("rollback_started")
    assert status["message"].startswith("update rolled back due to failure or early termination of task ")
    assert status["message"].endswith(": task: non-zero exit (1)")
    status = w.run_until("rollback_completed")
    assert w.service["spec"]["task"]["image"] == "app:1"
    assert status["message"].startswith("rollback completed: update rolled back due to failure or early termination")
    assert w.samples[-1]["images"] == ["app:1"] * 6
    assert all(t["spec"]["image"] == "app:1" for t in w.tasks()
               if t["desired_state"] == "running" and not is_terminal(t["status"]["state"]))
    # the slots the update never touched kept their tasks: they run the rolled-back spec already (swarmkit:
    # a task is replaced only when it is dirty), and took its version
    original = [t for t in w.tasks() if t["created_at"] <= 1020.0 and t["desired_state"] == "running"]
    assert len(original) >= 4 and all(t["spec_version"] == w.service["spec_version"] for t in original)


def test_failure_action_pause_stays_paused_with_the_reason():
    w = World(parallelism=1)
    w.bad_images.add("app:2")
    w.update(image="app:2")
    status = w.run_until("paused")
    assert "update paused due to failure or early termination of task" in status["message"]
    touched = sum(1 for t in w.tasks() if t["spec"]["image"] == "app:2")
    w.run(40)
    assert w.service["update_status"]["state"] == "paused"
    assert w.samples[-1]["images"].count("app:1") == 5  # one slot tried; the other 5 were never touched
    # the failing slot keeps restarting under the restart policy, but no other slot starts updating
    assert len({t["slot"] for t in w.tasks() if t["spec"]["image"] == "app:2"}) == 1 and touched >= 1
    # the next update ends the pause
    w.bad_images.clear()
    w.update(image="app:3")
    w.run_until("completed")
    assert w.samples[-1]["images"] == ["app:3"] * 6


def test_a_task_failing_within_monitor_counts_and_one_after_does_not():
    w = World(parallelism=1, monitor=5.0)
    w.fail_after["app:2"] = 2.0  # turns unhealthy 2 s after it came up: within monitor
    w.update(image="app:2")
    status = w.run_until("paused")
    assert status["message"].endswith(": unhealthy container")
    late = World(parallelism=6, monitor=2.0)
    late.fail_after["app:2"] = 30.0  # long after monitor: the update completes
    late.update(image="app:2")
    late.run_until("completed")


def test_max_failure_ratio_tolerates_that_share_of_failures():
    w = World(parallelism=0, max_failure_ratio=0.5, order="start-first")
    w.bad_images.add("app:2")
    w.update(image="app:2")
    status = w.run_until("paused")  # 6 of 6 fail: more than half
    assert "task" in status["message"]


def test_the_healthy_deadline_and_the_progress_deadline_run_the_failure_action():
    w = World(parallelism=1, healthy_deadline=10.0)
    w.never_up.add("app:2")
    w.update(image="app:2")
    status = w.run_until("paused")
    assert status["message"].endswith("not running within the healthy deadline (10s)")
    slow = World(parallelism=1, delay=20.0, progress_deadline=30.0, failure_action="rollback")
    slow.update(image="app:2")
    status = slow.run_until("rollback_started")
    assert status["message"] == "update rolled back because it did not complete within the progress deadline (30s)"
    slow.run_until("rollback_completed")
    assert slow.samples[-1]["images"] == ["app:1"] * 6


def test_a_rollback_that_fails_pauses_with_the_rollback_config():
    w = World(parallelism=1, failure_action="rollback")
    w.bad_images.update({"app:2", "app:1"})  # the old image fails too now
    w.update(image="app:2")
    w.run_until("rollback_started")
    status = w.run_until("rollback_paused")
    assert status["message"].startswith("rollback paused due to failure or early termination of task ")


def test_tasks_on_an_old_spec_without_an_update_status_are_updated_too():
    w = World(parallelism=3)
    s = w.service
    spec = copy.deepcopy(s["spec"])
    spec["task"]["image"] = "app:2"
    w.samples = []
    w.write([{"op": "patch", "kind": "service", "id": "svc", "set": [(["spec"], spec), (["spec_version"], 2)]}])
    w.run_until("completed")
    assert max(x["transition"] for x in w.samples) <= 3 and w.samples[-1]["images"] == ["app:2"] * 6


@pytest.mark.parametrize("seconds,text", [(300, "5m0s"), (600, "10m0s"), (10, "10s"), (90, "1m30s"),
                                          (0.5, "500ms"), (3600, "1h0m0s")])
def test_durations_read_as_docker_prints_them(seconds, text):
    assert fmt_duration(seconds) == text


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(replicas=st.integers(1, 8), parallelism=st.integers(0, 4), order=st.sampled_from(["stop-first", "start-first"]),
       delay=st.sampled_from([0.0, 1.0]), fail_first=st.booleans())
def test_property_an_update_respects_parallelism_and_order_and_ends(replicas, parallelism, order, delay, fail_first):
    """For any replicas, parallelism, order and delay: never more than `parallelism` slots in transition
    (all of them for 0), stop-first never above `replicas` running and start-first never below, and the update
    ends: completed with every task on the new image, or (when the new image fails) paused with at most
    `parallelism` slots touched and every untouched slot still running the old image."""
    w = World(replicas=replicas, parallelism=parallelism, order=order, delay=delay, monitor=1.0)
    if fail_first:
        w.bad_images.add("app:2")
    w.update(image="app:2")
    state = None
    for _ in range(600):
        w.step()
        state = w.service["update_status"]["state"]
        if state in ("completed", "paused"):
            break
    limit = parallelism or replicas
    assert max(s["transition"] for s in w.samples) <= limit
    if order == "stop-first":
        assert max(s["running"] for s in w.samples) <= replicas
    else:
        assert min(s["running"] for s in w.samples) >= replicas
    if fail_first:
        assert state == "paused"
        touched = {t["slot"] for t in w.tasks() if t["spec"]["image"] == "app:2"}
        assert len(touched) <= limit
        assert w.samples[-1]["images"].count("app:1") >= replicas - limit
    else:
        assert state == "completed" and w.samples[-1]["images"] == ["app:2"] * replicas


# ---- rebalancing ------------------------------------------------------------------------------------
def per_node(w):
    counts = {f"id-{n}": 0 for n in w.nodes}
    for t in w.tasks():
        if t["desired_state"] == "running" and t["status"]["state"] == "running":
            counts[t["node_id"]] = counts.get(t["node_id"], 0) + 1
    return sorted(counts.values(), reverse=True)


def join(w, name):
    w.write([{"op": "create", "kind": "node", "id": f"id-{name}", "record": node(name)}])
    w.nodes.append(name)
    w.samples = []


def test_rebalance_auto_evens_out_after_a_join_without_a_capacity_dip():
    w = World(replicas=6, rebalance="auto", parallelism=1)
    assert per_node(w) == [2, 2, 2]
    join(w, "n4")
    w.run(40)
    assert per_node(w) == [2, 2, 1, 1]
    assert min(s["running"] for s in w.samples) >= 6
    moved = [t for t in w.tasks() if t.get("replaces")]
    assert len(moved) == 1 and moved[0]["node_id"] == "id-n4"
    old = w.m.get("task", moved[0]["replaces"])
    assert old["desired_state"] == "shutdown" and old["slot"] == moved[0]["slot"]
    w.run(20)
    assert len([t for t in w.tasks() if t.get("replaces")]) == 1  # balanced: no more moves


def test_rebalance_never_leaves_them_and_a_one_off_request_moves_once():
    w = World(replicas=6)
    join(w, "n4")
    w.run(40)
    assert per_node(w) == [2, 2, 2, 0]
    w.write([{"op": "patch", "kind": "service", "id": "svc", "set": [(["rebalance_request"], w.now)]}])
    w.run(40)
    assert per_node(w) == [2, 2, 1, 1] and min(s["running"] for s in w.samples) >= 6
    assert w.service.get("rebalance_request") is None
    join(w, "n5")
    w.run(40)
    assert per_node(w) == [2, 2, 1, 1, 0]  # the request was for once


def test_the_swarm_default_applies_to_services_without_their_own_setting():
    from swarmctl.manager.orchestrator import plan_pass as plan
    w = World(replicas=6)
    join(w, "n4")
    for _ in range(40):
        p = plan([w.service], w.tasks(), w.m.list("node"), now=w.now, default_rebalance="auto")
        if p.ops:
            w.write(p.ops)
        w.agents()
        w.now += 0.5
    assert per_node(w) == [2, 2, 1, 1]


def test_a_rollback_keeps_the_old_task_that_runs_the_restored_spec_and_stops_the_newer_one():
    """start-first: the failing new task is still starting when the rollback comes; the slot keeps the
    running old task (it runs the restored spec), not the newer one."""
    w = World(replicas=3, parallelism=3, order="start-first", failure_action="rollback")
    w.never_up.add("app:2")  # stays starting: not failed yet when the rollback comes
    w.bad_images.add("app:3")
    w.update(image="app:2")
    w.run(4)
    # roll back by hand while the new tasks are still starting
    s = w.service
    kept = s["previous_specs"]
    w.write([{"op": "patch", "kind": "service", "id": "svc", "set": [
        (["spec"], kept[-1]), (["previous_specs"], kept[:-1]), (["spec_version"], s["spec_version"] + 1),
        (["update_status"], {"state": "rollback_started", "message": "manually requested rollback",
                             "started_at": w.now, "completed_at": None, "spec_version": s["spec_version"] + 1})]}])
    w.run(20)
    assert min(x["running"] for x in w.samples) >= 3
    assert w.samples[-1]["images"] == ["app:1"] * 3
    assert w.service["update_status"]["state"] == "rollback_completed"


@pytest.mark.parametrize("order", ["stop-first", "start-first"])
def test_a_global_service_is_updated_node_by_node(order):
    w = World(mode="global", parallelism=1, order=order)
    assert w.samples[-1]["running"] == 3
    w.update(image="app:2")
    w.run_until("completed")
    assert max(s["transition"] for s in w.samples) <= 1
    assert w.samples[-1]["images"] == ["app:2"] * 3
    if order == "start-first":
        assert min(s["running"] for s in w.samples) >= 3
    else:
        assert max(s["running"] for s in w.samples) <= 3
    per_node = {}
    for t in w.tasks():
        if t["desired_state"] == "running":
            per_node[t["node_id"]] = per_node.get(t["node_id"], 0) + 1
    assert per_node == {f"id-{n}": 1 for n in NODES}
