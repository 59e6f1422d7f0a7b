"""service logs' pieces: timestamps, Docker's prefix, the merge in time order, the reorder window, the
followers (new lines only, a failing node warned once), --since parsing and container log rotation."""

import asyncio

import pytest

from swarmctl.cli.units import UnitError, parse_since
from swarmctl.logformat import format_log_timestamp, parse_log_timestamp, prefix
from swarmctl.manager import logs
from swarmctl.runtime.base import ContainerSpec
from swarmctl.runtime.docker_engine import log_config


def test_timestamps_round_trip_and_order():
    a = parse_log_timestamp("2026-12-07T01:02:03.1Z")
    b = parse_log_timestamp("2026-12-07T01:02:03.099999999Z")
    assert a == b + 1 and a % 1_000_000_000 == 100_000_000
    assert parse_log_timestamp("2026-12-07T02:02:03+01:00") == parse_log_timestamp("2026-12-07T01:02:03Z")
    assert format_log_timestamp(a) == "2026-12-07T01:02:03.100000000Z"
    with pytest.raises(ValueError):
        parse_log_timestamp("hello")


def test_prefix_as_docker():
    ctx = {"service": "web", "slot": "2", "id": "abcdefghijklmnopqrstuvwxy", "node": "node3"}
    assert prefix(ctx) == "web.2.abcdefghijkl@node3"
    assert prefix(ctx, no_trunc=True) == "web.2.abcdefghijklmnopqrstuvwxy@node3"
    assert prefix(ctx, no_task_ids=True) == "web.2@node3"
    task = {"id": "t1", "slot": None, "node_id": "n1", "service_name": "agent"}
    assert logs.context(task, None) == {"service": "agent", "slot": "n1", "id": "t1", "node": "n1"}
    node = {"description": {"hostname": "node1"}}
    assert logs.context(dict(task, slot=3), node)["node"] == "node1"


def test_merge_in_timestamp_order_keeps_each_tasks_order():
    a = [(1, 0, "a1"), (5, 1, "a5"), (5, 2, "a5b"), (9, 3, "a9")]
    b = [(2, 0, "b2"), (5, 1, "b5"), (6, 2, "b6")]
    merged = [line for _, _, line in logs.merge([a, b])]
    assert merged == ["a1", "b2", "a5", "b5", "a5b", "b6", "a9"]
    assert list(logs.merge([])) == []


def test_reorder_window_holds_lines_and_releases_them_sorted():
    now = [100.0]
    buf = logs.ReorderBuffer(window=0.5, clock=lambda: now[0])
    buf.push(20, "late-node line")
    now[0] += 0.3
    buf.push(10, "earlier line arriving later")
    assert buf.pop_ready() == []  # 20 is still in its window
    now[0] += 0.25
    assert buf.pop_ready() == []  # the earliest (10) is still held, and keeps 20 back
    now[0] += 0.3
    assert buf.pop_ready() == ["earlier line arriving later", "late-node line"]
    buf.push(30, "x")
    assert buf.pop_ready(flush=True) == ["x"] and len(buf) == 0


def test_fetch_once_reports_failing_tasks_and_keeps_the_others():
    async def fetch(task, tail, since):
        if task["id"] == "down":
            raise ConnectionError("node node3 is down")
        return [(1, f"{task['id']} {tail}"), (2, "two")]
    entries, errors = asyncio.run(logs.fetch_once([{"id": "up"}, {"id": "down"}], fetch, 5, None))
    assert entries["up"] == [(1, 0, "up 5"), (2, 1, "two")] and entries["down"] == []
    assert errors == {"down": "node node3 is down"}


def test_follower_sends_only_new_lines_warns_once_and_ends_with_its_task():
    calls, out, warnings = [], [], []
    T = 1_796_605_323_000_000_000
    answers = [[(T + 10, "a"), (T + 20, "b")], ConnectionError("unreachable"), ConnectionError("unreachable"),
               [(T + 20, "b"), (T + 30, "c")], [(T + 30, "c")]]

    async def fetch(task, tail, since):
        calls.append((tail, since))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
    ended = iter([False, False, False, False, True])
    f = logs.Follower({"id": "t"}, fetch, lambda t, ts, line: out.append((ts, line)),
                      lambda t, why: warnings.append(why), lambda _id: next(ended), None, 2, None, interval=0)
    asyncio.run(f.run())
    assert out == [(T + 10, "a"), (T + 20, "b"), (T + 30, "c")]
    assert warnings == ["unreachable"]  # said once while it lasts
    assert calls[0] == (2, None) and calls[1][0] is None and abs(calls[1][1] - (T + 20 - 1_000_000) / 1e9) < 1e-5


def test_follower_without_timestamps_stops_after_one_fetch():
    out = []

    async def fetch(task, tail, since):
        return [(0, "simulated")]
    f = logs.Follower({"id": "t"}, fetch, lambda t, ts, line: out.append(line), lambda t, w: None,
                      lambda _id: False, None, None, None, interval=0)
    asyncio.run(asyncio.wait_for(f.run(), 2))
    assert out == ["simulated"]


def test_parse_since():
    assert parse_since("1700000000.5") == 1700000000.5
    assert parse_since("10m", now=1000.0) == 400.0
    assert parse_since("2026-12-07T01:02:03Z") == parse_log_timestamp("2026-12-07T01:02:03Z") / 1e9
    assert parse_since("2026-12-07") == parse_since("2026-12-07T00:00:00Z")
    with pytest.raises(UnitError, match="invalid --since 'yesterday'"):
        parse_since("yesterday")


def test_containers_log_to_rotated_json_file_unless_the_task_says_otherwise():
    spec = ContainerSpec(name="x", image="i")
    assert log_config(spec) == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    spec.log_options = {"max-size": "1m"}
    assert log_config(spec)["Config"] == {"max-size": "1m", "max-file": "3"}
    spec.log_driver, spec.log_options = "syslog", None
    assert log_config(spec) == {"Type": "syslog", "Config": {}}
