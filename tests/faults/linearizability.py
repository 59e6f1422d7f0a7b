"""Histories of register operations and a linearizability checker for them.

Written here because nothing on PyPI checks linearizability (Jepsen's Knossos and Porcupine are
Clojure and Go). The method is the usual one:

* **Model.** Every key is a register. A write sets it. A read returns its value, or None while the key
  is absent (the initial state).
* **P-compositionality** (Herlihy & Wing). A history is linearizable if and only if each key's
  sub-history is, so keys are checked one by one.
* **Search.** Wing & Gong's search, with Lowe's memoisation of (set of linearized ops, state), as
  Porcupine does it. Calls and returns sit in one time-ordered doubly linked list. The search takes
  the earliest call whose op can be applied to the state and lifts it out of the list. A return whose
  op is not yet linearized means a dead end: it backtracks. A (linearized set, state) pair that was
  already explored is never explored again.
* **Outcomes.** An op is `ok` (acknowledged, with the value read or written), `fail` (a definite
  refusal: it never took effect) or `unknown` (timeout, connection lost mid-request). An unknown write
  returns at +infinity, so it may take effect at any point after its invoke, or never. An unknown or
  failed read says nothing and is dropped. A failed write is dropped too, but a read of its value is
  a violation. An unknown write whose value nobody read is dropped. Doing so is sound: nothing observed
  lies between its effect and the next write, so with it or without it the verdict is the same.

Applied twice, lost and stale all show up as "not linearizable". A write applied twice makes its
value come back after a later write. A lost write is an acknowledged value that a later read does not
see. A stale read returns a value that was already overwritten before the read began.

The search is bounded by `max_steps` per key. A key that needs more steps is reported as undecided
(`ok=None`), and the callers treat that as a failure. Histories of a few thousand ops per key check
in well under a second when they are linearizable. A violation is usually found quickly too, because
reads prune almost every order.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

OK, FAIL, UNKNOWN, INVOKED = "ok", "fail", "unknown", "invoked"
WRITE, READ = "write", "read"
INF = math.inf
DEFAULT_MAX_STEPS = 2_000_000


@dataclass(slots=True)
class Op:
    id: int
    process: int
    kind: str               # WRITE or READ
    key: str
    value: object = None    # the value written; for a read, the value returned (None = absent)
    invoke: float = 0.0
    complete: float = INF   # INF while in flight and for unknown outcomes
    status: str = INVOKED   # OK, FAIL, UNKNOWN (INVOKED: never completed, counted as unknown)
    node: str = ""          # the manager the request went to
    error: str = ""
    answered: float = INF   # when the client had its answer or gave up, even for unknown outcomes

    def describe(self, t0: float = 0.0) -> str:
        end = "?" if self.complete == INF else f"{self.complete - t0:.3f}"
        what = f"wrote {self.value!r}" if self.kind == WRITE else f"read {self.value!r}"
        return (f"op {self.id} (client {self.process} on {self.node or '?'}, {self.status}) {what} "
                f"[{self.invoke - t0:.3f}, {end}]")


class History:
    """A thread-safe record of operations, each stamped with time.monotonic() at invoke and at completion.

    A client calls invoke() just before it sends a request and ok(), fail() or unknown() just after the
    answer (or its absence). A read of one record covers several keys: invoke_read() and ok_read() make
    one op per key, all with the same invoke and completion times."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.ops: list[Op] = []
        self.t0 = clock()
        self._lock = threading.Lock()

    def invoke(self, process: int, kind: str, key: str, value=None, node: str = "") -> Op:
        with self._lock:
            op = Op(len(self.ops), process, kind, key, value, self.clock(), node=node)
            self.ops.append(op)
            return op

    def invoke_read(self, process: int, keys, node: str = "") -> list[Op]:
        with self._lock:
            now = self.clock()
            ops = [Op(len(self.ops) + i, process, READ, key, None, now, node=node) for i, key in enumerate(keys)]
            self.ops.extend(ops)
            return ops

    def _finish(self, ops: list[Op], status: str, values=None, error: str = "") -> None:
        now = self.clock()
        for op in ops:
            if values is not None:
                op.value = values(op)
            op.complete = now if status in (OK, FAIL) else INF
            op.answered = now
            op.error = error
            op.status = status  # set last: a reader of ops sees a complete op or an in-flight one

    def ok(self, op: Op, value=None) -> None:
        self._finish([op], OK, (lambda o: value) if op.kind == READ else None)

    def ok_read(self, ops: list[Op], values: dict) -> None:
        self._finish(ops, OK, lambda o: values.get(o.key))

    def fail(self, op_or_ops, error: str = "") -> None:
        self._finish(op_or_ops if isinstance(op_or_ops, list) else [op_or_ops], FAIL, error=error)

    def unknown(self, op_or_ops, error: str = "") -> None:
        self._finish(op_or_ops if isinstance(op_or_ops, list) else [op_or_ops], UNKNOWN, error=error)

    def snapshot(self) -> list[Op]:
        with self._lock:
            return list(self.ops)

    def dump(self, path: str) -> None:
        """Write the history as JSON lines (times relative to t0; null for +infinity)."""
        with open(path, "w") as f:
            for op in self.snapshot():
                row = {name: getattr(op, name) for name in Op.__slots__}
                for name in ("invoke", "complete", "answered"):
                    row[name] = None if row[name] == INF else row[name] - self.t0
                f.write(json.dumps(row) + "\n")

    @staticmethod
    def load(path: str) -> list[Op]:
        ops = []
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                for name in ("invoke", "complete", "answered"):
                    row[name] = INF if row[name] is None else row[name]
                ops.append(Op(**row))
        return ops


@dataclass
class KeyResult:
    key: str
    ok: bool | None          # None: undecided within max_steps
    ops: int                 # ops the search considered (after dropping what cannot matter)
    steps: int
    message: str = ""


@dataclass
class Report:
    results: list[KeyResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.ok is True for r in self.results)

    @property
    def violations(self) -> list[KeyResult]:
        return [r for r in self.results if r.ok is not True]

    def summary(self, limit: int = 10) -> str:
        bad = self.violations
        lines = [f"{len(self.results)} keys checked in {self.seconds:.2f} s, {len(bad)} not linearizable"]
        lines += [f"  {r.key}: {'UNDECIDED' if r.ok is None else 'VIOLATION'}: {r.message}" for r in bad[:limit]]
        if len(bad) > limit:
            lines.append(f"  ... and {len(bad) - limit} more")
        return "\n".join(lines)


def check_history(ops: list[Op], initial=None, max_steps: int = DEFAULT_MAX_STEPS, t0: float = 0.0,
                  quick: bool = True) -> Report:
    """Check every key of a history on its own (P-compositionality)."""
    start = time.monotonic()
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    report = Report([check_register(key, by_key[key], initial, max_steps, t0, quick) for key in sorted(by_key)])
    report.seconds = time.monotonic() - start
    return report


def check_register(key: str, ops: list[Op], initial=None, max_steps: int = DEFAULT_MAX_STEPS,
                   t0: float = 0.0, quick: bool = True) -> KeyResult:
    """Is this one key's history linearizable for a register that starts at `initial`? `initial` is
    never written again (the load only adds labels). quick=False skips the quick rules (for tests)."""
    refused = {op.value for op in ops if op.kind == WRITE and op.status == FAIL}
    written = {op.value for op in ops if op.kind == WRITE and op.status != FAIL}
    reads = [op for op in ops if op.kind == READ and op.status == OK]
    for r in reads:
        if r.value != initial and r.value not in written:
            why = "a write that was refused" if r.value in refused else "no write"
            return KeyResult(key, False, 0, 0, f"{r.describe(t0)}: that value comes from {why}")
    found = _quick_violations(ops, reads, initial, t0) if quick else []
    if found:
        return KeyResult(key, False, len(ops), 0, found[0])
    seen = {r.value for r in reads}
    kept = [op for op in ops if op.kind == READ and op.status == OK
            or op.kind == WRITE and (op.status == OK or op.status != FAIL and op.value in seen)]
    return _search(key, kept, initial, max_steps, t0)


def stale_reads(ops: list[Op], initial=None) -> int:
    """How many acknowledged reads the quick rules refute (over all keys): a figure for reports."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    count = 0
    for key_ops in by_key.values():
        reads = [op for op in key_ops if op.kind == READ and op.status == OK]
        count += len(_quick_violations(key_ops, reads, initial, 0.0, limit=None))
    return count


def _quick_violations(ops: list[Op], reads: list[Op], initial, t0: float, limit: int | None = 1) -> list[str]:
    """Find the common violations without a search, with a clear message. Each rule is sound on its
    own: a value read must be written before the read ends, and it cannot be read again once a write
    that began after it was acknowledged has been acknowledged before the read began (a write takes
    effect once, between its invoke and its acknowledgement). Applies only to values written once.
    Returns up to `limit` messages (None: all)."""
    writers: dict = defaultdict(list)
    for op in ops:
        if op.kind == WRITE and op.status != FAIL:
            writers[op.value].append(op)
    acked = sorted((op for op in ops if op.kind == WRITE and op.status == OK), key=lambda op: op.complete)
    completes = [op.complete for op in acked]
    latest_start: list[Op] = []  # latest_start[j]: among acked[:j+1], the write invoked last
    for op in acked:
        latest_start.append(op if not latest_start or op.invoke > latest_start[-1].invoke else latest_start[-1])
    found: list[str] = []
    for r in reads:
        if limit is not None and len(found) >= limit:
            break
        source = writers.get(r.value, [])
        if r.value != initial and len(source) != 1:
            continue
        w = source[0] if r.value != initial else None
        if w is not None and r.complete < w.invoke:
            found.append(f"{r.describe(t0)} returned a value before it was written by {w.describe(t0)}")
            continue
        if w is not None and w.status != OK:
            continue  # an unknown write may take effect arbitrarily late
        j = bisect.bisect_left(completes, r.invoke) - 1  # acked writes that completed before r began
        if j < 0:
            continue
        later = latest_start[j]
        if later is not w and (w is None or later.invoke > w.complete):
            kind = "an acknowledged write lost" if r.value == initial else "a stale read (or a write applied twice)"
            origin = "the initial value" if w is None else f"the value of {w.describe(t0)}"
            found.append(f"{kind}: {r.describe(t0)} returned {origin}, but {later.describe(t0)} began after "
                         f"that and was acknowledged before the read began")
    return found


def _search(key: str, ops: list[Op], initial, max_steps: int, t0: float) -> KeyResult:
    n = len(ops)
    if n == 0:
        return KeyResult(key, True, 0, 0)
    events = []
    for i, op in enumerate(ops):
        events.append((op.invoke, 0, i))
        events.append((op.complete if op.status == OK else INF, 1, i))
    events.sort()  # at equal times calls come first: such ops overlap, which only allows more orders
    size = len(events)
    # node 0 is the head sentinel; nodes 1..size are the events; -1 ends the list
    nxt = list(range(1, size + 1)) + [-1]
    prv = [-1] + list(range(0, size))
    is_return = [False] * (size + 1)
    op_of = [0] * (size + 1)
    match = [0] * (size + 1)
    call_node = [0] * n
    for node, (_t, ret, i) in enumerate(events, start=1):
        is_return[node] = bool(ret)
        op_of[node] = i
        if ret:
            match[call_node[i]] = node
        else:
            call_node[i] = node
    is_write = [op.kind == WRITE for op in ops]
    value = [op.value for op in ops]
    acked = [op.status == OK for op in ops]
    remaining = sum(acked)  # acknowledged ops not yet linearized; unknown writes can always go last

    def lift(c: int) -> None:
        for x in (c, match[c]):
            p, q = prv[x], nxt[x]
            nxt[p] = q
            if q != -1:
                prv[q] = p

    def unlift(c: int) -> None:
        for x in (match[c], c):
            p, q = prv[x], nxt[x]
            nxt[p] = x
            if q != -1:
                prv[q] = x

    linearized = 0
    state = initial
    stack: list[tuple[int, object]] = []
    cache: set = set()
    steps = 0
    deepest = (-1, None, None)  # (depth, blocking op index, state there)
    entry = nxt[0]
    while entry != -1 and remaining:
        steps += 1
        if steps > max_steps:
            return KeyResult(key, None, n, steps, f"undecided after {max_steps} search steps ({n} ops)")
        i = op_of[entry]
        if not is_return[entry]:
            if is_write[i]:
                allowed, new_state = True, value[i]
            else:
                allowed, new_state = state == value[i], state
            if allowed:
                bits = linearized | (1 << i)
                memo = (bits, new_state)
                if memo not in cache:
                    cache.add(memo)
                    stack.append((entry, state))
                    linearized, state = bits, new_state
                    remaining -= acked[i]
                    lift(entry)
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:
            if len(stack) > deepest[0]:
                deepest = (len(stack), i, state)
            if not stack:
                break
            entry, state = stack.pop()
            j = op_of[entry]
            linearized &= ~(1 << j)
            remaining += acked[j]
            unlift(entry)
            entry = nxt[entry]
    if not remaining:
        return KeyResult(key, True, n, steps)
    return KeyResult(key, False, n, steps, _explain(ops, deepest, t0))


def _explain(ops: list[Op], deepest, t0: float) -> str:
    depth, i, state = deepest
    blocked = ops[i]
    text = (f"{blocked.describe(t0)} cannot be placed: after the longest linearizable prefix ({depth} ops) "
            f"the register holds {state!r}")
    # the acknowledged writes that had completed before the blocked op began, latest first: one of them
    # was overwritten by a value that should not be there (a stale read, a lost or a repeated write)
    before = sorted((op for op in ops if op.kind == WRITE and op.status == OK and op.complete < blocked.invoke),
                    key=lambda op: op.complete, reverse=True)[:2]
    if before:
        text += "; latest acknowledged writes before it: " + "; ".join(op.describe(t0) for op in before)
    return text
