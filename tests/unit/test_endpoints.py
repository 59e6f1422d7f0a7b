"""The endpoint table on the leader (which tasks take traffic, deltas by long-poll) and what a node's mesh makes
of it (its proxy routes, its virtual IPs, its DNS zone)."""

from __future__ import annotations

import asyncio
import functools

import pytest

from swarmctl.manager.endpoints import EndpointTable, apply
from swarmctl.mesh.agent import routes, vip_for, zone_services
from swarmctl.state.machine import StateMachine
from swarmctl.state.records import default_task_spec, new_node
from tests.unit.test_orchestrator import LocalStore

PORTS = [{"protocol": "tcp", "target_port": 80, "published_port": 8080, "publish_mode": "ingress"}]


def _node(i, state="ready"):
    n = new_node(f"n{i}", "worker", f"node{i}", f"127.0.0.{10 + i}")
    n["status"]["state"] = state
    return n


def _service(name="web", ports=PORTS, index=1):
    spec = {"name": name, "mode": "replicated", "replicas": 3, "labels": {}, "task": default_task_spec(),
            "endpoint": {"mode": "vip", "ports": ports}}
    return {"id": f"svc-{name}", "spec": spec, "spec_version": 1, "vip_index": index}


def _task(i, node, state="running", desired="running", service="web"):
    return {"id": f"t{i}", "service_id": f"svc-{service}", "service_name": service, "slot": i, "node_id": node,
            "desired_state": desired, "spec": default_task_spec(), "spec_version": 1,
            "status": {"state": state, "message": "", "err": "", "timestamp": 0},
            "ports": [{"target": 80, "protocol": "tcp", "port": 20000 + i, "mode": "ingress", "published": 8080}]}


def run_async(fn):
    """The suite runs coroutines with asyncio.run (no asyncio plugin)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


def put(kind, record):
    return {"op": "put", "kind": kind, "id": record["id"], "record": record}


@pytest.fixture
def store():
    s = LocalStore(StateMachine())
    s.apply([put("node", _node(i)) for i in (1, 2, 3)] + [put("service", _service())]
            + [put("task", _task(i, f"n{i}")) for i in (1, 2, 3)])
    return s


def members(table, sid="svc-web"):
    return [(t["ip"], t["ports"][0]["port"]) for t in table.entries[sid]["tasks"]]


@run_async
async def test_running_tasks_are_endpoints_and_leave_when_told_to_stop(store):
    table = EndpointTable(store)
    table.start()
    try:
        assert members(table) == [("127.0.0.11", 20001), ("127.0.0.12", 20002), ("127.0.0.13", 20003)]
        first = await table.watch("n1", None, 0)
        assert first["full"] and len(first["services"]) == 1
        # a task told to stop (scale-down, rm, update) leaves before its container is stopped
        waiting = asyncio.create_task(table.watch("n1", first["version"], 5))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        store.apply([{"op": "patch", "kind": "task", "id": "t2", "set": [(["desired_state"], "shutdown")]}])
        answer = await asyncio.wait_for(waiting, 2)
        assert not answer["full"]
        assert [(t["ip"]) for t in answer["services"][0]["tasks"]] == ["127.0.0.11", "127.0.0.13"]
        # a node going down takes its tasks out
        store.apply([{"op": "patch", "kind": "node", "id": "n3", "set": [(["status", "state"], "down")]}])
        answer = await table.watch("n1", answer["version"], 2)
        assert [(t["ip"]) for t in answer["services"][0]["tasks"]] == ["127.0.0.11"]
        # service rm: the delta names it removed
        store.apply([{"op": "delete", "kind": "service", "id": "svc-web"}])
        answer = await table.watch("n1", answer["version"], 2)
        assert answer["removed"] == ["svc-web"]
        assert apply({"svc-web": {}}, answer) == {}
    finally:
        await table.stop()


@run_async
async def test_an_unknown_or_old_version_gets_the_whole_table(store):
    table = EndpointTable(store)
    table.start()
    try:
        assert (await table.watch("n1", "other-epoch:1", 5))["full"]
        version = (await table.watch("n1", None, 0))["version"]
        table.start()  # a new leadership term: a new epoch
        assert (await table.watch("n1", version, 5))["full"]
    finally:
        await table.stop()


@run_async
async def test_a_status_change_of_a_pending_task_wakes_no_node(store):
    table = EndpointTable(store)
    table.start()
    try:
        version = (await table.watch("n1", None, 0))["version"]
        store.apply([put("task", _task(9, "n1", state="assigned"))])
        started = asyncio.get_running_loop().time()
        answer = await table.watch("n1", version, 0.3)
        assert answer["version"] == version and not answer["services"]
        assert asyncio.get_running_loop().time() - started >= 0.25
    finally:
        await table.stop()


def test_routes_vips_and_zone_of_a_node():
    entry = {"id": "svc-web", "name": "web", "mode": "vip", "vip_index": 258, "ports": PORTS,
             "tasks": [{"id": "t1", "name": "web.1", "ip": "127.0.0.11", "ports": _task(1, "n1")["ports"]},
                       {"id": "t2", "name": "web.2", "ip": "127.0.0.12", "ports": _task(2, "n2")["ports"]}]}
    plain = {"id": "svc-db", "name": "db", "mode": "vip", "vip_index": 2, "ports": [],
             "tasks": [{"id": "t3", "name": "db.1", "ip": "127.0.0.13", "ports": []}]}
    assert vip_for("127.0.0.14", 258) == "127.14.1.2"
    assert vip_for("127.0.0.14", None) is None
    table = routes([entry, plain], "127.0.0.14")
    assert table == [
        {"listen": ["127.0.0.14", 8080], "proto": "tcp", "backends": [["127.0.0.11", 20001], ["127.0.0.12", 20002]],
         "source": "127.0.0.14"},
        {"listen": ["127.14.1.2", 80], "proto": "tcp", "backends": [["127.0.0.11", 20001], ["127.0.0.12", 20002]],
         "source": "127.0.0.14"}]
    zone = {z["name"]: z for z in zone_services([entry, plain], "127.0.0.14")}
    assert zone["web"]["vip"] == "127.14.1.2" and zone["web"]["mode"] == "vip"
    assert zone["db"]["vip"] is None and zone["db"]["mode"] == "dnsrr"  # nothing forwards to a VIP of db
    assert zone["web"]["tasks"][0]["ports"] == [{"target": 80, "protocol": "tcp", "port": 20001}]
