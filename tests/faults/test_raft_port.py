"""The Raft port against what issue 7 lists: an old pysyncobj peer with a Raft secret, the certificate of a
manager that was demoted and removed, a TLS client without a certificate, a 2 GiB length prefix and 10 MB
of random bytes. Each leaves the cluster unaffected (members unchanged, writes go on, nothing unpickled),
and the managers' memory grows by less than 20 MB over all of them.

Real daemons (tests/integration/harness.py) on 127.0.0.11-14; one cluster for the module, formed once.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import ssl
import struct
import tempfile
import time
import zlib

import pytest

from tests.integration.harness import Cluster, check, nodes_json, wait_for

RSS_GROWTH_LIMIT_MB = 20.0
RANDOM_BYTES = 10 * 1024 * 1024


class _Touch:
    """A pickle that, if anybody unpickled it, would create a file: proof that nobody did."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class Swarm:
    def __init__(self, cluster: Cluster, managers, removed, removed_certs: str, root: str):
        self.cluster = cluster
        self.managers = managers          # the three current managers
        self.removed = removed            # the daemon of the manager that was demoted and removed (stopped)
        self.removed_certs = removed_certs
        self.root = root
        self.members = sorted(f"{m.ip}:{m.port + 1}" for m in managers)
        self.baseline: dict[int, float] = {}
        self.writes = 0

    def leader(self):
        for m in self.managers:
            info = m.info()
            if info.get("raft", {}).get("is_leader"):
                return m
        raise AssertionError("no leader")

    def raft_addr(self, daemon) -> tuple[str, int]:
        return daemon.ip, daemon.port + 1

    def canary(self, name: str) -> str:
        return os.path.join(self.root, f"unpickled-{name}")

    def assert_unaffected(self) -> None:
        """Members unchanged on every manager, a write through a follower lands, nothing was unpickled."""
        for m in self.managers:
            assert m.running, m.tail()
            assert sorted(m.info()["raft"]["members"]) == self.members
        leader = self.leader()
        follower = next(m for m in self.managers if m is not leader)
        self.writes += 1
        check(follower.cli("node", "update", "--label-add", f"write={self.writes}", self.managers[0].name))
        wait_for(lambda: all(any(n["spec"]["labels"].get("write") == str(self.writes) for n in nodes_json(m))
                             for m in self.managers), timeout=10, what="the write on every manager")
        assert not [f for f in os.listdir(self.root) if f.startswith("unpickled-")]


@pytest.fixture(scope="module")
def swarm():
    root = tempfile.mkdtemp(prefix="swrp-", dir="/tmp")
    cluster = Cluster(root, heartbeat=0.5)
    try:
        managers, _ = cluster.form(4, 0)
        doomed = managers[3]
        wait_for(lambda: len(doomed.info()["raft"]["members"]) == 4, timeout=20, what="four Raft members")
        saved = os.path.join(root, "removed-certs")
        shutil.copytree(os.path.join(doomed.data_dir, "certs"), saved)
        with open(os.path.join(doomed.data_dir, "raft", "members.json")) as f:
            old_secret = json.load(f).get("secret")  # versions before the TLS transport kept one here
        check(managers[0].cli("node", "demote", doomed.name))
        wait_for(lambda: doomed.info()["role"] == "worker", timeout=30, what="the demoted node to become a worker")
        doomed.stop()
        check(managers[0].cli("node", "rm", "--force", doomed.name))
        s = Swarm(cluster, managers[:3], doomed, saved, root)
        s.old_secret = old_secret or "the-old-raft-secret"
        wait_for(lambda: all(sorted(m.info()["raft"]["members"]) == s.members for m in s.managers),
                 timeout=20, what="three Raft members")
        s.assert_unaffected()
        time.sleep(2.0)  # let the daemons settle before the memory baseline
        s.baseline = {m.proc.pid: rss_mb(m.proc.pid) for m in s.managers}
        yield s
    finally:
        cluster.stop_all()
        if os.environ.get("SWARMCTL_KEEP_LOGS") is None:
            shutil.rmtree(root, ignore_errors=True)


def _tls(swarm: Swarm, daemon, certs: str | None):
    """A TLS connection to a manager's Raft port, presenting the certificate in `certs` (or none)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if certs is not None:
        ctx.load_cert_chain(os.path.join(certs, "node.pem"), os.path.join(certs, "node.key"))
    raw = socket.create_connection(swarm.raft_addr(daemon), timeout=5)
    return ctx.wrap_socket(raw)


def _answer(sock, timeout: float = 5.0) -> tuple[bytes, bool]:
    """(what the peer sent, whether it closed the connection within `timeout`). An admitted peer would
    get an ACCEPT frame; a refused one gets nothing (or a TLS alert) and a closed connection."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if len(data) > 1 << 20:
                return data, False
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        pass
    except socket.timeout:
        return data, False
    return data, True


def _refused_over_tls(swarm, daemon, certs, payload: bytes) -> bool:
    try:
        sock = _tls(swarm, daemon, certs)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    with sock:
        try:
            sock.sendall(payload)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return True
        return _answer(sock) == (b"", True)


def _flood(sock, data: bytes) -> bool:
    """Send data until the peer closes; True if it closed the connection (before or after all of it)."""
    sent = 0
    try:
        while sent < len(data):
            sock.sendall(data[sent:sent + 65536])
            sent += 65536
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        return True
    except socket.timeout:
        pass  # it stopped reading: then it must close
    answer, closed = _answer(sock)
    return closed and len(answer) < 64  # at most a TLS alert


def _refusals(daemon) -> int:
    with open(daemon.log_path, errors="replace") as f:
        return sum(1 for line in f if "raft connection from" in line and "refused" in line)


def _assert_refusal_logged(daemon, before: int) -> None:
    """The daemon logged a refusal (the peer may see the TLS alert a moment before the log line is written;
    the transport logs one line per peer address and reason in 10 s)."""
    wait_for(lambda: _refusals(daemon) > before, timeout=3, interval=0.05, what=f"a refusal in {daemon.name}'s log")


def test_old_pysyncobj_peer_with_a_secret(swarm):
    """A manager of the previous version: pysyncobj's own TCP transport, Fernet-encrypted with the Raft secret
    (the removed manager's, where its data dir had one)."""
    from pysyncobj import SyncObj, SyncObjConf
    from pysyncobj.utility import TcpUtility, UtilityException

    leader = swarm.leader()
    target = "%s:%d" % swarm.raft_addr(leader)
    before = _refusals(leader)
    conf = SyncObjConf(password=swarm.old_secret, dynamicMembershipChange=True, connectionRetryTime=0.2,
                       appendEntriesPeriod=0.05,
                       connectionTimeout=1.0, raftMinTimeout=0.3, raftMaxTimeout=0.6, bindAddress="127.0.0.99:2378")
    old = SyncObj("127.0.0.99:2378", [target], conf)  # its address is greater: it dials the leader
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert old._getLeader() is None and not old.isNodeConnected(next(iter(old.otherNodes)))
            time.sleep(0.1)
        # syncobj_admin's way in: an encrypted 'add' utility message
        for command in (["add", "127.0.0.99:2378"], ["status"]):
            with pytest.raises(UtilityException):
                TcpUtility(password=swarm.old_secret, timeout=3).executeCommand(target, command)
        # and the unencrypted framing with a pickle that would run a command
        payload = zlib.compress(pickle.dumps(_Touch(swarm.canary("old")), 2))
        with socket.create_connection(swarm.raft_addr(leader), timeout=5) as raw:
            raw.sendall(struct.pack("i", len(payload)) + payload)
            answer, closed = _answer(raw)
            assert closed and len(answer) < 64  # at most a TLS alert
    finally:
        old.destroy()
        old._SyncObj__thread.join(5)
    _assert_refusal_logged(leader, before)
    swarm.assert_unaffected()


def test_certificate_of_a_demoted_and_removed_manager(swarm):
    """Its certificate still chains to the CA, but it is no current manager: refused on every manager,
    before the membership message behind its HELLO is read, and refused on the management port too."""
    from swarmctl.state import codec
    from swarmctl.state.transport import HELLO, PICKLE, frame

    removed_addr = "%s:%d" % swarm.raft_addr(swarm.removed)
    membership = b"\x02" + pickle.dumps(["add", "127.0.0.66:2378", "127.0.0.66:2378"], 2)
    append = codec.dumps({"type": "append_entries", "term": 10**6, "commit_index": 0, "prevLogIdx": 1,
                          "prevLogTerm": 0, "entries": [(membership, 2, 10**6)]})
    evil = pickle.dumps({"type": "append_entries", "x": _Touch(swarm.canary("removed"))}, 5)
    for daemon in swarm.managers:
        before = _refusals(daemon)
        for claim in (removed_addr, "%s:%d" % swarm.raft_addr(swarm.managers[-1])):
            hello = frame(HELLO, json.dumps({"addr": claim}).encode())
            assert _refused_over_tls(swarm, daemon, swarm.removed_certs,
                                     hello + frame(PICKLE, append) + frame(PICKLE, evil)), (daemon.name, claim)
        assert _refused_over_tls(swarm, daemon, swarm.removed_certs, frame(PICKLE, evil))  # no HELLO at all
        _assert_refusal_logged(daemon, before)
    # the management port: its requests are refused as well
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(os.path.join(swarm.removed_certs, "ca.pem"))
    ctx.load_cert_chain(os.path.join(swarm.removed_certs, "node.pem"), os.path.join(swarm.removed_certs, "node.key"))
    leader = swarm.leader()
    for method, path in (("GET", "/v1/nodes"), ("POST", "/v1/raft/join"), ("POST", "/v1/session/heartbeat")):
        with socket.create_connection((leader.ip, leader.port), timeout=5) as raw, ctx.wrap_socket(raw) as s:
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                      .encode())
            status = int(_answer(s)[0].split(b" ", 2)[1])
            assert status in (401, 403), (path, status)
    swarm.assert_unaffected()


def test_tls_client_without_a_certificate(swarm):
    for daemon in swarm.managers:
        before = _refusals(daemon)
        assert _refused_over_tls(swarm, daemon, None, b"\0\0\0\x10\x01" + b"{}" * 8)
        _assert_refusal_logged(daemon, before)
    swarm.assert_unaffected()


def test_a_2_gib_length_prefix(swarm):
    leader = swarm.leader()
    flood = b"\0" * (32 * 1024 * 1024)  # fed behind the prefix: a port that kept reading would hold it
    for prefix in (struct.pack("i", 2**31 - 1), struct.pack("!IB", 2**31 - 1, 3)):  # pysyncobj's framing, ours
        with socket.create_connection(swarm.raft_addr(leader), timeout=5) as raw:
            assert _flood(raw, prefix + flood)
    # the same inside TLS, with a certificate that chains to the CA (the removed manager's), before admission
    with _tls(swarm, leader, swarm.removed_certs) as sock:
        assert _flood(sock, struct.pack("!IB", 2**31 - 1, 1) + flood)
    swarm.assert_unaffected()


def test_10_mb_of_random_bytes(swarm):
    leader = swarm.leader()
    data = os.urandom(RANDOM_BYTES)
    with socket.create_connection(swarm.raft_addr(leader), timeout=5) as raw:
        assert _flood(raw, data)
    with _tls(swarm, leader, swarm.removed_certs) as sock:  # after a completed handshake, before admission
        assert _flood(sock, data)
    swarm.assert_unaffected()


def test_memory_grew_by_less_than_20_mb(swarm):
    """Last in the module: over all the scenarios above, no manager held on to what it was sent."""
    time.sleep(1.0)
    growth = {pid: rss_mb(pid) - base for pid, base in swarm.baseline.items()}
    print("RSS growth (MB) per manager:", {pid: round(g, 1) for pid, g in growth.items()})
    assert all(g < RSS_GROWTH_LIMIT_MB for g in growth.values()), growth


def test_managers_renew_their_certificates_without_losing_raft():
    """A manager's Raft connections present its renewed certificate: with 1-minute certificates, past the
    first ones' expiry (when every connection opened with them is closed), all managers are still
    connected and writes go on. Without the renewed certificate in the Raft contexts, no handshake would
    pass any more. Its own cluster on 127.0.0.31-33, beside the module's."""
    root = tempfile.mkdtemp(prefix="swrr-", dir="/tmp")
    cluster = Cluster(root, heartbeat=0.5)
    try:
        first = cluster.daemon(21)
        check(first.cli("swarm", "init", "--advertise-addr", first.ip))
        check(first.cli("swarm", "update", "--cert-expiry", "1m"))
        token = check(first.cli("swarm", "join-token", "-q", "manager")).out.strip()
        joined = []
        for index in (22, 23):
            d = cluster.daemon(index)
            check(d.cli("swarm", "join", "--token", token, first.addr))
            joined.append(d)
        issued = time.monotonic()
        managers = [first] + joined

        def all_reachable():
            nodes = nodes_json(first)
            return len(nodes) == 3 and all((n.get("manager_status") or {}).get("reachability") == "reachable"
                                           for n in nodes)

        wait_for(all_reachable, timeout=20, what="three reachable managers")
        time.sleep(max(0.0, issued + 62 - time.monotonic()))  # past the first certificates' expiry
        wait_for(lambda: all("certificate renewed" in d.tail(5000) for d in joined), timeout=10,
                 what="both joined managers renewed")
        wait_for(all_reachable, timeout=10, what="three reachable managers after the expiry")
        check(joined[1].cli("node", "update", "--label-add", "renewed=yes", first.name))
        for m in managers:
            assert sorted(m.info()["raft"]["members"]) == sorted(f"{d.ip}:{d.port + 1}" for d in managers)
        assert any("expired" in line for line in first.tail(2000).splitlines() if "raft connection" in line), \
            "no Raft connection was closed at the expiry of the certificate it was opened with"
    finally:
        cluster.stop_all()
        if os.environ.get("SWARMCTL_KEEP_LOGS") is None:
            shutil.rmtree(root, ignore_errors=True)
