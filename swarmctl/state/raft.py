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
import os
import random
import time
import uuid

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.monotonic import monotonic as pysyncobj_monotonic
from pysyncobj.transport import TCPTransport

from swarmctl.errors import NO_LEADER_MESSAGE
from swarmctl.state.journal import (JOURNAL_NAME, SNAPSHOT_NAME, check_storage, migrate_legacy, open_journal,
                                    unregister)
from swarmctl.state.machine import StateMachine
from swarmctl.state.snapshot import SnapshotStore



# Group commit: how long a write waits for company, and how many Raft entries may be in flight.
GROUP_WINDOW = 0.0
MAX_INFLIGHT = 1


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


def syncing_transport(before_send):
    """pysyncobj's TCPTransport with the journal's acknowledgement rule in front of every send.

    Interim: helper "transport" is writing a mutual-TLS Raft transport that calls a before_send callable
    for every outgoing message; until that lands, this subclass wraps the current transport's send."""

    class SyncingTCPTransport(TCPTransport):
        def send(self, node, message):
            before_send(message)
            return super().send(node, message)

    return SyncingTCPTransport


class _Replicated(SyncObjConsumer):
    """The pysyncobj consumer: its one replicated method applies a batch of writes."""

    def __init__(self, machine: StateMachine):
        super().__init__()
        self.machine = machine

    @replicated
    def apply(self, writes):
        return self.machine.apply_batch(writes)

    # Snapshots go through snapshot.SnapshotStore (conf serializer/deserializer), never through these.


def raft_conf(data_dir: str, secret: str, **overrides) -> SyncObjConf:
    """pysyncobj settings tuned for fast failover on a LAN (measured in bench/). Storage: journalFile is
    opened by journal.DurableJournal and snapshots are written by snapshot.SnapshotStore, whose hooks the
    caller passes as serializer/deserializer/serializeChecker overrides (RaftStore does)."""
    settings = dict(
        password=secret,
        dynamicMembershipChange=True,
        journalFile=os.path.join(data_dir, JOURNAL_NAME),
        fullDumpFile=os.path.join(data_dir, SNAPSHOT_NAME),
        raftMinTimeout=0.25,
        raftMaxTimeout=0.6,
        appendEntriesPeriod=0.05,
        leaderFallbackTimeout=2.0,
        appendEntriesUseBatch=False,
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


class RaftStore:
    """One manager's replica: local reads, leader-side writes, membership changes."""

    def __init__(self, self_addr: str, members: list[str], secret: str, data_dir: str,
                 machine: StateMachine | None = None, **conf_overrides):
        os.makedirs(data_dir, exist_ok=True)
        migrate_legacy(data_dir)  # a Raft dir of pysyncobj's own storage, from before this format
        check_storage(data_dir)  # StorageError (one line, naming the file) before anything starts
        self.self_addr = self_addr
        self.machine = machine or StateMachine()
        self._consumer = _Replicated(self.machine)
        partners = [m for m in members if m != self_addr]
        conf_overrides.setdefault("bindAddress", self_addr)  # pysyncobj binds 0.0.0.0 otherwise
        snapshot_path = os.path.join(data_dir, SNAPSHOT_NAME)
        self.snapshots = SnapshotStore(self.machine, snapshot_path, on_loaded=self._after_snapshot_load)
        conf = raft_conf(data_dir, secret, **self.snapshots.conf(), **conf_overrides)
        self.journal = open_journal(conf.journalFile, snapshot_path)  # SyncObj picks it up by path
        try:
            self._sync = SyncObj(self_addr, partners, conf, consumers=[self._consumer],
                                 transportClass=syncing_transport(self.journal.before_send))
        except BaseException:
            unregister(self.journal)
            self.journal._destroy()
            raise
        # Registered before the tick thread's first tick (it sleeps 0.1 s after binding), and an election
        # takes at least raftMinTimeout: no entry of this node's is counted before this callback runs.
        self._sync.addOnTickCallback(self.journal.on_tick)
        self._pending: list[tuple[tuple, asyncio.Future]] = []
        self._flush_scheduled = False
        self._inflight = 0

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

    # ---- writes ------------------------------------------------------------------------------
    async def write(self, ops: list[dict], request_id: str | None = None, timeout: float = 3.0) -> dict:
        """Commit ops through Raft on this (leader) replica; returns the machine's result dict."""
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
        self._pending.append(((request_id or uuid.uuid4().hex, time.time(), ops), future))
        self._maybe_flush(loop)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            raise NoLeader() from None

    def _maybe_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Group commit: with an entry in flight, writes queue up and go out together when it commits."""
        if self._pending and not self._flush_scheduled and self._inflight < MAX_INFLIGHT:
            self._flush_scheduled = True
            loop.call_later(GROUP_WINDOW, self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending, []
        self._flush_scheduled = False
        if not batch:
            return
        writes = [write for write, _ in batch]
        futures = [future for _, future in batch]
        self._inflight += 1

        def done(results, err):
            def resolve():
                self._inflight -= 1
                for i, future in enumerate(futures):
                    if future.done():
                        continue
                    if err == FAIL_REASON.SUCCESS:
                        future.set_result(results[i])
                    else:
                        future.set_exception(NoLeader())
                self._maybe_flush(loop)
            loop.call_soon_threadsafe(resolve)

        self._consumer.apply(writes, callback=done)

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

    async def add_member(self, addr: str, timeout: float = 4.0, wait: bool = True) -> asyncio.Future | None:
        """Add a member. With wait=False return once the change is on the leader's log, because a
        new member must be running before the change can commit (it counts towards the quorum)."""
        if addr in self.members():
            return None
        future = self._membership(self._sync.addNodeToCluster, addr)
        if not wait:
            for _ in range(int(timeout / 0.01)):
                if addr in self.members() or future.done():
                    break
                await asyncio.sleep(0.01)
            if future.done() and future.exception():
                raise future.exception()
            return future
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise NoLeader() from None
        return None

    async def remove_member(self, addr: str, timeout: float = 4.0) -> None:
        if addr not in self.members():
            return
        try:
            await asyncio.wait_for(self._membership(self._sync.removeNodeFromCluster, addr), timeout)
        except asyncio.TimeoutError:
            raise NoLeader() from None

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
