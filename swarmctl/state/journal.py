"""A durable Raft journal for pysyncobj: an append-only file of checksummed records, fsync'd before
anything that depends on it leaves this node (docs/design.md, "Raft storage").

pysyncobj's own FileJournal writes through an mmap that is never msync'd, and renames its meta file into
place without fsync: an acknowledged entry can vanish with a power loss. This journal keeps pysyncobj's
Journal interface and its in-memory list of entries, and adds the file underneath:

    raft.journal         header (magic, format, CRC), then records:
                         u32 length | u64 index | u64 term | u32 CRC of those 20 bytes | u32 CRC of command | command
    raft.journal.state   current term and vote, rewritten (temp file, fsync, rename, fsync dir) before
                         setCurrentTerm returns, as Raft requires before a vote or a new term is sent
    raft.journal.commit  the commit index, written lazily once a second without fsync: it is only a hint
                         (entries above it are applied once a leader confirms them), so losing it is harmless

Group commit: add() only appends to memory and to a buffer. sync() writes the buffer and fdatasyncs once,
however many entries it holds. It runs (a) in before_send(), before the transport sends an append_entries
that carries entries or a successful next_node_idx (an acknowledgement), and (b) at the end of every
pysyncobj tick, so the leader's own entries are on disk before the next tick counts the leader towards the
commit index.

A write or fsync that fails (ENOSPC, EIO, ...) truncates the file back to the last good record, marks the
journal unhealthy (`healthy`, `error`) and retries from memory with a bounded back-off (0.05 s doubling to
1 s) on the same thread, until it succeeds or the journal is closed. The Raft thread therefore never goes on
past an entry, a term or a vote that is not on disk: it neither acknowledges nor counts itself for it. The
daemon's API keeps running meanwhile (RaftStore.write refuses with 507 while the journal is unhealthy).

pysyncobj builds its journal with the module-level `createJournal(conf.journalFile)` inside SyncObj.__init__
and has no other hook for it, so install() replaces `pysyncobj.syncobj.createJournal` with a factory that
hands out the journal registered for that path by open_journal(), and falls back to pysyncobj's own for any
other path. Registering is explicit and per path; nothing else of pysyncobj is changed.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import struct
import threading
import time
import zlib

import pysyncobj.syncobj as _syncobj_module
from pysyncobj.journal import Journal

log = logging.getLogger(__name__)

MAGIC = b"SWCTLWAL"
FORMAT = 1
_HEADER = struct.Struct("<8sII")          # magic, format, CRC of the first 12 bytes
HEADER_SIZE = _HEADER.size
_REC = struct.Struct("<IQQI")             # command length, index, term, CRC of the first 20 bytes
_REC_HEAD = _REC.size + 4                 # + CRC of the command
MAX_COMMAND = 1 << 30                     # a longer record is damage, not data

STATE_MAGIC = b"SWCTLTRM"
COMMIT_MAGIC = b"SWCTLCMT"

JOURNAL_NAME = "raft.journal"
SNAPSHOT_NAME = "raft.snapshot"

RECOVERY = ("remove the data dir and join this node again as a new manager; on the last manager, restore the "
            "data dir from a backup or run 'swarmctl swarm init --force-new-cluster' on a copy "
            "(see docs/operations.md, 'Damaged Raft storage')")

_PROBE_FIRST, _PROBE_MAX = 0.05, 1.0       # retry back-off while the disk refuses writes
_COMPACT_RETRY_MAX = 60.0


class StorageError(Exception):
    """Raft storage that cannot be used as it is; the one-line message names the file and the way out."""


def damaged(path: str, what: str) -> StorageError:
    return StorageError(f"Raft storage file {path} is damaged ({what}); refusing to start: {RECOVERY}")


def _header() -> bytes:
    head = MAGIC + struct.pack("<I", FORMAT)
    return head + struct.pack("<I", zlib.crc32(head))


def encode_record(command: bytes, idx: int, term: int) -> bytes:
    head = struct.pack("<IQQ", len(command), idx, term)
    return head + struct.pack("<II", zlib.crc32(head), zlib.crc32(command)) + command


def scan(path: str, data: bytes) -> tuple[list[tuple[bytes, int, int]], list[int], int, bool]:
    """Parse a journal file's bytes: (entries, their offsets, end of the last whole record, torn tail?).

    A last record that runs past the end of the file is a torn tail: a crash during a write that was never
    acknowledged, because acknowledgement waits for the fsync. Anything else raises StorageError."""
    if len(data) < HEADER_SIZE:
        if MAGIC.startswith(data[:len(MAGIC)]):  # crashed while creating the file: nothing was ever in it
            return [], [], 0, True
        raise damaged(path, "not a swarmctl Raft journal")
    magic, fmt, crc = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        what = ("written by an older swarmctl in pysyncobj's own format" if data.startswith(b"PYSYNCOBJ")
                else "not a swarmctl Raft journal")
        raise damaged(path, what)
    if crc != zlib.crc32(data[:12]) or fmt != FORMAT:
        raise damaged(path, "bad header" if crc != zlib.crc32(data[:12]) else f"unknown format {fmt}")
    entries, offsets = [], []
    pos, size, prev_idx = HEADER_SIZE, len(data), None
    while pos < size:
        if size - pos < _REC_HEAD:
            return entries, offsets, pos, True
        length, idx, term, head_crc = _REC.unpack_from(data, pos)
        if head_crc != zlib.crc32(data[pos:pos + 20]):
            raise damaged(path, f"record header CRC mismatch at byte {pos}")
        if length > MAX_COMMAND:
            raise damaged(path, f"impossible record length {length} at byte {pos}")
        end = pos + _REC_HEAD + length
        if end > size:
            return entries, offsets, pos, True
        command = data[pos + _REC_HEAD:end]
        if struct.unpack_from("<I", data, pos + _REC.size)[0] != zlib.crc32(command):
            raise damaged(path, f"record CRC mismatch at byte {pos}")
        if prev_idx is not None and idx != prev_idx + 1:
            raise damaged(path, f"record index {idx} after {prev_idx} at byte {pos}")
        entries.append((command, idx, term))
        offsets.append(pos)
        prev_idx = idx
        pos = end
    return entries, offsets, pos, False


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file_durably(path: str, data: bytes) -> None:
    """Temp file, fsync, rename over path, fsync the directory: path holds the old or the new bytes."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    _fsync_dir(os.path.dirname(path))


def _copy_range(src: int, dst: int, start: int, end: int) -> None:
    """Append bytes [start, end) of src to dst, in the kernel where it can."""
    offset = start
    while offset < end:
        try:
            copied = os.copy_file_range(src, dst, end - offset, offset, None)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            copied = os.write(dst, os.pread(src, min(end - offset, 1 << 20), offset))
        if copied == 0:
            raise OSError(errno.EIO, "short copy of the Raft journal")
        offset += copied


def _read_state(path: str) -> tuple[int, object]:
    """(term, votedFor) from the state file; (0, None) when there is none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return 0, None
    if len(data) < 16 or data[:8] != STATE_MAGIC:
        raise damaged(path, "not a swarmctl Raft state file")
    (length,) = struct.unpack_from("<I", data, 8)
    payload = data[12:12 + length]
    if len(payload) != length or len(data) != 16 + length or \
            struct.unpack_from("<I", data, 12 + length)[0] != zlib.crc32(payload):
        raise damaged(path, "CRC mismatch")
    state = json.loads(payload)
    return int(state["term"]), state["voted_for"]


def _read_commit(path: str) -> int:
    """The lazily stored commit index, or 1 (pysyncobj's default) when missing or torn: it is a hint."""
    try:
        with open(path, "rb") as f:
            data = f.read(20)
    except OSError:
        return 1
    if len(data) == 20 and data[:8] == COMMIT_MAGIC:
        idx, crc = struct.unpack_from("<QI", data, 8)
        if crc == zlib.crc32(data[:16]):
            return idx
    log.warning("ignoring unreadable commit index hint %s", path)
    return 1


def check_storage(raft_dir: str) -> None:
    """Raise StorageError naming the file if the journal, its state file or the snapshot is damaged.

    A torn journal tail is not damage (the journal truncates it when it opens, with a warning)."""
    from swarmctl.state.snapshot import verify_snapshot  # snapshot.py imports StorageError from here

    path = os.path.join(raft_dir, JOURNAL_NAME)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = None
    except OSError as exc:
        raise StorageError(f"cannot read the Raft journal {path}: {exc.strerror}; {RECOVERY}") from None
    if data is not None and not data.startswith(b"PYSYNCOBJ"):  # the old format is converted on open
        scan(path, data)
    _read_state(path + ".state")
    snapshot = os.path.join(raft_dir, SNAPSHOT_NAME)
    if os.path.exists(snapshot):
        verify_snapshot(snapshot)


def migrate_legacy(raft_dir: str) -> bool:
    """Convert a Raft dir written by pysyncobj's own storage (swarmctl before this format) in place: its
    journal, its pickled meta file and its gzip-pickled snapshot. Returns whether it converted anything.

    The pickles are read from this node's own data dir (0700), as pysyncobj itself read them. The new files
    are written under temporary names and renamed snapshot first, journal last: until the journal is renamed
    the dir still reads as legacy, so a crash in between converts it again on the next start."""
    import gzip
    import pysyncobj.pickle as legacy_pickle
    from swarmctl.state.snapshot import MAGIC as SNAPSHOT_MAGIC, write_snapshot

    path = os.path.join(raft_dir, JOURNAL_NAME)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    if not data.startswith(b"PYSYNCOBJ"):
        return False
    try:
        (last_offset,) = struct.unpack_from("<I", data, 36)
        pos, entries = 40, []
        while pos < min(last_offset, len(data)):
            (size,) = struct.unpack_from("<I", data, pos)
            idx, term = struct.unpack_from("<QQ", data, pos + 4)
            entries.append((bytes(data[pos + 20:pos + 4 + size]), idx, term))
            pos += size + 8
        try:
            with open(path + ".meta", "rb") as f:
                meta = legacy_pickle.loads(f.read())
        except FileNotFoundError:
            meta = {}
        snapshot = os.path.join(raft_dir, SNAPSHOT_NAME)
        new_snapshot = None
        if os.path.exists(snapshot):
            with open(snapshot, "rb") as f:
                legacy_snapshot = not f.read(len(SNAPSHOT_MAGIC)) == SNAPSHOT_MAGIC
            if legacy_snapshot:
                with gzip.open(snapshot, "rb") as g:
                    consumers, last, prev, cluster = legacy_pickle.load(g)
                state = consumers[1]
                snap_meta = {"last": _b64_entry(last), "prev": _b64_entry(prev),
                             "cluster": sorted(getattr(n, "address", str(n)) for n in cluster),
                             "index": state["index"], "records": sum(len(r) for r in state["data"].values())}
                new_snapshot = snapshot + ".migrated"
                write_snapshot(new_snapshot, state, snap_meta)
    except Exception as exc:  # unreadable legacy files are damage like any other
        raise damaged(path, f"cannot convert pysyncobj's old format: {exc}") from None
    try:
        _write_converted(raft_dir, path, entries, meta, new_snapshot)
    except OSError as exc:
        raise StorageError(f"{(exc.strerror or str(exc)).lower()}: cannot convert the Raft dir {raft_dir} from "
                           "pysyncobj's old format (it is left as it was)") from None
    log.warning("converted the Raft dir %s from pysyncobj's old format (%d journal entries%s)", raft_dir,
                len(entries), ", snapshot" if new_snapshot else "")
    return True


def _write_converted(raft_dir, path, entries, meta, new_snapshot) -> None:
    snapshot = os.path.join(raft_dir, SNAPSHOT_NAME)
    new_journal = path + ".migrated"
    fd = os.open(new_journal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, _header() + b"".join(encode_record(*entry) for entry in entries))
        os.fsync(fd)
    finally:
        os.close(fd)
    payload = json.dumps({"term": int(meta.get("currentTerm", 0)), "voted_for": meta.get("votedForNodeId")}).encode()
    _write_file_durably(path + ".state", STATE_MAGIC + struct.pack("<I", len(payload)) + payload +
                        struct.pack("<I", zlib.crc32(payload)))
    head = COMMIT_MAGIC + struct.pack("<Q", int(meta.get("raftCommitIndex", 1)))
    _write_file_durably(path + ".commit", head + struct.pack("<I", zlib.crc32(head)))
    if new_snapshot:
        os.rename(new_snapshot, snapshot)
    os.rename(new_journal, path)
    _fsync_dir(raft_dir)
    try:
        os.unlink(path + ".meta")
    except FileNotFoundError:
        pass


def _b64_entry(entry) -> list:
    import base64
    return [base64.b64encode(bytes(entry[0])).decode(), int(entry[1]), int(entry[2])]


class DurableJournal(Journal):
    """pysyncobj's Journal on a checksummed, fsync'd append-only file. All calls come from pysyncobj's tick
    thread except `healthy`/`error`/`stats` reads and abort()."""

    def __init__(self, path: str, snapshot_path: str | None = None):
        self.path = os.path.abspath(path)
        self.dir = os.path.dirname(self.path)
        self._state_path = self.path + ".state"
        self._commit_path = self.path + ".commit"
        self.healthy = True
        self.error: str | None = None
        self.stats = {"fsyncs": 0, "entries_synced": 0, "bytes_synced": 0, "compactions": 0}
        self._abort = threading.Event()
        self._pending = bytearray()      # records added since the last sync, not yet in the file
        self._dirty = False              # the file or the buffer changed since the last fsync
        self._unsynced_entries = 0
        self._compact_due: float | None = None
        self._compact_delay = 1.0
        self._term, self._voted_for = _read_state(self._state_path)
        self._commit = _read_commit(self._commit_path)
        self._commit_saved = self._commit
        self._fd = -1
        self._open(snapshot_path)

    # ---- opening -----------------------------------------------------------------------------
    def _open(self, snapshot_path: str | None) -> None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = None
        if data is None:
            entries, offsets, end, torn = [], [], 0, False
        else:
            entries, offsets, end, torn = scan(self.path, data)
        if end == 0:  # no file, or a crash while it was being created: nothing was ever in it
            if data:
                log.warning("Raft journal %s: torn header of a new journal, starting it again", self.path)
            self._create()
            end = HEADER_SIZE
        else:
            self._fd = os.open(self.path, os.O_RDWR)
            if torn:
                log.warning("Raft journal %s: truncating a torn last record at byte %d (%d bytes; it was never "
                            "acknowledged)", self.path, end, len(data) - end)
                os.ftruncate(self._fd, end)
                os.fsync(self._fd)
        self._entries: list[tuple[bytes, int, int]] = entries
        self._offsets: list[int] = offsets
        self._disk_end = end             # the file holds whole records up to here
        self._end = end                  # and the pending buffer continues from there
        if snapshot_path:
            self._trim_to_snapshot(snapshot_path)

    def _create(self) -> None:
        tmp = self.path + ".new"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, _header())
        os.fsync(fd)
        os.rename(tmp, self.path)
        _fsync_dir(self.dir)
        self._fd = fd

    def _trim_to_snapshot(self, snapshot_path: str) -> None:
        """Drop entries the snapshot already covers. The snapshot is made durable before pysyncobj
        compacts the journal; a crash between the two leaves older entries at the head of the file, and
        pysyncobj would then throw the whole journal away (its log no longer starts at the snapshot's
        entries). Trimming them here keeps every entry after the snapshot."""
        from swarmctl.state.snapshot import read_snapshot_meta
        try:
            meta = read_snapshot_meta(snapshot_path)
        except FileNotFoundError:
            return
        prev_idx = meta["prev"][1]
        if not self._entries or self._entries[0][1] >= prev_idx or self._entries[-1][1] < prev_idx:
            return
        cut = prev_idx - self._entries[0][1]
        log.info("Raft journal %s: dropping %d entries the snapshot covers", self.path, cut)
        del self._entries[:cut]
        del self._offsets[:cut]
        self._compact_due = time.monotonic()

    # ---- the Journal interface ---------------------------------------------------------------
    def add(self, command, idx, term):
        command = bytes(command)
        record = encode_record(command, idx, term)
        self._entries.append((command, idx, term))
        self._offsets.append(self._end)
        self._pending += record
        self._end += len(record)
        self._unsynced_entries += 1
        self._dirty = True

    def clear(self):
        self._entries, self._offsets = [], []
        self._pending.clear()
        self._unsynced_entries = 0
        self._durably(lambda: os.ftruncate(self._fd, HEADER_SIZE))
        self._disk_end = self._end = HEADER_SIZE
        self._compact_due = None
        self._dirty = True

    def deleteEntriesFrom(self, entryFrom):
        if entryFrom >= len(self._entries):
            return
        entryFrom = max(entryFrom, 0)
        offset = self._offsets[entryFrom] if entryFrom < len(self._offsets) else self._end
        removed = len(self._entries) - entryFrom
        del self._entries[entryFrom:]
        del self._offsets[entryFrom:]
        if offset >= self._disk_end:
            del self._pending[offset - self._disk_end:]
            self._unsynced_entries = max(0, self._unsynced_entries - removed)
        else:
            self._pending.clear()
            self._unsynced_entries = 0
            self._durably(lambda: os.ftruncate(self._fd, offset))
            self._disk_end = offset
        self._end = offset
        self._dirty = True

    def deleteEntriesTo(self, entryTo):
        if entryTo <= 0:
            return
        del self._entries[:entryTo]
        del self._offsets[:entryTo]
        self._compact()

    def __getitem__(self, item):
        return self._entries[item]

    def __len__(self):
        return len(self._entries)

    def _destroy(self):
        if self._fd < 0:
            return
        self._abort.set()  # one try, no waiting
        try:
            self.sync()
        except StorageError:
            pass
        self._save_commit()
        os.close(self._fd)
        self._fd = -1

    def flush(self):
        self.sync()

    def setRaftCommitIndex(self, raftCommitIndex):
        self._commit = raftCommitIndex

    def getRaftCommitIndex(self):
        return self._commit

    def setCurrentTerm(self, term, votedForNodeId):
        if (term, votedForNodeId) == (self._term, self._voted_for):
            return
        payload = json.dumps({"term": term, "voted_for": votedForNodeId}).encode()
        data = STATE_MAGIC + struct.pack("<I", len(payload)) + payload + struct.pack("<I", zlib.crc32(payload))
        self._durably(lambda: _write_file_durably(self._state_path, data))
        self._term, self._voted_for = term, votedForNodeId

    def getCurrentTerm(self):
        return self._term

    def getVotedForNodeId(self):
        return self._voted_for

    def onOneSecondTimer(self):
        self._save_commit()
        if self._compact_due is not None and time.monotonic() >= self._compact_due:
            self._compact()

    # ---- durability --------------------------------------------------------------------------
    def sync(self) -> None:
        """Write what was added and fdatasync once; a no-op when nothing changed (group commit)."""
        if self._dirty:
            self._durably(self._write_pending)

    def before_send(self, message: dict) -> None:
        """Call before the Raft transport sends `message`: an append_entries that carries entries (whole,
        or in transmission chunks) or a successful next_node_idx (an acknowledgement) leaves only once
        this journal is on disk. Every other message needs nothing: votes and terms are durable already."""
        kind = message.get("type")
        if (kind == "append_entries" and (message.get("entries") or "transmission" in message)) or \
                (kind == "next_node_idx" and message.get("success")):
            self.sync()

    def on_tick(self) -> None:
        """pysyncobj tick callback: the leader's own new entries reach the disk before the next tick
        counts the leader towards the commit index."""
        if self._dirty:
            self.sync()

    def abort(self) -> None:
        """Stop waiting for the disk (the store is being destroyed): a sync that is failing raises
        StorageError instead of retrying; one that succeeds is unaffected."""
        self._abort.set()

    def _write_pending(self) -> None:
        offset = self._disk_end
        with memoryview(self._pending) as pending:
            while offset < self._end:
                offset += os.pwrite(self._fd, pending[offset - self._disk_end:], offset)
        os.fdatasync(self._fd)
        self.stats["fsyncs"] += 1
        self.stats["entries_synced"] += self._unsynced_entries
        self.stats["bytes_synced"] += len(self._pending)
        self._disk_end = self._end
        self._pending.clear()
        self._unsynced_entries = 0
        self._dirty = False

    def _durably(self, operation) -> None:
        """Run a storage operation until it succeeds. On an OSError the file goes back to its last good
        record and the journal reports itself unhealthy; the data is still in memory and is written again
        on the next try, so a full disk only delays this thread. Returns only on success."""
        delay = _PROBE_FIRST
        while True:
            try:
                operation()
            except OSError as exc:
                self._failed(exc)
                if self._abort.wait(delay):
                    raise StorageError(f"Raft journal {self.path} is closed ({self.error})") from None
                delay = min(delay * 2, _PROBE_MAX)
                continue
            if not self.healthy:
                log.warning("Raft journal %s is writable again", self.path)
                self.healthy, self.error = True, None
            return

    def _failed(self, exc: OSError) -> None:
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        message = f"{reason}: cannot write the Raft journal {self.path}"
        if self.healthy or message != self.error:
            log.error("%s; retrying until it can (writes are refused meanwhile)", message)
        self.error, self.healthy = message, False
        try:  # back to the last good record: a failed write may have left part of one, or pages the
            os.ftruncate(self._fd, self._disk_end)  # kernel dropped after a failed fsync
        except OSError:
            pass

    def _compact(self) -> None:
        """Rewrite the kept entries into a new file (fsync, rename, fsync dir). If that fails, the old
        file stays: it holds the kept entries too, and older ones the snapshot covers (trimmed on open)."""
        tmp = self.path + ".compact"
        start = self._offsets[0] if self._offsets else self._end
        fd = -1
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, _header())
            _copy_range(self._fd, fd, start, self._disk_end)
            with memoryview(self._pending) as pending:
                written = 0
                while written < len(pending):
                    written += os.write(fd, pending[written:])
            os.fsync(fd)
            os.rename(tmp, self.path)
            _fsync_dir(self.dir)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            log.warning("Raft journal %s: compaction failed (%s); keeping the old file, retrying in %.0f s",
                        self.path, exc.strerror or exc, self._compact_delay)
            self._compact_due = time.monotonic() + self._compact_delay
            self._compact_delay = min(self._compact_delay * 2, _COMPACT_RETRY_MAX)
            return
        os.close(self._fd)
        self._fd = fd
        shift = HEADER_SIZE - start
        self._offsets = [o + shift for o in self._offsets]
        self._end += shift
        self._disk_end = self._end
        self.stats["entries_synced"] += self._unsynced_entries
        self._pending.clear()
        self._unsynced_entries = 0
        self._dirty = False
        self._compact_due, self._compact_delay = None, 1.0
        self.stats["compactions"] += 1

    def _save_commit(self) -> None:
        if self._commit == self._commit_saved:
            return
        head = COMMIT_MAGIC + struct.pack("<Q", self._commit)
        try:
            fd = os.open(self._commit_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, head + struct.pack("<I", zlib.crc32(head)), 0)
            finally:
                os.close(fd)
        except OSError as exc:  # a hint only; the next second tries again
            log.debug("cannot store the commit index hint %s: %s", self._commit_path, exc)
            return
        self._commit_saved = self._commit


# ---- installing it into pysyncobj ------------------------------------------------------------
_registered: dict[str, DurableJournal] = {}
_registry_lock = threading.Lock()
_pysyncobj_create_journal = _syncobj_module.createJournal


def _create_journal(journalFile=None):
    """Stands in for pysyncobj.syncobj.createJournal: the journal open_journal() registered for this path,
    else pysyncobj's own (MemoryJournal or FileJournal)."""
    if journalFile is not None:
        with _registry_lock:
            journal = _registered.pop(os.path.abspath(journalFile), None)
        if journal is not None:
            return journal
    return _pysyncobj_create_journal(journalFile)


def install() -> None:
    """Make SyncObj.__init__ build registered journals (idempotent)."""
    _syncobj_module.createJournal = _create_journal


def open_journal(path: str, snapshot_path: str | None = None) -> DurableJournal:
    """Open the durable journal at path and register it, so the next SyncObj built with
    conf.journalFile == path uses it."""
    try:
        journal = DurableJournal(path, snapshot_path)
    except OSError as exc:
        raise StorageError(f"{(exc.strerror or str(exc)).lower()}: cannot open the Raft journal {path}") from None
    with _registry_lock:
        _registered[journal.path] = journal
    install()
    return journal


def unregister(journal: DurableJournal) -> None:
    with _registry_lock:
        if _registered.get(journal.path) is journal:
            del _registered[journal.path]
