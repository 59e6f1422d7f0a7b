"""Unit tests of the daemon's metrics (swarmctl/node/metrics.py) and the events hub (swarmctl/manager/events.py)."""

import asyncio
import time
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from swarmctl.cli.units import UnitError, parse_timestamp
from swarmctl.manager import events as ev
from swarmctl.node.metrics import InstrumentedRuntime, Metrics
from swarmctl.state.machine import StateMachine


class FakeStore:
    def __init__(self, machine):
        self.machine = machine

    def list(self, kind):
        return self.machine.list(kind)

    def is_leader(self):
        return True

    @property
    def index(self):
        return self.machine.index

    def members(self):
        return ["a", "b", "c"]

    def watch(self, callback):
        return self.machine.watch(callback)

    def count(self, kind):
        return self.machine.count(kind)

    def records(self):
        return self.machine.records()

    def watch_with_records(self, callback):
        return self.machine.watch_with_records(callback)


def put(machine, kind, record_id, record, ts=None):
    ts = time.time() if ts is None else ts
    return machine.apply_batch([(None, ts, [{"op": "put", "kind": kind, "id": record_id, "record": record}])])


def patch(machine, kind, record_id, sets, ts=None):
    ts = time.time() if ts is None else ts
    return machine.apply_batch([(None, ts, [{"op": "patch", "kind": kind, "id": record_id, "set": sets}])])


def delete(machine, kind, record_id):
    return machine.apply_batch([(None, time.time(), [{"op": "delete", "kind": kind, "id": record_id}])])


def families(metrics):
    return {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}


def test_state_gauges_are_counted_from_the_store_at_scrape_time():
    machine = StateMachine()
    store = FakeStore(machine)
    node = SimpleNamespace(manager=SimpleNamespace(store=store), node_id="n1", cluster_id="c1",
                           loop_lag=SimpleNamespace(last=0.01, max=0.2))
    metrics = Metrics(node)
    put(machine, "node", "n1", {"status": {"state": "ready"}, "spec": {}})
    put(machine, "node", "n2", {"status": {"state": "down"}, "spec": {}})
    put(machine, "service", "s1", {"spec": {"name": "web"}})
    for i, state in enumerate(("running", "running", "pending")):
        put(machine, "task", f"t{i}", {"status": {"state": state}})
    f = families(metrics)
    nodes = {s.labels["state"]: s.value for s in f["swarm_manager_nodes"].samples}
    assert nodes == {"unknown": 0, "ready": 1, "down": 1}
    tasks = {s.labels["state"]: s.value for s in f["swarm_manager_tasks_total"].samples}
    assert tasks["running"] == 2 and tasks["pending"] == 1 and tasks["failed"] == 0
    assert f["swarm_manager_services_total"].samples[0].value == 1
    assert f["swarm_manager_leader"].samples[0].value == 1
    assert f["swarm_node_manager"].samples[0].value == 1
    assert f["swarm_node_info"].samples[0].labels == {"node_id": "n1", "swarm_id": "c1"}
    assert f["swarmctl_event_loop_lag_seconds"].samples[0].value == 0.01
    patch(machine, "task", "t2", {"status.state": "running"})  # no bookkeeping: the next scrape sees it
    tasks = {s.labels["state"]: s.value for s in families(metrics)["swarm_manager_tasks_total"].samples}
    assert tasks["running"] == 3 and tasks["pending"] == 0


def test_a_worker_has_no_manager_gauges_and_registries_are_separate():
    node = SimpleNamespace(manager=None, node_id="w", cluster_id="c", loop_lag=None)
    a, b = Metrics(node), Metrics(node)
    a.heartbeats.inc()
    f = families(a)
    assert f["swarm_node_manager"].samples[0].value == 0
    assert "swarm_manager_nodes" not in f
    assert families(b)["swarmctl_dispatcher_heartbeats"].samples[0].value == 0  # b's own counter


def test_scheduling_delay_and_container_operations():
    metrics = Metrics()
    metrics.task_changed({"status": {"state": "pending"}},
                         {"status": {"state": "assigned"}, "created_at": 10.0, "updated_at": 10.5})
    metrics.task_changed({"status": {"state": "assigned"}},
                         {"status": {"state": "assigned"}, "created_at": 10.0, "updated_at": 11.0})
    f = families(metrics)
    count = [s for s in f["swarm_dispatcher_scheduling_delay_seconds"].samples if s.name.endswith("_count")]
    assert count[0].value == 1

    class Runtime:
        def start(self, cid):
            if cid == "bad":
                raise RuntimeError("no")

        def ping(self):
            return {"ok": True}

    rt = InstrumentedRuntime(Runtime(), metrics)
    rt.start("good")
    with pytest.raises(RuntimeError):
        rt.start("bad")
    assert rt.ping() == {"ok": True}
    ops = {(s.labels["operation"], s.labels["result"]): s.value
           for s in families(metrics)["swarmctl_agent_container_operations"].samples if s.name.endswith("_total")}
    assert ops == {("start", "ok"): 1, ("start", "error"): 1}


def service(name, image, replicas, state=None):
    record = {"spec": {"name": name, "replicas": replicas, "task": {"image": image}}}
    if state:
        record["update_status"] = {"state": state}
    return record


def test_events_carry_old_and_new_values_in_raft_order():
    async def scenario():
        machine = StateMachine()
        put(machine, "node", "n1", {"description": {"hostname": "node1"}, "status": {"state": "ready"},
                                    "spec": {"availability": "active", "role": "worker"}})
        hub = ev.EventHub(FakeStore(machine))
        hub.start()
        past, queue = hub.subscribe(None)
        assert past == []
        put(machine, "service", "s1", service("web", "busybox:1", 1))
        put(machine, "service", "s1", service("web", "busybox:1", 3))
        put(machine, "service", "s1", service("web", "busybox:2", 3, "updating"))
        patch(machine, "node", "n1", {"spec.availability": "drain"})
        patch(machine, "node", "n1", {"status.state": "down"})
        delete(machine, "service", "s1")
        await asyncio.sleep(0)
        got = []
        while not queue.empty():
            got.extend(change.event() for change in queue.get_nowait())
        hub.stop()
        return got, hub

    got, hub = asyncio.run(scenario())
    summary = [(e["Type"], e["Action"], e["Actor"]["Attributes"]) for e in got]
    assert summary == [
        ("service", "create", {"name": "web", "image.new": "busybox:1", "replicas.new": "1"}),
        ("service", "update", {"name": "web", "replicas.old": "1", "replicas.new": "3"}),
        ("service", "update", {"name": "web", "image.old": "busybox:1", "image.new": "busybox:2",
                               "updatestate.new": "updating"}),
        ("node", "update", {"name": "node1", "availability.old": "active", "availability.new": "drain"}),
        ("node", "update", {"name": "node1", "state.old": "ready", "state.new": "down"}),
        ("service", "remove", {"name": "web"}),
    ]
    assert [e["index"] for e in got] == sorted(e["index"] for e in got)
    assert all(e["scope"] == "swarm" and e["time"] == e["timeNano"] // 10 ** 9 for e in got)
    assert [c.event() for c in hub.history] == got


def test_history_is_bounded_and_replayed_since_a_time():
    async def scenario():
        machine = StateMachine()
        hub = ev.EventHub(FakeStore(machine), history=3)
        hub.start()
        base = time.time() - 100
        for i in range(5):
            put(machine, "config", f"c{i}", {"spec": {"name": f"c{i}"}}, ts=base + i)
        past, _queue = hub.subscribe(base + 3)
        aged = ev.EventHub(FakeStore(StateMachine()), history=100)
        aged.start()
        put(aged.store.machine, "config", "old", {"spec": {"name": "old"}}, ts=base - 1000)  # older than 15 min
        put(aged.store.machine, "config", "new", {"spec": {"name": "new"}})
        assert [c.id for c in aged.history] == ["new"]
        return hub, past

    hub, past = asyncio.run(scenario())
    assert [c.event()["Actor"]["ID"] for c in hub.history] == ["c2", "c3", "c4"]
    assert [c.event()["Actor"]["ID"] for c in past] == ["c3", "c4"]


def test_filters():
    task = {"Type": "task", "Action": "update", "scope": "swarm",
            "Actor": {"ID": "t1", "Attributes": {"service.name": "web", "service.id": "s1", "node.id": "n1"}}}
    svc = {"Type": "service", "Action": "create", "scope": "swarm", "Actor": {"ID": "s1", "Attributes": {"name": "web"}}}
    f = ev.parse_filters({"service": ["web"]})
    assert ev.matches(task, f) and ev.matches(svc, f)
    assert not ev.matches(svc, ev.parse_filters({"type": ["node"]}))
    assert ev.matches(svc, ev.parse_filters({"type": ["node", "service"], "event": ["create"]}))
    assert not ev.matches(svc, ev.parse_filters({"event": ["remove"]}))
    assert ev.matches(task, ev.parse_filters({"node": ["node1"]}), {"n1": "node1"})
    for bad, message in (({"colour": ["red"]}, "invalid filter 'colour'"), ({"type": ["volume"]}, "type=volume"),
                         ({"event": ["die"]}, "event=die")):
        with pytest.raises(ValueError, match=message):
            ev.parse_filters(bad)


def test_docker_time_forms():
    now = 1_800_000_000.0
    assert parse_timestamp("10m", now=now) == now - 600
    assert parse_timestamp("1h30m", now=now) == now - 5400
    assert parse_timestamp("1700000000.5") == 1700000000.5
    assert parse_timestamp("2026-12-07T01:02:03Z") == 1796605323.0
    assert parse_timestamp("2026-12-07T01:02:03.25+01:00") == 1796601723.25
    for bad in ("", "yesterday", "10q", "2026-13-40T00:00:00Z"):
        with pytest.raises(UnitError):
            parse_timestamp(bad)
    assert abs(parse_timestamp("0s") - time.time()) < 5


def test_mesh_stats_as_read_before_the_scrape():
    node = SimpleNamespace(manager=None, node_id="w", cluster_id="c", loop_lag=None)
    metrics = Metrics(node)
    metrics.mesh_stats = {
        "127.0.0.31:8080/tcp": {"proto": "tcp", "total": 5, "active": 1, "failed": 2, "retried": 1,
                                "backends": {"127.0.0.31:20001": {}, "127.0.0.32:20002": {}}},
        "127.0.0.31:8081/tcp": {"backends": 3},  # nft: only the routes
        "retried": 4,
    }
    f = families(metrics)
    key = "127.0.0.31:8080/tcp"
    assert {s.labels["listener"]: s.value for s in f["swarmctl_mesh_backends"].samples} == {key: 2,
                                                                                            "127.0.0.31:8081/tcp": 3}
    assert [s.value for s in f["swarmctl_mesh_connections"].samples if s.labels["listener"] == key] == [5]
    assert [s.value for s in f["swarmctl_mesh_backend_errors"].samples] == [2]
    assert [s.value for s in f["swarmctl_mesh_active_connections"].samples] == [1]
    assert sorted(s.value for s in f["swarmctl_mesh_retries"].samples) == [1, 4]


@pytest.mark.parametrize("value, message", [
    ("nope", "invalid --metrics-addr 'nope'"), ("127.0.0.1", "expected IP:PORT"),
    ("127.0.0.1:0", "port out of range"), ("localhost:9323", "expected an IP address"),
])
def test_metrics_addr_is_checked(value, message):
    from swarmctl.node.config import ConfigError, DaemonConfig
    config = DaemonConfig(data_dir="/nonexistent", metrics_addr=value)
    with pytest.raises(ConfigError, match=message):
        config.validate()
    assert DaemonConfig(data_dir="/x", metrics_addr="127.0.0.1:9323").metrics_for() == ("127.0.0.1", 9323)
    assert DaemonConfig(data_dir="/x").metrics_for() is None
