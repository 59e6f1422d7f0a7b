"""The dispatcher: node sessions on the leader.

Heartbeats are kept in memory; only transitions (ready <-> down, a changed address) are written to
Raft, so a thousand nodes heartbeating do not turn into a thousand writes per period. A new leader
gives every node a fresh grace period before it can be marked down, as Swarm does after an election.

At scale (issue 8): a heartbeat costs O(1) (the manager list it answers is cached, the node's deadline
goes into a heap, sessions.Deadlines, and Down detection pops the expired deadlines instead of scanning
every node); assignments go out as deltas with a sequence number (sessions.AssignmentLog); an agent's
status report is not a change of its assignments, so it wakes nothing; status reports of all nodes are
gathered into few Raft writes (StatusBatcher), and a report that changes nothing writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time

from swarmctl.errors import Unauthorized, Unavailable
from swarmctl.manager import secrets
from swarmctl.manager.writes import commit
from swarmctl.node import looplag
from swarmctl.state.raft import RaftStore
from swarmctl.state.records import can_move, is_terminal, new_id, state_index
from swarmctl.asyncutil import cancel, wait_event
from swarmctl.manager.sessions import AssignmentLog, Deadlines

log = logging.getLogger(__name__)

MISSED_PERIODS = 3
# the fields of a status report copied into the task's status besides its state and message
STATUS_KEYS = ("err", "container_id", "exit_code", "health", "health_output")
BATCH_MAX_ITEMS = 10_000  # status reports per Raft write at most (swarmkit's figure)
ENTRY_MAX_OPS = 200       # changes per Raft entry at most (swarmkit's MaxChangesPerTransaction)
BATCH_MAX_DELAY = 0.1     # a report waits at most this long for others to join its write
# A node that has just joined has this long for its first heartbeat (its agent is still starting, and in a join
# storm its TLS handshakes queue up); after that, MISSED_PERIODS periods as usual. It shows as Unknown meanwhile.
JOIN_GRACE = 60.0
ASSIGNMENT_MIN_INTERVAL = 0.25  # s between two answers to one node's long-poll: a burst's changes go out together
# ...and more with more nodes: while changes keep coming, all nodes' answers together stay near ANSWERS_PER_SECOND
# (each answer also brings a status report back). At 1,000 nodes, 0.25 s made 4,000 answers and as many reports per
# second during a 100k-task create, and the leader's loop spent all its time in HTTP and TLS.
ANSWERS_PER_SECOND = 600
ASSIGNMENT_MAX_INTERVAL = 2.0
REPORT_WINDOW = 0.02  # s an agent gathers state changes into one report, in a small cluster
HEARTBEAT_COMMIT_WAIT = 1.0  # s a heartbeat waits for the write of its node's change before it answers anyway
# After an election every node must find the new leader and open new TLS connections to it; a thousand nodes doing
# so at once took the new leader over 15 s on the bench machine, and the fixed grace of MISSED_PERIODS periods marked
# 785 live nodes Down. So the grace grows by this much per node (1,000 nodes: 30 s more).
RECONNECT_GRACE_PER_NODE = 0.03
# The dispatcher's clock does not count the time the leader's own loop was stalled beyond this tolerance: heartbeats
# that were waiting in its sockets meanwhile are not the nodes' fault (a saturated leader once marked 645 live nodes
# Down at once). A leader that cannot listen does not judge.
DOWN_CHECK_INTERVAL = 0.1
STALL_TOLERANCE = 0.1


class StatusBatcher:
    """Gathers the status reports of all nodes into few Raft writes, as swarmkit's dispatcher does.

    While no write is in flight a report is written at once (no added latency when idle); while one is
    in flight, reports pile up and go out together when it ends, BATCH_MAX_ITEMS at a time. The reports
    are checked against the store when their write is planned, so two reports of one task in a batch
    keep the later state and a report that moves nothing writes nothing."""

    def __init__(self, store: RaftStore, max_items: int = BATCH_MAX_ITEMS, max_delay: float = BATCH_MAX_DELAY):
        self.store = store
        self.max_items = max_items
        self.max_delay = max_delay
        self._queue: list[tuple[str, list[dict], asyncio.Future]] = []
        self._queued_items = 0
        self._kick = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.writes = 0  # Raft writes made (for tests and benches)

    def start(self) -> None:
        self._task = asyncio.create_task(looplag.run_timed(self._run(), "StatusBatcher"), name="status-batcher")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        for _node, _updates, future in self._queue:
            if not future.done():
                future.set_exception(Unavailable("the dispatcher stopped; report again"))
        self._queue.clear()
        self._queued_items = 0

    async def submit(self, node_id: str, updates: list[dict]) -> int:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((node_id, updates, future))
        self._queued_items += len(updates)
        self._kick.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            started = time.monotonic()
            while self._queue:
                batch, items = [], 0
                while self._queue and (not batch or items + len(self._queue[0][1]) <= self.max_items):
                    entry = self._queue.pop(0)
                    batch.append(entry)
                    items += len(entry[1])
                self._queued_items -= items
                try:
                    counts, ops = self.plan(batch)
                    if ops:  # one batch, in Raft entries of at most ENTRY_MAX_OPS changes, in flight together
                        chunks = [ops[i:i + ENTRY_MAX_OPS] for i in range(0, len(ops), ENTRY_MAX_OPS)]
                        await asyncio.gather(*(commit(self.store, chunk) for chunk in chunks))
                        self.writes += len(chunks)
                except asyncio.CancelledError:
                    for _n, _u, future in batch:
                        if not future.done():
                            future.set_exception(Unavailable("the dispatcher stopped; report again"))
                    raise
                except Exception as exc:  # no quorum, lost leadership: every reporter retries
                    for _n, _u, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_n, _u, future), count in zip(batch, counts):
                    if not future.done():
                        future.set_result(count)
                if time.monotonic() - started > self.max_delay:
                    await asyncio.sleep(0)  # let the loop serve others between long runs of writes
                    started = time.monotonic()

    def plan(self, batch: list[tuple[str, list[dict], asyncio.Future]]) -> tuple[list[int], list[dict]]:
        """The ops of a batch and how many updates of each entry were taken. Only forward moves of the
        reporter's own tasks; per task the furthest state of the batch wins. A report of the state the task is
        in counts only when it brings a new container health (a starting container whose healthcheck runs):
        it changes the health fields and nothing else, so the state's timestamp stays."""
        best: dict[str, tuple[int, dict]] = {}
        health: dict[str, dict] = {}
        counts = []
        for index, (node_id, updates, _future) in enumerate(batch):
            count = 0
            for update in updates:
                task = self.store.get("task", update["task_id"])
                if task is None or task.get("node_id") != node_id:
                    continue
                if not can_move(task["status"]["state"], update["state"]):
                    if update["state"] == task["status"]["state"] and not is_terminal(update["state"]) \
                            and update.get("health") and update["health"] != task["status"].get("health"):
                        health[task["id"]] = update
                        count += 1
                    continue
                count += 1
                held = best.get(task["id"])
                if held is None or state_index(update["state"]) > state_index(held[1]["state"]):
                    best[task["id"]] = (index, update)
            counts.append(count)
        now = time.time()
        ops = []
        for task_id, (_index, update) in best.items():
            sets = [(["status", "state"], update["state"]), (["status", "timestamp"], now),
                    (["status", "message"], update.get("message") or update["state"])]
            for key in STATUS_KEYS:
                if update.get(key) is not None:
                    sets.append((["status", key], update[key]))
            if update["state"] == "running":  # when it came up: the updater's delay and monitor count from here
                sets.append((["status", "running_at"], now))
            ops.append({"op": "patch", "kind": "task", "id": task_id, "missing_ok": True, "set": sets})
        for task_id, update in health.items():
            if task_id not in best:
                sets = [(["status", key], update[key]) for key in ("health", "health_output")
                        if update.get(key) is not None]
                ops.append({"op": "patch", "kind": "task", "id": task_id, "missing_ok": True, "set": sets})
        return counts, ops


class NodeUpdateBatcher:
    """Gathers the node-record changes that heartbeats bring (down -> ready, a new address, a renewed
    certificate) into few Raft writes, as swarmkit's dispatcher batches node updates.

    A thousand nodes joining, or coming back after an election, would otherwise make a thousand writes,
    each heartbeat waiting for its own commit; under load those waits ran past the agents' timeout, whose
    retries then missed the Down deadline (bench/scale.py at 1,000 nodes). A change is planned against the
    store when its write is made: what is already true writes nothing, and the later change of a field wins."""

    def __init__(self, store: RaftStore):
        self.store = store
        self._pending: dict[str, dict[tuple, object]] = {}
        self._waiting: dict[str, list[asyncio.Future]] = {}
        self._kick = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.writes = 0

    def start(self) -> None:
        self._task = asyncio.create_task(looplag.run_timed(self._run(), "NodeUpdateBatcher"),
                                         name="node-update-batcher")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        self._fail(list(self._waiting), Unavailable("the dispatcher stopped"))
        self._pending.clear()

    def submit(self, node_id: str, sets: list[tuple[list, object]]) -> asyncio.Future:
        """Queue the changes; the future is done once they are committed (or failed)."""
        fields = self._pending.setdefault(node_id, {})
        for path, value in sets:
            fields[tuple(path)] = value
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(node_id, []).append(future)
        self._kick.set()
        return future

    def _fail(self, node_ids, exc: BaseException) -> None:
        for node_id in node_ids:
            for future in self._waiting.pop(node_id, []):
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: a heartbeat that stopped waiting must not log it

    def plan(self, pending: dict[str, dict[tuple, object]]) -> list[dict]:
        ops = []
        for node_id, fields in pending.items():
            node = self.store.get("node", node_id)
            if node is None:
                continue
            sets = []
            for path, value in fields.items():
                current = node
                for key in path:
                    current = current.get(key) if isinstance(current, dict) else None
                if current != value:
                    sets.append((list(path), value))
            if sets:
                ops.append({"op": "patch", "kind": "node", "id": node_id, "missing_ok": True, "set": sets})
        return ops

    async def _run(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            await asyncio.sleep(0.02)  # let the heartbeats of a burst join this write
            pending, self._pending = self._pending, {}
            node_ids = list(pending)
            waiting = {n: self._waiting.pop(n, []) for n in node_ids}
            try:
                ops = self.plan(pending)
                chunks = [ops[i:i + ENTRY_MAX_OPS] for i in range(0, len(ops), ENTRY_MAX_OPS)]
                await asyncio.gather(*(commit(self.store, chunk) for chunk in chunks))
                self.writes += len(chunks)
            except asyncio.CancelledError:
                for node_id, futures in waiting.items():  # stop() fails them
                    self._waiting.setdefault(node_id, []).extend(futures)
                raise
            except Exception as exc:  # no quorum, lost leadership: the next heartbeat brings the change again
                log.debug("writing %d node update(s) failed: %s", len(node_ids), exc)
                for futures in waiting.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                            future.exception()  # retrieved: a heartbeat that stopped waiting must not log it
                continue
            for futures in waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_result(None)


class Dispatcher:
    metrics = None  # swarmctl.node.metrics.Metrics (heartbeats answered), when the daemon has --metrics-addr
    def __init__(self, store: RaftStore, default_period: float):
        self.store = store
        self.default_period = default_period
        self._last_seen: dict[str, float] = {}
        self._raft_running: dict[str, bool] = {}  # what each manager's last heartbeat said of its replica
        self._task: asyncio.Task | None = None
        self._since = time.monotonic()
        self._epoch = ""
        self._logs: dict[str, AssignmentLog] = {}
        self._waiters: dict[str, asyncio.Event] = {}
        self._cancel_watch = None
        self._deadlines = Deadlines()
        self._managers: list[str] | None = None  # cached manager addresses, dropped on a manager's change
        self._manager_ids: set[str] = set()
        self.batcher = StatusBatcher(store)
        self.node_updates = NodeUpdateBatcher(store)
        self._answered: dict[str, float] = {}  # node id -> when its last assignments answer was made
        self._stalled = 0.0  # s of the leader's own loop stalls, which the deadlines' clock does not count

    def now(self) -> float:
        """The clock of the deadlines: monotonic time less the leader's own loop stalls (see STALL_TOLERANCE)."""
        return time.monotonic() - self._stalled

    # ---- life --------------------------------------------------------------------------------
    def start(self) -> None:
        self._since = time.monotonic()
        self._last_seen.clear()
        self._raft_running.clear()
        self._epoch = new_id(8)  # assignment sequences restart with every leadership term
        self._logs.clear()
        self._managers = None
        self._deadlines.clear()
        self._stalled = 0.0
        nodes = self.store.list("node")
        begin = self.now() + RECONNECT_GRACE_PER_NODE * len(nodes)
        for node in nodes:  # a fresh grace for every node after an election, longer with more nodes
            self._deadlines.set(node["id"], begin + self._grace(node))
        loop = asyncio.get_running_loop()

        def on_events(_index, events):
            loop.call_soon_threadsafe(self._on_events, events)
        self._cancel_watch = self.store.watch(on_events)
        self._task = asyncio.create_task(looplag.run_timed(self._watch_down(), "DownDetection"), name="dispatcher")
        self.batcher.start()
        self.node_updates.start()

    def _on_events(self, events) -> None:
        if any(e[0] == "reset" for e in events):
            self._epoch = new_id(8)  # a restored snapshot: every node gets a full list
            self._logs.clear()
            self._managers = None
            for waiter in self._waiters.values():
                waiter.set()
            self._waiters.clear()
            return
        for action, kind, record_id, record in events:
            if kind == "task" and record is not None:
                node_id = record.get("node_id")
                log_ = self._logs.get(node_id) if node_id else None
                if log_ is None:
                    continue  # the node has no session with this leader yet: its first answer is a full list
                if log_.observe(record_id, None if action == "delete" else record):
                    waiter = self._waiters.pop(node_id, None)
                    if waiter is not None:
                        waiter.set()
            elif kind == "node":
                if record_id in self._manager_ids or (record is not None and record["spec"]["role"] == "manager"):
                    self._managers = None
                if action == "create":
                    self._deadlines.set(record_id, self.now() + max(self._grace(record), JOIN_GRACE))
                elif action == "delete":
                    self._deadlines.discard(record_id)
                    self._logs.pop(record_id, None)
                    self._answered.pop(record_id, None)

    def manager_addrs(self) -> list[str]:
        """The managers' addresses, computed again only after a manager's record changed."""
        if self._managers is None:
            managers = [n for n in self.store.list("node") if n["spec"]["role"] == "manager"]
            self._manager_ids = {n["id"] for n in managers}
            self._managers = sorted(n["description"]["addrs"]["manager"] for n in managers)
        return self._managers

    async def stop(self) -> None:
        if self._cancel_watch:
            self._cancel_watch()
            self._cancel_watch = None
        for waiter in self._waiters.values():
            waiter.set()
        self._waiters.clear()
        await self.batcher.stop()
        await self.node_updates.stop()
        await cancel(self._task)
        self._task = None

    # ---- sessions ----------------------------------------------------------------------------
    def _grace(self, node: dict) -> float:
        return MISSED_PERIODS * (node["description"].get("heartbeat_period") or self.default_period)

    def swarm_heartbeat_period(self) -> float | None:
        """The cluster's dispatcher_heartbeat_period (seconds), or None: each node's own --heartbeat-period."""
        clusters = self.store.list("cluster")
        return ((clusters[0].get("spec") or {}).get("dispatcher_heartbeat_period")) if clusters else None

    async def heartbeat(self, node_id: str, info: dict, swarm_period: float | None = None) -> dict:
        """Record a heartbeat; returns the node record. A status change goes to the NodeUpdateBatcher, and the
        answer waits for its write at most HEARTBEAT_COMMIT_WAIT: the heartbeat itself is kept in memory, so
        a slow Raft write never makes a live node miss its deadline."""
        node = self.store.get("node", node_id)
        if node is None and time.monotonic() - self._since < 3 * self.default_period:
            # a new leader may not have applied the latest joins yet: never revoke in that window
            raise Unavailable("the manager is still catching up; try again")
        if node is None:
            raise Unauthorized(f"node {node_id} is not part of this swarm (it was removed); "
                               "its certificate is no longer accepted")
        self._last_seen[node_id] = time.monotonic()
        if self.metrics is not None:
            self.metrics.heartbeats.inc()
        self._raft_running[node_id] = bool(info.get("raft_running"))
        period = info.get("heartbeat_period")
        # swarm_period: the cluster's dispatcher_heartbeat_period, which the caller (the heartbeat route) tells the
        # node in its answer; a node told the swarm's period in this answer beats at it from its next beat on: the longer of the two
        # counts until then
        self._deadlines.set(node_id, self.now() + MISSED_PERIODS * max(
            period or node["description"].get("heartbeat_period") or self.default_period, swarm_period or 0))
        sets = []
        if node["status"]["state"] != "ready":
            sets += [(["status", "state"], "ready"), (["status", "message"], "")]
        if period and node["description"].get("heartbeat_period") != period:
            sets.append((["description", "heartbeat_period"], period))
        for key in ("hostname", "tls"):
            if info.get(key) and node["description"].get(key) != info[key]:
                sets.append((["description", key], info[key]))
        if info.get("addr") and node["status"].get("addr") != info["addr"]:
            sets.append((["status", "addr"], info["addr"]))
        if sets:
            if self.node_updates._task is None:  # not started (a unit test driving the dispatcher directly)
                await commit(self.store, [{"op": "patch", "kind": "node", "id": node_id, "set": sets}])
            else:
                written = self.node_updates.submit(node_id, sets)
                try:
                    await asyncio.wait_for(asyncio.shield(written), HEARTBEAT_COMMIT_WAIT)
                except asyncio.TimeoutError:
                    pass  # written later; the deadline above already counts this heartbeat
                except Exception as exc:
                    log.debug("node %s: its update was not written (%s); the next heartbeat brings it again",
                              node_id, exc)
            node = self.store.get("node", node_id) or node
        return node

    def seen(self, node: dict) -> None:
        """Any request of a node's session (a long-poll, a status report) shows it is alive: its deadline moves
        as a heartbeat's would. Only a heartbeat brings a Down node back (that is a write). Swarmkit counts only
        heartbeats; on a loaded leader a node's heartbeat can wait behind its own long-poll answers."""
        if node["status"]["state"] != "down" and self._deadlines.get(node["id"]) is not None:
            self._deadlines.set(node["id"], self.now() + self._grace(node))

    def raft_running(self, node_id: str, within: float) -> bool:
        """Whether the node heartbeated in the last `within` seconds and said its Raft replica runs."""
        seen = self._last_seen.get(node_id)
        return seen is not None and time.monotonic() - seen <= within and self._raft_running.get(node_id, False)

    # ---- assignments -------------------------------------------------------------------------
    def answer_interval(self) -> float:
        """Least time between two long-poll answers to one node while changes keep coming."""
        return min(ASSIGNMENT_MAX_INTERVAL, max(ASSIGNMENT_MIN_INTERVAL, len(self._deadlines) / ANSWERS_PER_SECOND))

    def report_window(self) -> float:
        """How long an agent gathers its state changes into one report: REPORT_WINDOW in a small cluster (a
        container's states reach the store at once), half the answer interval in a large one."""
        interval = self.answer_interval()
        return REPORT_WINDOW if interval <= ASSIGNMENT_MIN_INTERVAL else interval / 2

    def _token(self, node_id: str) -> str:
        log_ = self._logs.get(node_id)
        return f"{self._epoch}:{log_.seq if log_ else 0}"

    def _parse(self, node_id: str, since: str | None) -> int | None:
        """The sequence an agent applied, if it is of this leader's epoch."""
        if not since or ":" not in since or node_id not in self._logs:
            return None
        epoch, _, seq = since.rpartition(":")
        if epoch != self._epoch or not seq.isdigit():
            return None
        return int(seq)

    def _tasks(self, node_id: str) -> list[dict]:
        return [t for t in self.store.find("task", "node_id", node_id)
                if t["status"]["state"] != "pending"
                and (t["desired_state"] == "running" or not is_terminal(t["status"]["state"]))]

    async def assignments(self, node_id: str, since: str | None, wait: float, deltas: bool = False) -> dict:
        """The node's tasks; with `since` equal to the current version, wait (long-poll) for a change.

        With `deltas`, an agent whose `since` is of this leader's epoch and not too old gets only the
        changes: {"full": false, "changed": [tasks added or updated], "removed": [ids]}; else the full
        list {"full": true, "tasks": [...]}. Either way "version" is what to send as `since` next."""
        node = self.store.get("node", node_id)
        if node is None:
            raise Unauthorized(f"node {node_id} is not part of this swarm")
        self.seen(node)
        if since is not None and since == self._token(node_id) and wait > 0:
            waiter = self._waiters.setdefault(node_id, asyncio.Event())
            await wait_event(waiter, wait)
            # The first change after a quiet spell goes out at once; while changes keep coming (100k tasks are
            # assigned in 500 Raft entries, each touching hundreds of nodes) a node gets at most one answer per
            # ASSIGNMENT_MIN_INTERVAL, with everything that changed meanwhile: swarmkit batches the same way.
            # Without it, every entry woke every node it touched, and the answers and re-polls swamped the leader.
            hold = self._answered.get(node_id, 0.0) + self.answer_interval() - time.monotonic()
            if hold > 0:
                await asyncio.sleep(hold)
        self._answered[node_id] = time.monotonic()
        log_ = self._logs.get(node_id)
        seq = self._parse(node_id, since) if deltas else None
        changed = log_.changed_since(seq) if log_ is not None and seq is not None else None
        if changed is None:
            tasks = self._tasks(node_id)
            if log_ is None:
                log_ = self._logs[node_id] = AssignmentLog()
            log_.reset(tasks)
            return {"version": self._token(node_id), "full": True, "tasks": tasks, "report_window": self.report_window()}
        answer_changed, removed = [], []
        for task_id in sorted(changed):
            task = self.store.get("task", task_id)
            if task is not None and task_id in log_.shown:
                answer_changed.append(task)
            else:
                removed.append(task_id)
        return {"version": self._token(node_id), "full": False, "changed": answer_changed, "removed": removed,
                "report_window": self.report_window()}

    def task_files(self, node_id: str, task_id: str, keys) -> dict:
        """The secrets' and configs' data of one task of this node, unsealed here on the leader and sent over the
        node's mutual-TLS session only while the task is assigned to it and meant to run (swarmkit sends a node
        only the secrets its assigned tasks use). The agent asks just before it creates the container, so no
        assignment list, snapshot or log carries the data."""
        node = self.store.get("node", node_id)
        if node is None:
            raise Unauthorized(f"node {node_id} is not part of this swarm")
        self.seen(node)
        return secrets.task_files(self.store, keys, node_id, task_id)

    async def update_status(self, node_id: str, updates: list[dict]) -> int:
        """Apply a node's batch of task state changes; only forward moves of its own tasks count.
        Reports of all nodes are gathered into few Raft writes (StatusBatcher)."""
        node = self.store.get("node", node_id)
        if node is not None:
            self.seen(node)
        if not updates:
            return 0
        if self.batcher._task is None:  # not started (a unit test driving the dispatcher directly)
            counts, ops = self.batcher.plan([(node_id, updates, None)])
            if ops:
                await commit(self.store, ops)
            return counts[0]
        return await self.batcher.submit(node_id, updates)

    # ---- down detection ----------------------------------------------------------------------
    async def _watch_down(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await asyncio.sleep(DOWN_CHECK_INTERVAL)
            overshoot = loop.time() - began - DOWN_CHECK_INTERVAL
            if overshoot > STALL_TOLERANCE:
                self._stalled += overshoot
            if not self.store.is_leader():
                continue  # leadership lost: the components are being stopped, and a new leader judges afresh
            now = self.now()
            ops = []
            for node_id in self._deadlines.pop_expired(now):
                node = self.store.get("node", node_id)
                if node is None or node["status"]["state"] == "down":
                    continue
                ops.append({"op": "patch", "kind": "node", "id": node_id, "missing_ok": True,
                            "set": [(["status", "state"], "down"), (["status", "message"], "heartbeat failure")]})
            if ops:
                log.info("marking %d node(s) down after %d missed heartbeats: %s", len(ops), MISSED_PERIODS,
                         ", ".join(op["id"] for op in ops))
                try:
                    await commit(self.store, ops)
                except Exception as exc:  # leadership lost or no quorum: try again next round
                    log.debug("could not mark nodes down: %s", exc)
                    for op in ops:
                        self._deadlines.set(op["id"], now + 0.5)
