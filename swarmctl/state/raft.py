"""The Raft-backed store: a StateMachine replicated by pysyncobj among the managers.

Design notes (see docs/design.md and ../shared/reference/pysyncobj.md):
- Writes are submitted on the leader only, and refused there when it cannot reach a majority. Followers forward at the API level, because
  pysyncobj loses follower-side callbacks when a snapshot is installed.
- Writes that arrive within 2 ms of each other are grouped into one Raft entry; each carries a
  request id so a retry after an unknown outcome applies once.
- Every wait has a timeout: a write that cannot commit reports NoLeader instead of hanging.
- Membership changes are serialised by the caller (one at a time, waiting for the result).
- Storage: journal.DurableJournal (fsync'd log, group commit, acknowledgement rule) and snapshot.SnapshotStore
  (snapshots off the tick thread) replace pysyncobj's own; see docs/design.md, "Raft storage".
"""

from __future__ import annotations

import asyncio
import logging
import functools
import os
import random
import time
import uuid

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.monotonic import monotonic as pysyncobj_monotonic

from swarmctl.errors import NO_LEADER_MESSAGE
from swarmctl.state import codec, raftsettings
from swarmctl.state.journal import (JOURNAL_NAME, SNAPSHOT_NAME, check_storage, migrate_legacy, open_journal,
                                    unregister)
from swarmctl.state.machine import StateMachine
from swarmctl.state.snapshot import SnapshotStore
from swarmctl.state.transport import TLSTransport

codec.install()  # pysyncobj unpickles journal, snapshots and commands only through the restricted unpickler


# Group commit: how long a write waits for company, and how many Raft entries may be in flight.
GROUP_WINDOW = 0.0
MAX_INFLIGHT = 1
# The writes queued meanwhile go into the next entry up to this many ops (at least one write): about 0.3 MB of
# task records (swarmkit: 1.5 MiB), and about 20 ms of applying on the tick thread, which also sends Raft's
# heartbeats: entries of 2,000 ops held it long enough to cost leaderships at 1,000 nodes. The rest wait for the entry after. Without the cap, writes
# sent together made one entry of all of them, so components had to send their 200-op chunks one by one.
MAX_ENTRY_OPS = 500
# The longest an entry may stay in flight before its writes are answered "no leader" and its slot is freed.
INFLIGHT_DEADLINE = 5.0
_LEADER = 2  # pysyncobj's _RAFT_STATE.LEADER

log = logging.getLogger(__name__)


def _fail(batch, error: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


class NoLeader(Exception):
    """No leader could commit the write in time; it may or may not have been applied."""

    def __init__(self, message: str = NO_LEADER_MESSAGE):
        super().__init__(message)


class NotLeader(Exception):
    """This manager is not the leader; the caller should forward to `leader`."""

    def __init__(self, leader: str | None):
        super().__init__(f"not the leader (leader: {leader})")
        self.leader = leader


class MembershipBusy(Exception):
    """pysyncobj refused a membership change because another one has not committed yet."""


class StorageUnavailable(Exception):
    """This replica's Raft journal cannot be written (disk full, I/O error): writes are refused until it can."""


# Test knob (documented in docs/design.md): a small value forces frequent snapshots in tests.
COMPACTION_ENTRIES_ENV = "SWARMCTL_RAFT_COMPACTION_ENTRIES"


class _Replicated(SyncObjConsumer):
    """The pysyncobj consumer: its one replicated method applies a batch of writes."""

    def __init__(self, machine: StateMachine):
        super().__init__()
        self.machine = machine

    @replicated
    def apply(self, writes):
        return self.machine.apply_batch(writes, fresh=True)  # decoded from the log for this call

    # Snapshots go through snapshot.SnapshotStore (conf serializer/deserializer), never through these.


def raft_conf(data_dir: str, **overrides) -> SyncObjConf:
    """pysyncobj settings tuned for fast failover on a LAN (measured in bench/). No `password`: the
    transport (state/transport.py) authenticates peers with their node certificates instead. Storage:
    journalFile is opened by journal.DurableJournal and snapshots are written by snapshot.SnapshotStore, whose
    hooks the caller passes as serializer/deserializer/serializeChecker overrides (RaftStore does)."""
    settings = dict(
        dynamicMembershipChange=True,
        journalFile=os.path.join(data_dir, JOURNAL_NAME),
        fullDumpFile=os.path.join(data_dir, SNAPSHOT_NAME),
        raftMinTimeout=0.25,  # for a small cluster; RaftStore lengthens them in a large one (ELECTION_TIMEOUTS)
        raftMaxTimeout=0.6,
        appendEntriesPeriod=0.05,
        leaderFallbackTimeout=2.0,
        appendEntriesUseBatch=False,
        # An entry at least this large travels in chunks, a path with a pysyncobj bug (transport.TransmissionGuard
        # works around it). Scheduler and orchestrator entries (200 task changes) exceed the 64 KiB default;
        # 4 MiB keeps nearly every entry whole, and one append_entries message stays far below MAX_MESSAGE.
        appendEntriesBatchSizeBytes=4 * 1024 * 1024,
        connectionRetryTime=0.5,
        connectionTimeout=1.5,
        useFork=False,  # ignored with a custom serializer; kept so pysyncobj never forks this process
        logCompactionMinEntries=int(os.environ.get(COMPACTION_ENTRIES_ENV) or 20000),
        logCompactionMinTime=600,
        commandsWaitLeader=False,
        maxBindRetries=3,
    )
    settings.update(overrides)
    return SyncObjConf(**settings)


# Election timeouts (min, max) by the number of nodes in the cluster. A leader of 1,000 nodes serves thousands of
# session requests a second, and its Raft thread shares the GIL with them: at 0.25-0.6 s it lost leadership to
# loop stalls of 0.6 s, and every election made 1,000 nodes reconnect. Swarm's own is 10 s (10 ticks of 1 s).
ELECTION_TIMEOUTS = ((0, 0.25, 0.6), (200, 0.6, 1.5))
TIMEOUT_CHECK_PERIOD = 1.0


def election_timeouts(nodes: int) -> tuple[float, float]:
    chosen = ELECTION_TIMEOUTS[0][1:]
    for least, low, high in ELECTION_TIMEOUTS:
        if nodes >= least:
            chosen = (low, high)
    return chosen


class RaftStore:
    metrics = None  # swarmctl.node.metrics.Metrics of the daemon (set when --metrics-addr is on)
    """One manager's replica: local reads, leader-side writes, membership changes.

    Raft runs over mutual TLS (state/transport.py) with this node's certificate (server_context,
    client_context). A peer is accepted only while _authorize says it is a current manager of
    cluster_id at the Raft address it claims; `peers` ({raft_addr: node_id}, from /v1/raft/join) stands in
    for the node records until this replica holds the cluster state. before_send(message), if given, is
    called with every outgoing Raft message before it is serialised."""

    def __init__(self, self_addr: str, members: list[str], data_dir: str, *, cluster_id: str,
                 server_context, client_context, peers: dict[str, str] | None = None,
                 machine: StateMachine | None = None, before_send=None, **conf_overrides):
        os.makedirs(data_dir, exist_ok=True)
        migrate_legacy(data_dir)  # a Raft dir of pysyncobj's own storage, from before this format
        check_storage(data_dir)  # StorageError (one line, naming the file) before anything starts
        self.self_addr = self_addr
        self.cluster_id = cluster_id
        self.peers = dict(peers or {})
        self.machine = machine or StateMachine()
        self._consumer = _Replicated(self.machine)
        partners = [m for m in members if m != self_addr]
        conf_overrides.setdefault("bindAddress", self_addr)  # pysyncobj binds 0.0.0.0 otherwise
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # built outside a loop (tools, tests): no leadership callbacks
            self._loop = None
        conf_overrides.setdefault("onStateChanged", self._on_state_changed)
        self._pending: list[tuple[tuple, asyncio.Future]] = []
        self._flush_scheduled = False
        self._inflight: dict[int, list] = {}  # entries submitted to Raft, by batch number, until settled
        self._submitted: dict[int, float] = {}  # when each entry in flight was submitted (transaction latency)
        self._batch_seq = 0
        snapshot_path = os.path.join(data_dir, SNAPSHOT_NAME)
        self._timeouts_checked = 0.0
        self.snapshots = SnapshotStore(self.machine, snapshot_path, on_loaded=self._after_snapshot_load)
        conf = raft_conf(data_dir, **self.snapshots.conf(), **conf_overrides)
        self.journal = open_journal(conf.journalFile, snapshot_path)  # SyncObj picks it up by path
        journal_before_send = self.journal.before_send

        def send_hook(message):  # the journal's acknowledgement rule first, then the caller's hook
            journal_before_send(message)
            if before_send is not None:
                before_send(message)
        transport = functools.partial(TLSTransport, server_context=server_context, client_context=client_context,
                                      authorize=self._authorize, before_send=send_hook)
        try:
            self._sync = SyncObj(self_addr, partners, conf, consumers=[self._consumer], transportClass=transport)
        except BaseException:
            unregister(self.journal)
            self.journal._destroy()
            raise
        # Registered before the tick thread's first tick (it sleeps 0.1 s after binding), and an election
        # takes at least raftMinTimeout: no entry of this node's is counted before this callback runs.
        self._sync.addOnTickCallback(self.journal.on_tick)
        # What this replica held when it started: until it has applied that much again, its node records may
        # be older than its own log (see _catching_up).
        self._restored_end = self.journal[-1][1] if len(self.journal) else 0
        self._membership_replayed = False
        self._sync.addOnTickCallback(self._replay_membership)
        self._scaled_timeouts = "raftMinTimeout" not in conf_overrides  # a caller's own timeouts are kept
        self._conf_defaults = {"timeouts": (conf.raftMinTimeout, conf.raftMaxTimeout),
                               "appendEntriesPeriod": conf.appendEntriesPeriod,
                               "logCompactionMinEntries": conf.logCompactionMinEntries}
        self._sync.addOnTickCallback(self._scale_timeouts)

    def _scale_timeouts(self, force: bool = False) -> None:
        """Once a second on the Raft thread: election timeouts for the cluster's size (ELECTION_TIMEOUTS), and
        the swarm's Raft settings of the cluster spec (state/raftsettings.py: election_tick, heartbeat_tick,
        snapshot_interval). pysyncobj reads these conf attributes at every use, so they apply live."""
        sync = getattr(self, "_sync", None)
        now = time.monotonic()
        if sync is None or (not force and now - self._timeouts_checked < TIMEOUT_CHECK_PERIOD):
            return
        self._timeouts_checked = now
        defaults = self._conf_defaults
        scaled = election_timeouts(self.machine.count("node")) if self._scaled_timeouts else defaults["timeouts"]
        clusters = self.machine.list("cluster")
        spec = (clusters[0].get("spec") or {}) if clusters else {}
        values = raftsettings.conf_values(spec, scaled, defaults["appendEntriesPeriod"])
        values.setdefault("logCompactionMinEntries", defaults["logCompactionMinEntries"])
        for name, value in values.items():
            if getattr(sync.conf, name) != value:
                setattr(sync.conf, name, value)

    def raft_conf(self) -> dict:
        """The running replica's effective Raft settings (`info`'s raft.conf)."""
        return raftsettings.effective(self._sync.conf)

    def _replay_membership(self) -> None:
        """Once, on the first tick after pysyncobj has loaded its snapshot: make the membership changes held in
        the journal again. pysyncobj makes a change when its entry is appended and never when it loads a journal,
        so a restarted replica would start with the member list of raft/members.json (saved once a second) or
        of its snapshot, without the changes appended after them. A manager that took two joins and was killed
        within that second restarted without the second member, refused its connections ("not a Raft member
        here") and could not rejoin. Each change sets a member present or absent, so applying every change
        in the log on top of an older list gives the list of the log's end (the journal is trimmed to the
        snapshot, so it holds no change the snapshot's list already supersedes). Private pysyncobj API: pinned."""
        sync = getattr(self, "_sync", None)
        if self._membership_replayed or sync is None or getattr(sync, "_SyncObj__needLoadDumpFile", False):
            return
        self._membership_replayed = True
        parse = sync._SyncObj__parseChangeClusterRequest
        change = sync._SyncObj__doChangeCluster
        for index in range(len(self.journal)):
            command = self.journal[index][0]
            try:
                request = parse(command)
            except Exception:  # noqa: BLE001 - not a membership entry of pysyncobj's form
                request = None
            if request is not None and change(request):
                log.info("raft member list at restart: %s %s (from the journal)",
                         "added" if request[0] == "add" else "removed", request[1])

    def election_timeouts(self) -> tuple[float, float]:
        return self._sync.conf.raftMinTimeout, self._sync.conf.raftMaxTimeout

    # ---- reads (this replica) ---------------------------------------------------------------
    # The narrow interface every component uses: read, watch, write. Nothing outside swarmctl/state
    # touches the state machine itself.
    def get(self, kind: str, record_id: str) -> dict | None:
        return self.machine.get(kind, record_id)

    def list(self, kind: str) -> list[dict]:
        return self.machine.list(kind)

    def find(self, kind: str, path, value) -> list[dict]:
        return self.machine.find(kind, path, value)

    @property
    def index(self) -> int:
        """The index of the last write this replica applied (the version stamped on the records it touched)."""
        return self.machine.index

    def watch(self, callback):
        """callback(index, events) after every applied write, on the Raft thread; returns a cancel function."""
        return self.machine.watch(callback)

    def count(self, kind: str) -> int:
        return self.machine.count(kind)

    def records(self) -> dict[tuple[str, str], dict]:
        """Every record of this replica by (kind, id) (references)."""
        return self.machine.records()

    def watch_with_records(self, callback):
        """records() and watch(callback) in one step, so that a watcher keeping its own copy neither misses a
        change nor sees one twice; returns (records, cancel)."""
        return self.machine.watch_with_records(callback)

    def snapshot(self) -> dict:
        return self.machine.snapshot()

    def applied(self, request_id: str) -> dict | None:
        """The stored result of a write with this request id, if this replica has applied one."""
        with self.machine.lock:
            return self.machine.applied.get(request_id)

    async def barrier(self, timeout: float = 3.0) -> int:
        """On the leader: commit an empty entry and return the index applied with it. Every write that
        committed before the barrier began is then applied here (a read index, confirmed through the log)."""
        result = await self.write([], timeout=timeout)
        return result["index"]

    # ---- who may speak Raft with us ----------------------------------------------------------
    def has_state(self) -> bool:
        """Whether this replica holds the cluster state (a new member starts without it)."""
        return bool(self.machine.list("cluster"))

    def _authorize(self, identity, raft_addr: str) -> bool:
        """Whether a peer's certificate identity (CN node id, OU role, O cluster id, already verified
        against the cluster CA) is a current manager of this cluster whose node record has this Raft
        address. Runs on the Raft thread, for every new connection and again every second."""
        if identity.cluster_id != self.cluster_id or identity.role != "manager":
            return False
        if not self.has_state():
            return self.peers.get(raft_addr) == identity.node_id
        record = self.machine.get("node", identity.node_id)
        record_addr = (record.get("description") or {}).get("addrs", {}).get("raft") if record else None
        if record is not None and record["spec"]["role"] == "manager" and record_addr == raft_addr:
            return True
        return self._catching_up(raft_addr, record_addr)

    def _catching_up(self, raft_addr: str, record_addr: str | None) -> bool:
        """A restarted replica applies only what its lazily saved commit index covers until a leader confirms
        the rest, so its node records can lag behind its own log: the manager that its last writes promoted,
        or that joined last, is not yet a manager here. Refusing it would refuse the only peers that can bring
        this replica up to date. So while this replica has not applied what it held at its start, or has no
        leader, a manager certificate of this cluster is admitted from a current Raft member's address,
        unless the records bind that node to another address. Once caught up, the re-check every second
        applies the ordinary rule again."""
        sync = getattr(self, "_sync", None)
        if sync is None:
            return False
        behind = sync.raftLastApplied < getattr(self, "_restored_end", 0) or sync._getLeader() is None
        if not behind or raft_addr not in {n.address for n in sync.otherNodes}:
            return False
        return record_addr in (None, raft_addr)

    # ---- status ------------------------------------------------------------------------------
    def is_leader(self) -> bool:
        return self._sync._isLeader()

    def leader(self) -> str | None:
        node = self._sync._getLeader()
        return node.address if node is not None else None

    def has_quorum(self) -> bool:
        """Whether this replica is connected to a majority of the members (itself included)."""
        return bool(self._sync.hasQuorum)

    def members(self) -> list[str]:
        return sorted([self.self_addr] + [n.address for n in self._sync.otherNodes])

    def connected(self, addr: str) -> bool:
        """Whether this replica has a live Raft connection to a member (itself counts)."""
        if addr == self.self_addr:
            return True
        for node in self._sync.otherNodes:
            if node.address == addr:
                return self._sync.isNodeConnected(node)
        return False

    def _after_snapshot_load(self) -> None:
        """pysyncobj sets a follower's election deadline when the snapshot's last chunk arrives, before it
        loads it. A load longer than the election timeout (about 2 s at 100k tasks) would then start an
        election against a healthy leader the moment it ends. Count the timeout from the end of the load,
        as if the leader's message had arrived then. (pysyncobj is pinned; this is its private field.)"""
        if hasattr(self, "_conf_defaults"):
            # A restarted replica loads its snapshot on its first tick: the deadline drawn after the load uses
            # the timeouts of the cluster it holds (with the short ones, a follower restarted at 1,000 nodes called
            # an election 4 s after its start and unseated a leader busy with reconnecting nodes).
            self._scale_timeouts(force=True)
        sync = getattr(self, "_sync", None)
        if sync is not None and hasattr(sync, "_SyncObj__raftElectionDeadline"):
            conf = sync.conf
            sync._SyncObj__raftElectionDeadline = (pysyncobj_monotonic() + conf.raftMinTimeout +
                                                   (conf.raftMaxTimeout - conf.raftMinTimeout) * random.random())

    @property
    def storage_error(self) -> str | None:
        """Why this replica's journal cannot be written right now (None while it can)."""
        return None if self.journal.healthy else self.journal.error

    def destroy(self) -> None:
        self.journal.abort()  # a Raft thread waiting for a full disk gives up instead of blocking the stop
        self._sync.destroy()

    def compact(self) -> None:
        """Take a snapshot and drop the log entries it covers, at the next chance (after the cluster record's
        key fields were sealed, so the entries that held them in plaintext go)."""
        self._sync.forceLogCompaction()

    # ---- writes ------------------------------------------------------------------------------
    async def write(self, ops: list[dict], request_id: str | None = None, timeout: float = 3.0) -> dict:
        """Commit ops through Raft on this (leader) replica; returns the machine's result dict.

        NotLeader: this replica is not (or no longer) the leader and the write was never submitted, or it was
        submitted and this replica lost leadership before the outcome was known; in both cases a retry with
        the same request id on the new leader applies it at most once. NoLeader: no outcome within the timeout.
        StorageUnavailable: this replica's journal cannot be written (disk full); nothing was submitted.
        """
        if not self.journal.healthy:
            raise StorageUnavailable(self.journal.error)
        if not self.is_leader():
            raise NotLeader(self.leader())
        if not self.has_quorum():
            # Refuse rather than append: an entry appended now would commit later, once peers
            # return, and a write the user saw refused must not reappear.
            raise NoLeader()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        # A caller that timed out no longer awaits its future; its outcome, settled later, is still retrieved.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        if request_id is None and ops:  # barriers (no ops) are not remembered: they would crowd out real ids
            request_id = uuid.uuid4().hex
        self._pending.append(((request_id, time.time(), ops), future))
        self._maybe_flush(loop)
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(asyncio.shield(future), timeout)
            if self.metrics is not None:
                self.metrics.store_write.observe(time.monotonic() - started)
            return result
        except asyncio.TimeoutError:
            if not self.journal.healthy:  # it timed out because this journal could not be written meanwhile
                raise StorageUnavailable(self.journal.error) from None
            raise NoLeader() from None

    def _maybe_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Group commit: with an entry in flight, writes queue up and go out together when it commits."""
        if self._pending and not self._flush_scheduled and len(self._inflight) < MAX_INFLIGHT:
            self._flush_scheduled = True
            loop.call_later(GROUP_WINDOW, self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        take, ops = 0, 0
        for (_request_id, _ts, write_ops), _future in self._pending:
            if take and ops + len(write_ops) > MAX_ENTRY_OPS:
                break
            take += 1
            ops += len(write_ops)
        batch, self._pending = self._pending[:take], self._pending[take:]
        self._flush_scheduled = False
        if not batch:
            return
        if not self.is_leader():
            _fail(batch, NotLeader(self.leader()))  # never submitted: the caller may send them elsewhere
            return
        writes = [write for write, _ in batch]
        self._batch_seq += 1
        batch_id = self._batch_seq
        self._inflight[batch_id] = batch
        self._submitted[batch_id] = time.monotonic()
        # Every entry in flight has an end: its callback, the loss of leadership, or this deadline. pysyncobj
        # drops callbacks on some paths (a snapshot installed over the entry, a truncated log), and a slot that
        # was never released would block every later write.
        loop.call_later(INFLIGHT_DEADLINE, self._settle, loop, batch_id, None, NoLeader())

        def done(results, err):
            if err == FAIL_REASON.SUCCESS:
                loop.call_soon_threadsafe(self._settle, loop, batch_id, results, None)
            else:  # discarded, lost leadership, ...: the outcome is unknown to us
                loop.call_soon_threadsafe(self._settle, loop, batch_id, None, NotLeader(None))

        try:
            self._consumer.apply(writes, callback=done)
        except Exception as exc:  # e.g. pysyncobj's queue is full
            log.warning("could not submit a write batch: %s", exc)
            self._settle(loop, batch_id, None, NoLeader())

    def _settle(self, loop: asyncio.AbstractEventLoop, batch_id: int, results, error) -> None:
        """Resolve an entry in flight once (whichever of callback, deadline or leadership loss comes first)."""
        batch = self._inflight.pop(batch_id, None)
        submitted = self._submitted.pop(batch_id, None)
        if batch is None:
            return
        if error is None and submitted is not None and self.metrics is not None:
            self.metrics.raft_transaction.observe(time.monotonic() - submitted)
        if error is None:
            for i, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result(results[i])
        else:
            _fail(batch, error)
        self._maybe_flush(loop)

    def _on_state_changed(self, old_state, new_state) -> None:
        """pysyncobj's onStateChanged, on its tick thread: a leader that steps down fails what it holds."""
        if old_state == _LEADER and new_state != _LEADER and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._lost_leadership)
            except RuntimeError:  # the loop is closed (shutdown)
                pass

    def _lost_leadership(self) -> None:
        """Release every write this replica holds: queued ones were never submitted, and those in flight may
        or may not commit under the next leader; both get NotLeader, so the API retries them there with the
        same request id, which applies at most once."""
        for batch_id in list(self._inflight):
            self._settle(self._loop, batch_id, None, NotLeader(self.leader()))
        pending, self._pending = self._pending, []
        _fail(pending, NotLeader(self.leader()))

    # ---- membership --------------------------------------------------------------------------
    def _membership(self, call, addr: str) -> asyncio.Future:
        """Start a membership change; the future resolves to None or raises once it is decided."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle(err):
            if future.done():
                return
            if err == FAIL_REASON.SUCCESS:
                future.set_result(None)
            elif err == FAIL_REASON.REQUEST_DENIED:
                future.set_exception(MembershipBusy("another membership change is still in progress; try again"))
            else:
                future.set_exception(NoLeader())
        call(addr, callback=lambda _result, err: loop.call_soon_threadsafe(settle, err))
        return future

    async def _committed_member(self, addr: str) -> bool:
        """Whether addr is in the committed configuration. pysyncobj applies a change to its member list when
        the entry is appended, before it commits; a barrier committed after it (in this leader's term)
        commits every earlier entry, so the list read after the barrier is the committed one."""
        if addr not in self.members():
            return False
        await self.barrier()
        return addr in self.members()

    async def add_member(self, addr: str, timeout: float = 10.0) -> None:
        """Add a member and return once the change has committed; idempotent. The new member must already
        run its replica with the current member list, since it counts towards the quorum that commits it."""
        if await self._committed_member(addr):
            return
        await self._change(self._sync.addNodeToCluster, addr, timeout)

    async def remove_member(self, addr: str, timeout: float = 10.0) -> None:
        """Remove a member and return once the change has committed; idempotent."""
        if addr not in self.members():
            await self.barrier()  # a removal still uncommitted from an earlier term commits with it
            if addr not in self.members():
                return
        await self._change(self._sync.removeNodeFromCluster, addr, timeout)

    async def _change(self, call, addr: str, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._membership(call, addr), timeout)
        except asyncio.TimeoutError:
            raise NoLeader(f"the Raft membership change for {addr} did not commit within {timeout:.0f}s; "
                           "check that a majority of managers (and the new one) are up") from None

    async def transfer_leadership(self, timeout: float = 3.0) -> bool:
        """Hand leadership to the most caught-up follower; True once this replica is no longer leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.is_leader():
            self._sync.transferLeadership()
            for _ in range(10):
                await asyncio.sleep(0.05)
                if not self.is_leader():
                    break
        return not self.is_leader()
