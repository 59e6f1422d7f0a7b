"""The durable Raft journal (swarmctl/state/journal.py): file format, damage, compaction, durability rules,
disk full on a real tiny tmpfs, and how it is installed into pysyncobj."""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import tempfile
import threading
import time
import zlib

import pytest

from swarmctl.state import journal as journal_mod
from swarmctl.state.journal import (HEADER_SIZE, DurableJournal, StorageError, check_storage, encode_record,
                                    open_journal)


def _journal(tmp_path, name="raft.journal"):
    return DurableJournal(str(tmp_path / name))


def _fill(j, count, start=1, term=1, size=10):
    for i in range(start, start + count):
        j.add(bytes([i % 256]) * size, i, term)


def test_round_trip_with_ints_negative_ints_and_slices(tmp_path):
    j = _journal(tmp_path)
    _fill(j, 50)
    j.sync()
    j._destroy()
    k = _journal(tmp_path)
    assert len(k) == 50
    assert k[0] == (b"\x01" * 10, 1, 1)
    assert k[-1] == (bytes([50]) * 10, 50, 1)
    assert [e[1] for e in k[10:13]] == [11, 12, 13]
    assert [e[1] for e in k[-2:]] == [49, 50]
    assert isinstance(k[0][0], bytes)


def test_unsynced_entries_never_reach_the_file_and_one_fsync_covers_many(tmp_path):
    j = _journal(tmp_path)
    _fill(j, 100)
    assert os.path.getsize(j.path) == HEADER_SIZE  # nothing written before sync: add() does no I/O
    j.sync()
    j.sync()  # clean: no second fsync
    assert j.stats["fsyncs"] == 1 and j.stats["entries_synced"] == 100


@pytest.mark.parametrize("message,syncs", [
    ({"type": "append_entries", "entries": [(b"x", 3, 1)], "term": 1}, True),
    ({"type": "append_entries", "transmission": "start", "data": b"x"}, True),
    ({"type": "append_entries", "entries": [], "term": 1}, False),  # a heartbeat
    ({"type": "append_entries", "serialized": (b"x", True, False)}, False),  # snapshot bytes: durable file
    ({"type": "next_node_idx", "success": True, "reset": False, "next_node_idx": 4}, True),
    ({"type": "next_node_idx", "success": False, "reset": True, "next_node_idx": 4}, False),
    ({"type": "response_vote", "term": 2}, False),  # the vote is durable before it is sent
    ({"type": "request_vote", "term": 2}, False),
])
def test_before_send_syncs_exactly_before_entries_and_acknowledgements(tmp_path, message, syncs):
    j = _journal(tmp_path)
    _fill(j, 3)
    j.before_send(message)
    assert (j.stats["fsyncs"] == 1) is syncs
    assert (os.path.getsize(j.path) > HEADER_SIZE) is syncs


def test_tick_callback_syncs_when_dirty(tmp_path):
    j = _journal(tmp_path)
    j.on_tick()
    assert j.stats["fsyncs"] == 0
    _fill(j, 2)
    j.on_tick()
    assert j.stats["fsyncs"] == 1
    assert len(_journal(tmp_path, "raft.journal")) == 2


def test_torn_tail_is_truncated_with_a_warning(tmp_path, caplog):
    j = _journal(tmp_path)
    _fill(j, 5)
    j.sync()
    j._destroy()
    good = os.path.getsize(j.path)
    with open(j.path, "ab") as f:
        f.write(encode_record(b"y" * 100, 6, 1)[:60])  # a record cut off by a crash mid-write
    check_storage(str(tmp_path))  # a torn tail is not damage
    with caplog.at_level(logging.WARNING, logger="swarmctl.state.journal"):
        k = _journal(tmp_path)
    assert len(k) == 5 and os.path.getsize(j.path) == good
    assert "torn last record" in caplog.text
    k.add(b"z", 6, 1)
    k.sync()
    k._destroy()
    assert [e[1] for e in _journal(tmp_path)[:]] == [1, 2, 3, 4, 5, 6]


def test_torn_header_of_a_new_journal_starts_again(tmp_path):
    path = tmp_path / "raft.journal"
    path.write_bytes(b"SWCTL")
    j = DurableJournal(str(path))
    assert len(j) == 0 and path.stat().st_size == HEADER_SIZE


def _corrupt(path, offset, value=b"\xff"):
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ value[0]]))


@pytest.mark.parametrize("where,what", [
    ("command", "record CRC mismatch"),
    ("header", "record header CRC mismatch"),
    ("file", "bad header"),
])
def test_damage_is_refused_naming_the_file(tmp_path, where, what):
    j = _journal(tmp_path)
    _fill(j, 10)
    j.sync()
    j._destroy()
    record = len(encode_record(b"x" * 10, 1, 1))
    offset = {"command": HEADER_SIZE + 3 * record + 30, "header": HEADER_SIZE + 3 * record + 5, "file": 9}[where]
    _corrupt(j.path, offset)
    with pytest.raises(StorageError) as err:
        check_storage(str(tmp_path))
    message = str(err.value)
    assert j.path in message and what in message and "\n" not in message
    assert "--force-new-cluster" in message and "join this node again" in message
    with pytest.raises(StorageError):
        _journal(tmp_path)


def test_impossible_length_and_gaps_are_damage(tmp_path):
    j = _journal(tmp_path)
    _fill(j, 2)
    j.sync()
    j._destroy()
    head = struct.pack("<IQQ", (1 << 30) + 1, 3, 1)
    with open(j.path, "ab") as f:
        f.write(head + struct.pack("<II", zlib.crc32(head), 0) + b"x" * 100)
    with pytest.raises(StorageError, match="impossible record length"):
        check_storage(str(tmp_path))
    os.truncate(j.path, HEADER_SIZE + 2 * len(encode_record(b"x" * 10, 1, 1)))
    with open(j.path, "ab") as f:
        f.write(encode_record(b"x", 7, 1))
    with pytest.raises(StorageError, match="record index 7 after 2"):
        check_storage(str(tmp_path))


def test_pysyncobj_format_is_named(tmp_path):
    (tmp_path / "raft.journal").write_bytes(b"PYSYNCOBJ" + b"\0" * 40)
    with pytest.raises(StorageError, match="older swarmctl in pysyncobj's own format"):
        DurableJournal(str(tmp_path / "raft.journal"))


def _legacy_dir(tmp_path, machine, member="127.0.0.1:1"):
    """A Raft dir as swarmctl wrote it before: pysyncobj's FileJournal, pickled meta, gzip-pickled snapshot."""
    import gzip
    import pysyncobj.pickle as legacy_pickle
    from pysyncobj.journal import FileJournal
    from pysyncobj.node import TCPNode
    legacy = FileJournal(str(tmp_path / "raft.journal"))
    for i in range(1, 6):
        legacy.add(b"\x01", i, 2)  # no-op entries: replayable by any replica
    legacy.setCurrentTerm(2, member)
    legacy.setRaftCommitIndex(5)
    legacy.onOneSecondTimer()
    legacy._destroy()
    with gzip.open(tmp_path / "raft.snapshot", "wb") as g:
        legacy_pickle.dump(([{}, machine.snapshot()], (b"\x01", 2, 2), (b"\x01", 1, 2),
                            {TCPNode(member)}), g)


def test_legacy_pysyncobj_dir_is_converted_in_place(tmp_path):
    from swarmctl.state.journal import migrate_legacy
    from swarmctl.state.machine import StateMachine
    from swarmctl.state.snapshot import load_snapshot
    machine = StateMachine()
    machine.apply_batch([("r1", 1.0, [{"op": "create", "kind": "node", "id": "n1", "record": {"a": 1}}])])
    _legacy_dir(tmp_path, machine)
    assert journal_mod.migrate_legacy(str(tmp_path)) is True
    assert migrate_legacy(str(tmp_path)) is False  # done once
    check_storage(str(tmp_path))
    j = _journal(tmp_path)
    assert [e[1:] for e in j[:]] == [(i, 2) for i in range(1, 6)]
    assert (j.getCurrentTerm(), j.getVotedForNodeId()) == (2, "127.0.0.1:1")
    assert j.getRaftCommitIndex() == 5
    snap, meta = load_snapshot(str(tmp_path / "raft.snapshot"))
    assert snap["data"]["node"] == machine.data["node"] and meta["last"][1:] == [2, 2]
    assert meta["cluster"] == ["127.0.0.1:1"] and not (tmp_path / "raft.journal.meta").exists()


def test_unreadable_legacy_dir_is_damage(tmp_path):
    (tmp_path / "raft.journal").write_bytes(b"PYSYNCOBJ" + b"\0" * 27 + b"\xff\xff\x00\x00")
    (tmp_path / "raft.snapshot").write_bytes(b"not gzip")
    with pytest.raises(StorageError, match="cannot convert pysyncobj's old format"):
        journal_mod.migrate_legacy(str(tmp_path))


def test_compaction_rewrites_atomically_and_keeps_unsynced_entries(tmp_path):
    j = _journal(tmp_path)
    _fill(j, 100)
    j.sync()
    _fill(j, 5, start=101)  # not synced yet: compaction must carry them
    before = os.path.getsize(j.path)
    j.deleteEntriesTo(90)
    assert [e[1] for e in j[:3]] == [91, 92, 93] and len(j) == 15
    assert os.path.getsize(j.path) < before
    assert not os.path.exists(j.path + ".compact")
    j.add(b"after", 106, 2)
    j.sync()
    j._destroy()
    k = _journal(tmp_path)
    assert [e[1] for e in k[:]] == list(range(91, 107)) and k[-1] == (b"after", 106, 2)


def test_delete_entries_from_truncates_synced_and_pending_parts(tmp_path):
    j = _journal(tmp_path)
    _fill(j, 10)
    j.sync()
    _fill(j, 5, start=11)
    j.deleteEntriesFrom(12)  # inside the pending buffer
    assert len(j) == 12
    j.deleteEntriesFrom(6)  # inside the file
    j.add(b"new", 7, 2)
    j.sync()
    j._destroy()
    k = _journal(tmp_path)
    assert [e[1] for e in k[:]] == [1, 2, 3, 4, 5, 6, 7] and k[-1] == (b"new", 7, 2)


def test_clear_then_add(tmp_path):
    j = _journal(tmp_path)
    _fill(j, 10)
    j.sync()
    j.clear()
    j.add(b"a", 500, 3)
    j.add(b"b", 501, 3)
    j.sync()
    j._destroy()
    assert [e[1] for e in _journal(tmp_path)[:]] == [500, 501]


def test_term_and_vote_are_on_disk_when_set_current_term_returns(tmp_path):
    j = _journal(tmp_path)
    assert (j.getCurrentTerm(), j.getVotedForNodeId()) == (0, None)
    j.setCurrentTerm(7, "127.0.0.12:2378")
    # read by a second, independent journal object right away: no later flush is needed
    k = _journal(tmp_path)
    assert (k.getCurrentTerm(), k.getVotedForNodeId()) == (7, "127.0.0.12:2378")
    assert not os.path.exists(j.path + ".state.tmp")
    j.setCurrentTerm(8, None)
    assert _journal(tmp_path).getCurrentTerm() == 8
    _corrupt(j.path + ".state", 20)
    with pytest.raises(StorageError, match="raft.journal.state"):
        check_storage(str(tmp_path))


def test_commit_index_is_a_lazy_hint(tmp_path):
    j = _journal(tmp_path)
    j.setRaftCommitIndex(42)
    assert _journal(tmp_path).getRaftCommitIndex() == 1  # not stored yet: lazy
    j.onOneSecondTimer()
    assert _journal(tmp_path).getRaftCommitIndex() == 42
    with open(j.path + ".commit", "r+b") as f:
        f.write(b"garbage")
    assert _journal(tmp_path).getRaftCommitIndex() == 1  # a torn hint is ignored, not fatal
    check_storage(str(tmp_path))


def test_snapshot_covered_head_is_trimmed_on_open(tmp_path):
    """A crash after the snapshot is durable but before compaction leaves older entries at the head; they
    are dropped on open, so pysyncobj (whose log must start at the snapshot's entries) keeps the rest."""
    from swarmctl.state.machine import StateMachine
    from swarmctl.state.snapshot import write_snapshot
    j = _journal(tmp_path)
    _fill(j, 30)
    j.sync()
    j._destroy()
    meta = {"last": ["", 21, 1], "prev": ["", 20, 1], "cluster": [], "index": 0, "records": 0}
    write_snapshot(str(tmp_path / "raft.snapshot"), StateMachine().snapshot(), meta)
    k = DurableJournal(j.path, str(tmp_path / "raft.snapshot"))
    assert k[0][1] == 20 and k[-1][1] == 30


# ---- disk full on a real, tiny tmpfs -------------------------------------------------------------
@pytest.fixture
def tiny_fs():
    """A 256 KiB tmpfs mounted for the test and unmounted after it (needs root, as the test suite runs)."""
    mount = tempfile.mkdtemp(prefix="swj-tmpfs-")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mount], capture_output=True)
    if result.returncode != 0:
        os.rmdir(mount)
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", mount], check=True)
        os.rmdir(mount)


def _fill_disk(mount):
    """Take every free block of the tmpfs with one file; returns its path."""
    filler = os.path.join(mount, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_disk_full_blocks_until_space_returns_and_stays_consistent(tiny_fs, caplog):
    j = DurableJournal(os.path.join(tiny_fs, "raft.journal"))
    _fill(j, 20, size=100)
    j.sync()
    filler = _fill_disk(tiny_fs)
    _fill(j, 50, start=21, size=1000)  # far more than the few bytes left
    done = threading.Event()
    thread = threading.Thread(target=lambda: (j.sync(), done.set()))
    thread.start()
    deadline = time.monotonic() + 5
    while j.healthy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not j.healthy
    assert j.error == f"no space left on device: cannot write the Raft journal {j.path}"
    time.sleep(0.3)
    assert not done.is_set()  # nothing goes on past an entry that is not on disk
    # consistent meanwhile: the file ends at the last good record
    entries, _, end, torn = journal_mod.scan(j.path, open(j.path, "rb").read())
    assert len(entries) == 20 and not torn and end == os.path.getsize(j.path)
    os.unlink(filler)
    assert done.wait(5)
    thread.join()
    assert j.healthy and j.error is None
    j._destroy()
    k = DurableJournal(j.path)
    assert [e[1] for e in k[:]] == list(range(1, 71))
    k._destroy()


def test_abort_ends_a_blocked_sync(tiny_fs):
    j = DurableJournal(os.path.join(tiny_fs, "raft.journal"))
    filler = _fill_disk(tiny_fs)
    try:
        _fill(j, 50, size=1000)
        errors = []

        def run():
            try:
                j.sync()
            except StorageError as exc:
                errors.append(exc)
        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.2)
        j.abort()
        thread.join(5)
        assert not thread.is_alive() and errors and "is closed" in str(errors[0])
    finally:
        os.unlink(filler)
        j._destroy()


def test_set_current_term_waits_for_space(tiny_fs):
    j = DurableJournal(os.path.join(tiny_fs, "raft.journal"))
    filler = _fill_disk(tiny_fs)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (j.setCurrentTerm(3, "a:1"), done.set()))
    thread.start()
    time.sleep(0.3)
    assert not done.is_set() and not j.healthy
    os.unlink(filler)
    assert done.wait(5)
    thread.join()
    j._destroy()
    k = DurableJournal(j.path)
    assert k.getCurrentTerm() == 3
    k._destroy()


# ---- installing into pysyncobj -------------------------------------------------------------------
def test_factory_hands_out_registered_journals_only(tmp_path):
    import pysyncobj.syncobj as so
    from pysyncobj.journal import FileJournal, MemoryJournal
    path = str(tmp_path / "raft.journal")
    j = open_journal(path)
    assert so.createJournal is journal_mod._create_journal
    assert so.createJournal(path) is j
    other = so.createJournal(str(tmp_path / "other.journal"))  # consumed once; others get pysyncobj's own
    assert isinstance(other, FileJournal)
    other._destroy()
    assert isinstance(so.createJournal(None), MemoryJournal)
    assert j.path not in journal_mod._registered  # a registration is used once
