"""Raft snapshots that do not stall pysyncobj's tick thread (docs/design.md, "Raft storage").

pysyncobj accepts conf `serializer`, `deserializer` and `serializeChecker`. With them it passes the
serializer only (last applied entry, the entry before it, cluster nodes), restores no consumer itself, asks
the checker on every tick until it reports SUCCESS or FAILED, and truncates its journal only after SUCCESS.

- serialize() runs on the tick thread and takes only a consistent, cheap copy: the state machine's per-kind
  dicts and request memory (records are immutable, so they are shared, not copied; about 5 ms at 100k
  tasks). A background thread encodes, compresses, checksums and fsyncs it into `PATH.writing`.
- check() (the serializeChecker, tick thread) renames the finished file over PATH, fsyncs the directory and
  only then reports SUCCESS. Renaming on the tick thread means a snapshot received from the leader meanwhile
  (which pysyncobj renames into place on the tick thread too) is never overwritten by an older one: loading
  it cancels the local job.
- pysyncobj renames `PATH.tmp` over PATH right after the serializer returns. serialize() makes sure no such
  file exists, so that rename fails (pysyncobj catches it) and can never put an incomplete file in place.
- The background thread encodes a few hundred records per call, so it gives the GIL back often, and never
  builds a list of all records, which would trigger a full garbage collection (70+ ms at 100k tasks).

File format (no pickle: records are JSON-compatible):

    b"SWCTLSNP" | u32 format | u32 n | n bytes of JSON meta | u32 CRC32 of everything before it
    zlib stream of JSON lines: {"index": N, "kinds": [...]}, ["applied", [[request_id, result], ...]],
                               ["records", kind, {id: record, ...}] (500 records a line)
    u64 length of the zlib stream | u32 CRC32 of it | b"SWSNPEND"

The meta holds the two Raft entries (command in base64, index, term) and the cluster as a list of addresses,
so the journal can read where the snapshot ends without decoding it.
"""

from __future__ import annotations

import base64
import gc
import itertools
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections import OrderedDict

from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import TCPNode

from swarmctl.state.journal import RECOVERY, StorageError, _fsync_dir, damaged

log = logging.getLogger(__name__)

MAGIC = b"SWCTLSNP"
END_MAGIC = b"SWSNPEND"
FORMAT = 1
_TRAILER = struct.Struct("<QI8s")
CHUNK = 500          # records per encoded line: one json call holds the GIL for about a millisecond
LEVEL = 1            # zlib level: 100k tasks compress 15:1 at level 1 already
_READ = 1 << 20


def _entry_out(entry) -> list:
    command, idx, term = entry
    return [base64.b64encode(bytes(command)).decode(), idx, term]


def _entry_in(value) -> tuple[bytes, int, int]:
    return base64.b64decode(value[0]), int(value[1]), int(value[2])


def read_snapshot_meta(path: str) -> dict:
    """The snapshot's header: its two Raft entries ("last", "prev" as [b64, index, term]), cluster, index."""
    with open(path, "rb") as f:
        meta, _ = _read_head(path, f)
    return meta


def _read_head(path: str, f) -> tuple[dict, int]:
    head = f.read(16)
    if len(head) < 16 or head[:8] != MAGIC:
        raise damaged(path, "not a swarmctl Raft snapshot")
    fmt, length = struct.unpack_from("<II", head, 8)
    if fmt != FORMAT:
        raise damaged(path, f"unknown snapshot format {fmt}")
    if length > 1 << 24:
        raise damaged(path, f"impossible header length {length}")
    body = f.read(length + 4)
    if len(body) != length + 4 or struct.unpack_from("<I", body, length)[0] != zlib.crc32(head + body[:length]):
        raise damaged(path, "header CRC mismatch")
    try:
        meta = json.loads(body[:length])
        meta["last"][1], meta["prev"][1]
    except (ValueError, KeyError, IndexError, TypeError):
        raise damaged(path, "unreadable header") from None
    return meta, 16 + length + 4


def verify_snapshot(path: str) -> dict:
    """Check the whole file's checksums; returns its meta. Raises StorageError naming the file."""
    try:
        with open(path, "rb") as f:
            meta, body_start = _read_head(path, f)
            size = os.fstat(f.fileno()).st_size
            if size < body_start + _TRAILER.size:
                raise damaged(path, "truncated")
            f.seek(size - _TRAILER.size)
            body_len, body_crc, end = _TRAILER.unpack(f.read(_TRAILER.size))
            if end != END_MAGIC or body_len != size - body_start - _TRAILER.size:
                raise damaged(path, "truncated or bad trailer")
            f.seek(body_start)
            crc, left = 0, body_len
            while left:
                block = f.read(min(_READ, left))
                if not block:
                    raise damaged(path, "truncated")
                crc = zlib.crc32(block, crc)
                left -= len(block)
            if crc != body_crc:
                raise damaged(path, "CRC mismatch")
    except OSError as exc:
        raise StorageError(f"cannot read the Raft snapshot {path}: {exc.strerror}; {RECOVERY}") from None
    return meta


def load_snapshot(path: str) -> tuple[dict, dict]:
    """(state machine snapshot, meta) from a verified file. Raises StorageError if it is damaged."""
    meta = verify_snapshot(path)
    snap = {"data": {}, "index": 0, "applied": OrderedDict()}
    with open(path, "rb") as f:
        _, body_start = _read_head(path, f)
        size = os.fstat(f.fileno()).st_size
        left = size - body_start - _TRAILER.size
        inflate, rest = zlib.decompressobj(), b""
        try:
            while left:
                block = f.read(min(_READ, left))
                left -= len(block)
                lines = (rest + inflate.decompress(block)).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    _load_line(snap, json.loads(line))
            rest += inflate.flush()
            if rest.strip():
                _load_line(snap, json.loads(rest))
        except (zlib.error, ValueError, KeyError, TypeError, IndexError) as exc:
            raise damaged(path, f"undecodable content: {exc}") from None
    return snap, meta


def _load_line(snap: dict, item) -> None:
    if isinstance(item, dict):
        snap["index"] = item["index"]
        for kind in item.get("kinds", ()):
            snap["data"].setdefault(kind, {})
    elif item[0] == "applied":
        snap["applied"].update(item[1])
    elif item[0] == "records":
        snap["data"].setdefault(item[1], {}).update(item[2])
    else:
        raise ValueError(f"unknown line {item[0]!r}")


def write_snapshot(path: str, snap: dict, meta: dict, cancelled: threading.Event | None = None) -> int:
    """Encode, compress, checksum and fsync a snapshot into path (not renamed); returns its size."""
    encode = json.JSONEncoder(separators=(",", ":")).encode
    with open(path, "wb") as f:
        meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
        head = MAGIC + struct.pack("<II", FORMAT, len(meta_bytes)) + meta_bytes
        f.write(head + struct.pack("<I", zlib.crc32(head)))
        deflate = zlib.compressobj(LEVEL)
        crc, length = 0, 0

        def emit(data: bytes) -> None:
            nonlocal crc, length
            if data:
                f.write(data)
                crc = zlib.crc32(data, crc)
                length += len(data)

        emit(deflate.compress(encode({"index": snap["index"], "kinds": list(snap["data"])}).encode() + b"\n"))
        groups = [("applied", None, snap["applied"])] + [("records", kind, records)
                                                          for kind, records in snap["data"].items()]
        for tag, kind, items in groups:
            it = iter(items.items())
            while True:
                if cancelled is not None and cancelled.is_set():
                    raise InterruptedError("snapshot cancelled")
                part = dict(itertools.islice(it, CHUNK))  # a slice at a time: no list of all records
                if not part:
                    break
                line = ["applied", list(part.items())] if tag == "applied" else ["records", kind, part]
                emit(deflate.compress(encode(line).encode() + b"\n"))
        emit(deflate.flush())
        f.write(_TRAILER.pack(length, crc, END_MAGIC))
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


class _Job:
    def __init__(self, temp: str):
        self.temp = temp
        self.done = threading.Event()
        self.cancelled = threading.Event()
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.size = 0


class SnapshotStore:
    """pysyncobj's serializer, deserializer and serializeChecker for one StateMachine and snapshot path."""

    def __init__(self, machine, path: str, on_loaded=None):
        self.machine = machine
        self.on_loaded = on_loaded  # called on the tick thread after every load
        self.path = os.path.abspath(path)
        self.dir = os.path.dirname(self.path)
        self._job: _Job | None = None
        self.last: dict = {}   # figures of the last finished snapshot: seconds, bytes, records

    on_written = None  # callback(seconds) after a snapshot is durable

    def conf(self) -> dict:
        return {"serializer": self.serialize, "deserializer": self.deserialize, "serializeChecker": self.check}

    # ---- taking one (tick thread, then a background thread) -----------------------------------
    def serialize(self, tmp_file: str, data) -> None:
        job = _Job(self.path + ".writing")
        self._job = job
        try:
            last, prev, cluster = data
            snap = self.machine.snapshot()  # per-kind dict copies under the machine's lock, records shared
            meta = {"last": _entry_out(last), "prev": _entry_out(prev),
                    "cluster": sorted(node.address if hasattr(node, "address") else str(node) for node in cluster),
                    "index": snap["index"], "records": sum(len(r) for r in snap["data"].values())}
            threading.Thread(target=self._write, args=(job, snap, meta), name="swarmctl-snapshot",
                             daemon=True).start()
        except Exception as exc:  # reported as FAILED by check(), exactly once, as pysyncobj needs
            job.error = exc
            job.done.set()
        try:  # see the module doc: pysyncobj's own rename of tmp_file must find nothing to rename
            os.unlink(tmp_file)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove %s: %s", tmp_file, exc)

    def _write(self, job: _Job, snap: dict, meta: dict) -> None:
        try:
            job.size = write_snapshot(job.temp, snap, meta, job.cancelled)
            self.last = {"seconds": time.monotonic() - job.started, "bytes": job.size, "records": meta["records"],
                         "index": meta["last"][1]}
            if self.on_written is not None:  # the daemon's metrics: swarm_raft_snapshot_latency_seconds
                self.on_written(self.last["seconds"])
        except BaseException as exc:
            job.error = exc
        finally:
            job.done.set()

    def check(self) -> int:
        """serializeChecker: SUCCESS once the snapshot is durable in place, FAILED once if it could not be."""
        job = self._job
        if job is None:
            return SERIALIZER_STATE.NOT_SERIALIZING
        if not job.done.is_set():
            return SERIALIZER_STATE.SERIALIZING
        self._job = None
        if job.error is None and not job.cancelled.is_set():
            try:
                os.rename(job.temp, self.path)
                _fsync_dir(self.dir)
                return SERIALIZER_STATE.SUCCESS
            except OSError as exc:
                job.error = exc
        if not job.cancelled.is_set():
            log.warning("Raft snapshot %s not written: %s", self.path, job.error)
        try:
            os.unlink(job.temp)
        except OSError:
            pass
        return SERIALIZER_STATE.FAILED

    def busy(self) -> bool:
        return self._job is not None

    # ---- loading one (tick thread) ------------------------------------------------------------
    def deserialize(self, path: str):
        """Restore the machine from path; returns (last entry, entry before it, cluster nodes) for pysyncobj.

        Runs at start and when a snapshot from the leader was received (pysyncobj renamed it into place
        without fsync: make it durable before the journal is cleared)."""
        job = self._job
        if job is not None:
            job.cancelled.set()  # whatever this replica was writing is older than what it loads now
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(os.path.dirname(os.path.abspath(path)))
        collecting = gc.isenabled()
        gc.disable()  # decoding makes ~5 containers per record, all live: collector passes over the growing
        try:          # heap would triple the load time, and decoded JSON holds no cycles to collect
            snap, meta = load_snapshot(path)
            self.machine.restore(snap)
        finally:
            if collecting:
                gc.enable()
        if self.on_loaded is not None:
            self.on_loaded()
        return _entry_in(meta["last"]), _entry_in(meta["prev"]), [TCPNode(addr) for addr in meta["cluster"]]
