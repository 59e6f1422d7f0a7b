"""Raft storage faults with real daemons (issue 7): a full disk, a damaged journal or snapshot, a torn
tail, kill -9 of every manager during acknowledged writes, and a follower that catches up by snapshot.

Each scenario forms its own small swarm on 127.0.0.x (tests/integration/harness.py) and stops every
daemon it started, by pid. SWARMCTL_RAFT_COMPACTION_ENTRIES makes the daemons snapshot every few dozen
entries, so snapshots and compaction take part in every scenario. The recovery paths tested here are the
ones docs/operations.md ("Damaged Raft storage") describes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from swarmctl.state.journal import HEADER_SIZE, encode_record, scan
from swarmctl.state.snapshot import read_snapshot_meta
from tests.integration.harness import Cluster, check, wait_for

pytestmark = pytest.mark.timeout(120)

COMPACTION = "25"


@pytest.fixture
def swarm(monkeypatch):
    """A fresh set of daemons that snapshot often; all stopped (by pid) and any tmpfs unmounted after."""
    monkeypatch.setenv("SWARMCTL_RAFT_COMPACTION_ENTRIES", COMPACTION)
    root = tempfile.mkdtemp(prefix="sws-", dir="/tmp")
    c = Cluster(root, heartbeat=0.5)
    c.mounts = []
    try:
        yield c
    finally:
        c.stop_all()
        for mount in c.mounts:
            subprocess.run(["umount", mount], check=False)
        if os.environ.get("SWARMCTL_KEEP_LOGS") is None:
            shutil.rmtree(root, ignore_errors=True)


def write(daemon, key, value="1", timeout=30):
    return daemon.cli("node", "update", "--label-add", f"{key}={value}", "node1", timeout=timeout)


def labels(daemon) -> dict:
    return check(daemon.cli("node", "inspect", "node1")).json()["spec"]["labels"]


def raft_file(daemon, name="raft.journal") -> str:
    return os.path.join(daemon.data_dir, "raft", name)


def leader_of(managers):
    for m in managers:
        if m.running and m.info().get("raft", {}).get("is_leader"):
            return m
    return None


def refused_start(daemon, timeout=20.0) -> str:
    """Start a daemon that must refuse to: returns what it printed; asserts a clean non-zero exit."""
    daemon.start(wait=False)
    code = daemon.proc.wait(timeout)
    out = daemon.tail(5)
    assert code != 0, out
    assert "Traceback" not in out, out
    return out


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        value = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([value ^ 0x5A]))


def fill_disk(mount: str) -> str:
    """Take every free byte of a tmpfs with one file, in smaller and smaller writes; returns its path."""
    filler = os.path.join(mount, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def record_offsets(path: str) -> list[int]:
    with open(path, "rb") as f:
        _, offsets, _, _ = scan(path, f.read())
    return offsets


# ---- disk full ---------------------------------------------------------------------------------
def test_disk_full_refuses_writes_keeps_running_and_recovers(swarm):
    d = swarm.daemon(1, start=False)
    os.makedirs(d.data_dir)
    check_mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", d.data_dir], capture_output=True)
    assert check_mount.returncode == 0, check_mount.stderr
    swarm.mounts.append(d.data_dir)
    d.start()
    check(d.cli("swarm", "init", "--advertise-addr", d.ip))
    for i in range(5):
        check(write(d, f"before{i}"))
    filler = fill_disk(d.data_dir)
    message = f"no space left on device: cannot write the Raft journal {raft_file(d)}"
    for attempt in range(20):  # the journal's last page may still take a record or two
        first = write(d, "while_full_1", "v" * 500, timeout=30)
        if not first.ok:
            break
    # appended to the log, then the sync failed: the outcome is unknown, and the answer says why (507)
    assert first.code != 0 and message in first.err, first
    start = time.monotonic()
    second = write(d, "while_full_2")
    assert second.code != 0 and message in second.err, second
    assert time.monotonic() - start < 2.5  # refused at once, not after a timeout
    assert "Traceback" not in first.err + second.err
    assert d.running and d.cli("info").ok  # the daemon stays up and answers
    # a linearizable read needs a barrier through the log, so it is refused with the same message; `node ls`
    # still shows the last known state, marked as such
    read = d.cli("node", "inspect", "node1")
    assert read.code != 0 and message in read.err, read
    stale = d.cli("node", "ls", "--format", "json")
    assert stale.ok and "last known state" in stale.err, stale
    node1 = next(n for n in stale.json() if n["description"]["hostname"] == "node1")
    assert {f"before{i}" for i in range(5)} <= set(node1["spec"]["labels"])
    os.unlink(filler)
    wait_for(lambda: write(d, "after").ok, timeout=15, what="writes once space is back")
    final = labels(d)
    assert "after" in final and "while_full_2" not in final
    assert "while_full_1" in final  # committed once the disk took it: "may have been applied" was true
    d.stop()
    assert d.proc.returncode == 0
    d.start()  # and the journal written across the episode is intact
    wait_for(lambda: "after" in labels(d), timeout=15, what="state after restart")


# ---- damage at start ---------------------------------------------------------------------------
def test_corrupt_journal_is_refused_and_the_node_rejoins_as_a_new_manager(swarm):
    managers, _ = swarm.form(3, 0)
    for i in range(10):
        check(write(managers[0], f"k{i}"))
    broken = managers[2]
    broken.stop()
    offsets = record_offsets(raft_file(broken))
    assert len(offsets) >= 2
    flip_byte(raft_file(broken), offsets[len(offsets) // 2] + 30)
    out = refused_start(broken)
    assert f"Raft storage file {raft_file(broken)} is damaged (record CRC mismatch" in out, out
    assert "join this node again as a new manager" in out
    # docs/operations.md: demote and remove it on a healthy manager, wipe its data dir, join again
    check(managers[0].cli("node", "demote", "node3"))
    wait_for(lambda: '"down"' in managers[0].cli("node", "inspect", "node3").out, timeout=10, what="node3 down")
    check(managers[0].cli("node", "rm", "node3"))
    shutil.rmtree(broken.data_dir)
    token = check(managers[0].cli("swarm", "join-token", "-q", "manager")).out.strip()
    broken.start()
    check(broken.cli("swarm", "join", "--token", token, managers[0].addr))
    check(write(managers[0], "after_rejoin"))
    wait_for(lambda: {f"k{i}" for i in range(10)} | {"after_rejoin"} <= set(labels(broken)), timeout=20,
             what="the rejoined manager's replica")


def test_corrupt_journal_on_the_last_manager_recovers_with_force_new_cluster_on_a_copy(swarm):
    managers, _ = swarm.form(3, 0)
    for i in range(6):
        check(write(managers[0], f"k{i}"))
    last = managers[0]
    for m in managers:
        m.stop()
    for m in managers[1:]:  # the other managers are gone for good
        shutil.rmtree(m.data_dir)
    offsets = record_offsets(raft_file(last))
    bad = offsets[-1]
    flip_byte(raft_file(last), bad + 30)
    out = refused_start(last)
    assert f"{raft_file(last)} is damaged (record CRC mismatch at byte {bad})" in out, out
    # docs/operations.md: keep the damaged dir, truncate a copy at the named byte, force a new cluster
    shutil.move(last.data_dir, last.data_dir + ".damaged")
    shutil.copytree(last.data_dir + ".damaged", last.data_dir, symlinks=True)
    os.truncate(raft_file(last), bad)
    last.start()
    check(last.cli("swarm", "init", "--force-new-cluster", "--advertise-addr", last.ip))
    check(write(last, "after_recovery"))
    got = labels(last)
    assert "after_recovery" in got and len({f"k{i}" for i in range(6)} & set(got)) >= 5, got


def test_corrupt_snapshot_is_refused_and_a_backup_copy_restores(swarm):
    (d,), _ = swarm.form(1, 0)
    for i in range(40):  # beyond SWARMCTL_RAFT_COMPACTION_ENTRIES: a snapshot exists
        check(write(d, f"k{i}"))
    wait_for(lambda: os.path.exists(raft_file(d, "raft.snapshot")), what="a snapshot")
    d.stop()
    backup = d.data_dir + ".backup"
    shutil.copytree(d.data_dir, backup, symlinks=True)
    snapshot = raft_file(d, "raft.snapshot")
    flip_byte(snapshot, os.path.getsize(snapshot) // 2)
    out = refused_start(d)
    assert f"Raft storage file {snapshot} is damaged (CRC mismatch)" in out, out
    shutil.rmtree(d.data_dir)
    shutil.copytree(backup, d.data_dir, symlinks=True)
    d.start()
    wait_for(lambda: {f"k{i}" for i in range(40)} <= set(labels(d)), timeout=15, what="the restored state")
    check(write(d, "after_restore"))


def test_torn_tail_at_start_is_truncated_and_nothing_acknowledged_is_lost(swarm):
    (d,), _ = swarm.form(1, 0)
    for i in range(8):
        check(write(d, f"k{i}"))
    d.kill()
    path = raft_file(d)
    size = os.path.getsize(path)
    assert size > HEADER_SIZE
    with open(path, "rb") as f:
        last_index = scan(path, f.read())[0][-1][1]
    with open(path, "ab") as f:  # the first part of the next record, as a crash during a write leaves it
        f.write(encode_record(os.urandom(300), last_index + 1, 99)[:150])
    d.start()
    assert "torn last record" in d.tail(400)
    wait_for(lambda: {f"k{i}" for i in range(8)} <= set(labels(d)), timeout=15, what="every acknowledged write")
    check(write(d, "after"))


# ---- crashes and catch-up ----------------------------------------------------------------------
def test_kill_9_of_every_manager_during_acknowledged_writes_loses_none(swarm):
    managers, _ = swarm.form(3, 0)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n):
        for i in range(200):  # bounded; stops at the kill at the latest
            if stop.is_set():
                return
            key = f"w{n}_{i}"
            if write(managers[i % 3], key, timeout=10).ok:
                with lock:
                    acked.append(key)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 60, timeout=60, interval=0.05, what="60 acknowledged writes")
    for m in managers:  # all at once, with writes in flight
        os.kill(m.proc.pid, 9)
    stop.set()
    for m in managers:
        m.proc.wait(10)
    for t in threads:
        t.join(30)
    with lock:
        expected = set(acked)
    assert any(os.path.exists(raft_file(m, "raft.snapshot")) for m in managers)
    for m in managers:
        m.start()
    wait_for(lambda: leader_of(managers), timeout=20, what="a leader after the restart")
    for m in managers:
        wait_for(lambda: expected <= set(labels(m)), timeout=20, what=f"every acknowledged write on {m.name}")


def test_follower_behind_the_compacted_log_catches_up_by_snapshot(swarm):
    managers, _ = swarm.form(3, 0)
    check(write(managers[0], "before"))
    behind = managers[2]
    behind.stop()
    for i in range(60):  # well past the compaction threshold: the entries it lacks are compacted away
        check(write(managers[0], f"k{i}"))
    leader = leader_of(managers)
    wait_for(lambda: os.path.exists(raft_file(leader, "raft.snapshot")), what="a snapshot on the leader")
    first = record_offsets(raft_file(leader))
    with open(raft_file(leader), "rb") as f:
        head_index = scan(raft_file(leader), f.read())[0][0][1]
    assert first and head_index > 5  # the leader's log no longer reaches back to what the follower has
    old_snapshot = read_snapshot_meta(raft_file(behind, "raft.snapshot"))["last"][1] if os.path.exists(
        raft_file(behind, "raft.snapshot")) else 0
    behind.start()
    expected = {"before"} | {f"k{i}" for i in range(60)}
    wait_for(lambda: expected <= set(labels(behind)), timeout=30, what="the follower caught up")
    wait_for(lambda: os.path.exists(raft_file(behind, "raft.snapshot")) and
             read_snapshot_meta(raft_file(behind, "raft.snapshot"))["last"][1] > old_snapshot,
             what="the follower installed the leader's snapshot")
    check(write(managers[0], "after"))
    wait_for(lambda: "after" in labels(behind), what="replication after the catch-up")
