"""The simulated runtime (a stand-in for the Docker engine used only by hollow nodes), alone and under the
real worker (agent/worker.py), which awaits its event-loop form instead of a thread per call."""

import asyncio
import collections
import random
import time

import pytest

from swarmctl.agent.worker import LABEL_NODE, LABEL_TASK, Worker
from swarmctl.runtime.base import ContainerNotFound, ContainerSpec, ImageNotFound, Runtime, RuntimeFailure
from swarmctl.runtime.simulated import START_FAILURE_EXIT, SimulatedRuntime
from swarmctl.state.records import can_move


def spec(name="web.1.abc", image="busybox", **labels):
    return ContainerSpec(name=name, image=image, labels={LABEL_NODE: "n1", **labels})


def test_is_a_runtime():
    assert issubclass(SimulatedRuntime, Runtime)
    with SimulatedRuntime() as rt:
        assert rt.ping()["Version"] == "simulated"


def test_create_start_running_with_latency_then_stop_exits_zero():
    rt = SimulatedRuntime(start_latency=0.05)
    cid = rt.create(spec())
    assert rt.inspect(cid).status == "created"
    began = time.monotonic()
    rt.start(cid)
    assert time.monotonic() - began >= 0.05
    state = rt.inspect(cid)
    assert state.running and state.started_at and state.exit_code is None
    rt.start(cid)  # already running: no error, no second start
    assert rt.starts == 1
    rt.stop(cid, timeout=1)
    state = rt.inspect(cid)
    assert state.status == "exited" and state.exit_code == 0 and state.finished_at
    lines = rt.logs(cid)
    assert any("created" in line for line in lines) and any("running" in line for line in lines)
    assert "exited with code 0" in lines[-1]
    assert rt.logs(cid, tail=1) == lines[-1:] and rt.logs(cid, tail=0) == []


def test_fail_rate_one_fails_every_start_and_leaves_the_container_exited():
    rt = SimulatedRuntime(start_latency=0, fail_rate=1.0)
    cid = rt.create(spec())
    with pytest.raises(RuntimeFailure, match="simulated runtime: start failed"):
        rt.start(cid)
    state = rt.inspect(cid)
    assert state.status == "exited" and state.exit_code == START_FAILURE_EXIT and "start failed" in state.error
    assert rt.failures == 1


def test_fail_rate_is_a_probability():
    rt = SimulatedRuntime(start_latency=0, fail_rate=0.3, rng=random.Random(7))
    failed = 0
    for i in range(400):
        cid = rt.create(spec(name=f"t{i}"))
        try:
            rt.start(cid)
        except RuntimeFailure:
            failed += 1
    assert 80 <= failed <= 160 and rt.failures == failed and rt.starts == 400


def test_images_and_errors():
    rt = SimulatedRuntime(images={"busybox"})
    assert rt.has_image("busybox") and not rt.has_image("nginx") and not rt.has_image("")
    with pytest.raises(ImageNotFound):
        rt.create(spec(image="nginx"))
    rt.create(spec(name="same"))
    with pytest.raises(RuntimeFailure, match="already in use"):
        rt.create(spec(name="same"))
    assert rt.inspect("nope") is None
    with pytest.raises(ContainerNotFound):
        rt.start("nope")
    with pytest.raises(ContainerNotFound):
        rt.logs("nope")
    rt.remove("nope")  # no error when already gone
    assert SimulatedRuntime().has_image("anything")  # no image list: every image is present
    with pytest.raises(ValueError):
        SimulatedRuntime(fail_rate=1.5)
    with pytest.raises(ValueError):
        SimulatedRuntime(start_latency=-1)


def test_list_filters_by_labels_and_remove_forgets_the_name():
    rt = SimulatedRuntime(start_latency=0)
    a = rt.create(spec(name="a", **{LABEL_TASK: "t1"}))
    b = rt.create(spec(name="b", **{LABEL_TASK: "t2"}))
    assert {c.id for c in rt.list({})} == {a, b}
    assert [c.id for c in rt.list({LABEL_TASK: "t2"})] == [b]
    assert rt.list({LABEL_TASK: "t3"}) == []
    rt.start(a)
    with pytest.raises(RuntimeFailure, match="cannot remove a running container"):
        rt.remove(a, force=False)
    rt.remove(a)
    assert rt.inspect(a) is None
    rt.create(spec(name="a"))  # the name is free again
    rt.close()
    with pytest.raises(RuntimeFailure, match="closed"):
        rt.list({})


def test_call_async_sleeps_on_the_loop_and_starts_in_parallel():
    rt = SimulatedRuntime(start_latency=0.2)
    ids = [rt.create(spec(name=f"c{i}")) for i in range(50)]

    async def scenario():
        began = time.monotonic()
        await asyncio.gather(*(rt.call_async(rt.start, cid) for cid in ids))
        return time.monotonic() - began
    elapsed = asyncio.run(scenario())
    assert 0.2 <= elapsed < 1.0  # 50 starts of 0.2 s each overlap: no thread, no serial sleep
    assert all(rt.inspect(cid).running for cid in ids)
    assert asyncio.run(rt.call_async(rt.list, {LABEL_TASK: "none"})) == []


def test_a_container_removed_while_starting_is_not_found():
    rt = SimulatedRuntime(start_latency=0.05)
    cid = rt.create(spec())

    async def scenario():
        start = asyncio.create_task(rt.call_async(rt.start, cid))
        await asyncio.sleep(0.01)
        rt.remove(cid)
        with pytest.raises(ContainerNotFound):
            await start
    asyncio.run(scenario())


# ---- under the real worker ---------------------------------------------------------------------
def _task(task_id, desired="running", state="assigned"):
    return {"id": task_id, "service_id": "s1", "service_name": "web", "slot": int(task_id[1:]), "node_id": "n1",
            "desired_state": desired, "status": {"state": state},
            "spec": {"image": "busybox", "resources": {"limits": {}}, "stop_grace_period": 1}}


class FakeManager:
    """The two session calls the worker makes, kept in memory (assignments and status reports)."""

    def __init__(self, tasks):
        self.tasks = {t["id"]: t for t in tasks}
        self.version = 0
        self.reports = []

    async def call(self, method, path, body=None, timeout=10):
        if path == "/v1/session/assignments":
            if body["since"] == str(self.version):
                await asyncio.sleep(0.05)
            return {"version": str(self.version), "tasks": [dict(t) for t in self.tasks.values()]}
        if path == "/v1/session/status":
            for update in body["updates"]:
                self.reports.append((update["task_id"], update["state"]))
                task = self.tasks[update["task_id"]]
                if can_move(task["status"]["state"], update["state"]):
                    task["status"] = {"state": update["state"]}
            self.version += 1
            return {"applied": len(body["updates"])}
        raise AssertionError(path)

    def states(self):
        return {t["id"]: t["status"]["state"] for t in self.tasks.values()}


async def _until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return False


def test_worker_runs_tasks_on_the_simulated_runtime_without_threads():
    rt = SimulatedRuntime(start_latency=0.1)
    manager = FakeManager([_task(f"t{i}") for i in range(20)])

    async def scenario():
        worker = Worker("n1", lambda: rt, manager.call, poll_wait=0.05)
        worker.start()
        try:
            assert await _until(lambda: set(manager.states().values()) == {"running"})
            assert len(rt.list({LABEL_NODE: "n1"})) == 20
            assert not worker._pool._threads  # every runtime call ran on the loop
            for task in manager.tasks.values():
                task["desired_state"] = "shutdown"
            manager.version += 1
            assert await _until(lambda: set(manager.states().values()) == {"shutdown"})
            assert await _until(lambda: rt.list({}) == [])
        finally:
            await worker.stop()
    asyncio.run(scenario())
    order = [state for task_id, state in manager.reports if task_id == "t3"]
    assert "running" in order and order[-1] == "shutdown"  # reports in one burst are merged per task


def test_worker_reports_failed_starts():
    rt = SimulatedRuntime(start_latency=0, fail_rate=1.0)
    manager = FakeManager([_task("t1"), _task("t2")])

    async def scenario():
        worker = Worker("n1", lambda: rt, manager.call, poll_wait=0.05)
        worker.start()
        try:
            assert await _until(lambda: set(manager.states().values()) == {"failed"})
        finally:
            await worker.stop()
    asyncio.run(scenario())
    assert ("t1", "running") not in manager.reports


def test_blocking_starts_from_many_threads_overlap():
    from concurrent.futures import ThreadPoolExecutor
    rt = SimulatedRuntime(start_latency=0.1)
    ids = [rt.create(spec(name=f"c{i}")) for i in range(16)]
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(rt.start, ids))
    assert time.monotonic() - began < 0.8  # as an engine: starts in parallel, not one after another
    assert all(rt.inspect(cid).running for cid in ids) and rt.starts == 16


def test_a_stopped_container_starts_again():
    rt = SimulatedRuntime(start_latency=0)
    cid = rt.create(spec())
    rt.start(cid)
    rt.stop(cid)
    rt.stop(cid)  # stopping an exited container changes nothing
    assert rt.inspect(cid).exit_code == 0
    rt.start(cid)
    state = rt.inspect(cid)
    assert state.running and state.exit_code is None and state.finished_at is None
    assert sum("running" in line for line in rt.logs(cid)) == 2


def test_stop_of_a_created_container_and_forced_remove_of_a_running_one():
    rt = SimulatedRuntime(start_latency=0)
    created = rt.create(spec(name="created"))
    rt.stop(created)
    assert rt.inspect(created).status == "exited"
    running = rt.create(spec(name="running"))
    rt.start(running)
    rt.remove(running, force=True)
    assert rt.inspect(running) is None and [c.id for c in rt.list({})] == [created]


def test_states_are_copies():
    rt = SimulatedRuntime(start_latency=0)
    cid = rt.create(spec(**{LABEL_TASK: "t1"}))
    state = rt.inspect(cid)
    state.labels[LABEL_TASK] = "changed"
    assert rt.inspect(cid).labels[LABEL_TASK] == "t1"
    assert rt.list({LABEL_TASK: "t1"})[0].id == cid


def test_container_ids_are_unique_and_engine_like():
    rt, other = SimulatedRuntime(), SimulatedRuntime()
    ids = {rt.create(spec(name=f"a{i}")) for i in range(100)} | {other.create(spec(name=f"a{i}")) for i in range(100)}
    assert len(ids) == 200 and all(len(i) == 64 and int(i, 16) >= 0 for i in ids)


def test_closed_runtime_refuses_everything():
    rt = SimulatedRuntime()
    cid = rt.create(spec())
    rt.close()
    for call in (rt.ping, lambda: rt.has_image("x"), lambda: rt.create(spec(name="y")), lambda: rt.start(cid),
                 lambda: rt.stop(cid), lambda: rt.remove(cid), lambda: rt.inspect(cid), lambda: rt.logs(cid)):
        with pytest.raises(RuntimeFailure, match="closed"):
            call()
    with pytest.raises(RuntimeFailure, match="closed"):
        asyncio.run(rt.call_async(rt.start, cid))


def test_call_async_runs_other_callables_inline():
    rt = SimulatedRuntime(start_latency=5)  # a start would take 5 s: nothing below may wait for it
    cid = rt.create(spec())

    async def scenario():
        began = time.monotonic()
        version = await rt.call_async(lambda: rt.ping())
        listed = await rt.call_async(rt.list, {})
        await rt.call_async(rt.remove, cid, True)
        return time.monotonic() - began, version, listed
    elapsed, version, listed = asyncio.run(scenario())
    assert elapsed < 0.5 and version["Version"] == "simulated" and [c.id for c in listed] == [cid]
    assert rt.inspect(cid) is None


def test_worker_with_a_partial_fail_rate_reports_both():
    rt = SimulatedRuntime(start_latency=0.01, fail_rate=0.5, rng=random.Random(3))
    manager = FakeManager([_task(f"t{i}") for i in range(30)])

    async def scenario():
        worker = Worker("n1", lambda: rt, manager.call, poll_wait=0.05)
        worker.start()
        try:
            assert await _until(lambda: set(manager.states().values()) <= {"running", "failed"}
                                and len(manager.states()) == 30)
        finally:
            await worker.stop()
    asyncio.run(scenario())
    states = collections.Counter(manager.states().values())
    assert states["running"] > 0 and states["failed"] > 0 and states["running"] + states["failed"] == 30
    assert rt.failures == states["failed"]



def test_worker_gathers_reports_for_the_window_the_manager_names():
    rt = SimulatedRuntime(start_latency=0.15)  # longer than the default window of 20 ms, shorter than 0.4 s

    class PacingManager(FakeManager):
        async def call(self, method, path, body=None, timeout=10):
            answer = await super().call(method, path, body, timeout)
            if path == "/v1/session/assignments":
                answer["report_window"] = 0.4
            return answer
    manager = PacingManager([_task(f"t{i}") for i in range(5)])
    calls = []
    original = manager.call

    async def counting(method, path, body=None, timeout=10):
        if path == "/v1/session/status":
            calls.append(time.monotonic())
        return await original(method, path, body, timeout)

    async def scenario():
        worker = Worker("n1", lambda: rt, counting, poll_wait=0.05)
        worker.start()
        try:
            assert await _until(lambda: set(manager.states().values()) == {"running"})
            assert worker._report_window == 0.4
        finally:
            await worker.stop()
    asyncio.run(scenario())
    # preparing, starting and running of all 5 tasks went out in one report, not three
    assert len(calls) == 1, calls
