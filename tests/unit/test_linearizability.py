"""The fault suite's linearizability checker (tests/faults/linearizability.py) on hand-made histories."""

import random

from tests.faults.linearizability import (FAIL, INF, OK, READ, UNKNOWN, WRITE, History, Op, check_history,
                                          check_register)


class H:
    """Builds a history by hand: times are given, not measured."""

    def __init__(self):
        self.ops: list[Op] = []

    def _add(self, kind, key, value, start, end, status, process):
        op = Op(len(self.ops), process, kind, key, value, float(start),
                INF if end is None else float(end), status, node="m1")
        self.ops.append(op)
        return self

    def w(self, value, start, end, key="k", process=0):
        return self._add(WRITE, key, value, start, end, OK, process)

    def r(self, value, start, end, key="k", process=1):
        return self._add(READ, key, value, start, end, OK, process)

    def w_unknown(self, value, start, key="k", process=0):
        return self._add(WRITE, key, value, start, None, UNKNOWN, process)

    def w_fail(self, value, start, end, key="k", process=0):
        return self._add(WRITE, key, value, start, end, FAIL, process)

    def r_unknown(self, value, start, key="k", process=1):
        return self._add(READ, key, value, start, None, UNKNOWN, process)

    def check(self, **kwargs):
        """The verdict, which the quick rules and the search alone must agree on."""
        report = check_history(self.ops, **kwargs)
        searched = check_history(self.ops, quick=False, **kwargs)
        assert [r.ok for r in report.results] == [r.ok for r in searched.results], searched.summary()
        return report


def test_empty_and_initial_reads():
    assert H().check().ok
    assert H().r(None, 0, 1).r(None, 2, 3).check().ok
    assert not H().r("x", 0, 1).check().ok  # nobody wrote x


def test_sequential_history_is_linearizable():
    h = H().w("a", 0, 1).r("a", 2, 3).w("b", 4, 5).r("b", 6, 7).r("b", 8, 9)
    report = h.check()
    assert report.ok, report.summary()


def test_stale_read_is_caught():
    # b was acknowledged before the read began; the read still returns a
    h = H().w("a", 0, 1).w("b", 2, 3).r("a", 4, 5)
    report = h.check()
    assert not report.ok
    assert "stale read" in report.violations[0].message and "op 2" in report.violations[0].message
    # the same order hidden from the quick rules (b overlaps a): only the search can refute it
    h = H().w("a", 0, 2).w("b", 1, 3, process=2).r("b", 4, 5).r("a", 6, 7, process=3)
    report = h.check()
    assert not report.ok and "cannot be placed" in report.violations[0].message, report.summary()


def test_lost_write_is_caught():
    # an acknowledged write that a later read (on any manager) does not see
    h = H().w("a", 0, 1).r(None, 2, 3)
    assert not h.check().ok
    h = H().w("a", 0, 1).w("b", 2, 3, process=2).r("a", 10, 11)  # b lost, a survives
    assert not h.check().ok


def test_write_applied_twice_is_caught():
    # a is applied, then b, then a again (a retried write applied a second time)
    h = H().w("a", 0, 1).w("b", 2, 3).r("b", 4, 5).r("a", 6, 7)
    assert not h.check().ok
    # the same with a's first attempt unknown: one unknown write still takes effect only once
    h = H().w_unknown("a", 0).r("a", 1, 2).w("b", 3, 4).r("b", 5, 6).r("a", 7, 8)
    assert not h.check().ok


def test_concurrent_overlaps():
    # a overlaps everything, so it may take effect after b: reads b then a are fine
    assert H().w("a", 0, 10).w("b", 1, 3, process=2).r("b", 4, 5).r("a", 6, 7).check().ok
    # but once a was seen after b, b cannot come back (b returned before a was read)
    assert not H().w("a", 0, 10).w("b", 1, 3, process=2).r("a", 4, 5).r("b", 6, 7).check().ok
    # a read overlapping a write may see either value, but two later reads cannot go back in time
    assert H().w("a", 0, 1).w("b", 2, 6).r("a", 3, 4).r("b", 5, 7).check().ok
    assert not H().w("a", 0, 1).w("b", 2, 6).r("b", 3, 4, process=1).r("a", 4.5, 5, process=3).check().ok
    # two concurrent reads during a write may disagree, in the order the write allows
    assert H().w("a", 0, 1).w("b", 2, 9).r("a", 3, 8).r("b", 4, 5, process=3).check().ok


def test_unknown_write_takes_effect_late_or_never():
    # never: nobody read it
    assert H().w_unknown("a", 0).r(None, 1, 2).check().ok
    # late: after a later acknowledged write of another client
    assert H().w_unknown("a", 0).w("b", 1, 2, process=2).r("b", 3, 4).r("a", 5, 6).check().ok
    # but never before it was invoked
    assert not H().r("a", 0, 1).w_unknown("a", 2).check().ok


def test_refused_write_must_not_take_effect():
    report = H().w_fail("a", 0, 1).r("a", 2, 3).check()
    assert not report.ok and "refused" in report.violations[0].message
    assert H().w_fail("a", 0, 1).r(None, 2, 3).check().ok


def test_unknown_and_failed_reads_say_nothing():
    h = H().w("a", 0, 1).r_unknown("zzz", 2)
    h.ops.append(Op(len(h.ops), 1, READ, "k", "zzz", 3.0, 4.0, FAIL))
    assert h.check().ok


def test_keys_are_checked_separately():
    h = H().w("a", 0, 1, key="x").w("b", 0, 1, key="y").r("a", 2, 3, key="x").r(None, 2, 3, key="y")
    report = h.check()
    assert [r.key for r in report.results] == ["x", "y"]
    assert [r.ok for r in report.results] == [True, False]


def test_step_budget_reports_undecided():
    h = H()
    for i in range(30):  # 30 mutually concurrent writes, then reads that pin an impossible order
        h.w(f"v{i}", 0, 100, process=i)
    h.r("v0", 101, 102).r("v1", 103, 104).r("v0", 105, 106)
    result = check_register("k", h.ops, max_steps=1000)
    assert result.ok is None and "undecided" in result.message


def _generated(ops_per_key: int, clients: int, seed: int, lose_one: bool = False):
    """A history produced by simulating a real linearizable register under concurrent clients, with
    some unknown outcomes (half of which still took effect)."""
    rng = random.Random(seed)
    history = History(clock=lambda: 0.0)
    state = {}
    now = 0.0
    inflight = []  # (end time, op, effect time, value to apply or None)
    counter = 0
    while counter < ops_per_key or inflight:
        busy = {op.process for _end, op, _eff, _v in inflight}
        if counter < ops_per_key and len(busy) < clients:
            process = rng.choice([p for p in range(clients) if p not in busy])
            start = now
            effect = start + rng.uniform(0.001, 0.01)
            end = effect + rng.uniform(0.001, 0.01)
            if rng.random() < 0.5:
                op = Op(len(history.ops), process, WRITE, "k", f"c{process}-{counter}", start)
            else:
                op = Op(len(history.ops), process, READ, "k", None, start)
            history.ops.append(op)
            inflight.append((end, op, effect, None))
            counter += 1
            now += rng.uniform(0.0005, 0.004)
            continue
        inflight.sort(key=lambda item: item[2])
        end, op, effect, _ = inflight.pop(0)
        roll = rng.random()
        if op.kind == WRITE:
            if roll < 0.03:  # unknown: half take effect, half never do
                op.status, op.complete = UNKNOWN, INF
                if roll < 0.015:
                    state["k"] = op.value
            else:
                state["k"] = op.value
                op.status, op.complete = OK, end
        else:
            op.value, op.status, op.complete = state.get("k"), OK, end
        now = max(now, effect)
    if lose_one:  # every write after the first one vanishes: a final read sees the first value again
        first = next(op for op in history.ops if op.kind == WRITE and op.status == OK)
        history.ops.append(Op(len(history.ops), 0, READ, "k", first.value, now + 1, now + 2, OK))
    return history.ops


def test_thousands_of_ops_per_key_check_within_a_step_budget():
    ops = _generated(4000, clients=8, seed=7)
    result = check_register("k", ops, max_steps=200_000)
    assert result.ok is True, result.message
    assert result.steps < 200_000


def test_generated_history_with_a_lost_write_fails():
    ops = _generated(2000, clients=8, seed=11, lose_one=True)
    result = check_register("k", ops, max_steps=500_000)
    assert result.ok is False, result.message
