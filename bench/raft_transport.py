"""Raft transport benchmark: is zlib worth keeping on TLS? And what does one message cost?

    python bench/raft_transport.py [--count 20000]

For the messages a label-update write produces (the leader's append_entries carrying one entry with a batch
of 8 writes, and the follower's next_node_idx answer), it prints the CPU time of encoding and decoding one
message in swarmctl's transport (restricted unpickler) with and without zlib (level 3, pysyncobj's), the
bytes on the wire, and, for comparison, pysyncobj's own path (zlib + Fernet with a password). Then it
runs 3 replicas in this process over real TLS on loopback (127.0.0.81-83) and prints how many writes per
second the leader commits from 8 threads with compression off and on.

Target: compression stays off unless it saves more CPU (TLS encrypts fewer bytes) than it costs.
No daemons are started; the replicas are destroyed at the end.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pysyncobj.pickle  # noqa: E402
from pysyncobj import SyncObj, SyncObjConsumer, replicated  # noqa: E402

from swarmctl.manager.ca import create_root_ca, sign_node_certificate  # noqa: E402
from swarmctl.security import tls  # noqa: E402
from swarmctl.security.certs import generate_key, make_csr  # noqa: E402
from swarmctl.state import transport  # noqa: E402
from swarmctl.state.raft import raft_conf  # noqa: E402
from swarmctl.state.transport import PICKLE, ZPICKLE, TLSTransport, decode_message  # noqa: E402


def label_write(i: int) -> tuple:
    ops = [{"op": "patch", "kind": "node", "id": "k3j5l2m0q9w8e7r6t5y4u3i2o", "version": 1000 + i,
            "set": [(["spec", "labels", f"bench{i % 8}"], str(i))], "unset": []}]
    return (os.urandom(16).hex(), 1700000000.0 + i, ops)


def messages() -> dict[str, dict]:
    command = b"\x00" + pysyncobj.pickle.dumps((0, ([label_write(i) for i in range(8)],)))
    return {
        "append_entries (8 writes)": {"type": "append_entries", "term": 7, "commit_index": 12345,
                                      "entries": [(command, 12346, 7)], "prevLogIdx": 12345, "prevLogTerm": 7},
        "next_node_idx": {"type": "next_node_idx", "next_node_idx": 12347, "reset": False, "success": True},
    }


def per_message(count: int) -> None:
    from cryptography.fernet import Fernet  # pysyncobj's encryptor, with a key as its PBKDF2 would make
    fernet = Fernet(Fernet.generate_key())
    print(f"[1] CPU per message, {count} rounds of encode + decode")
    for name, message in messages().items():
        rows = []
        for label, level in (("pickle", 0), ("zlib-3 + pickle", 3)):
            start = time.process_time()
            for _ in range(count):
                data = transport.codec.dumps(message)
                kind = PICKLE
                if level:
                    data, kind = zlib.compress(data, level), ZPICKLE
                decode_message(kind, data)
            rows.append((label, (time.process_time() - start) / count * 1e6, len(data)))
        start = time.process_time()
        for _ in range(count):
            data = fernet.encrypt(zlib.compress(pysyncobj.pickle.dumps(message), 3))
            pysyncobj.pickle.loads(zlib.decompress(fernet.decrypt(data)))
        rows.append(("pysyncobj: zlib-3 + Fernet", (time.process_time() - start) / count * 1e6, len(data)))
        for label, us, size in rows:
            print(f"    {name:26s} {label:28s} {us:7.1f} us  {size:5d} bytes")


class Counter(SyncObjConsumer):
    def __init__(self):
        super().__init__()
        self.count = 0

    @replicated
    def add(self, batch):
        self.count += len(batch)
        return self.count


def _addr(ip: str) -> str:
    with socket.socket() as s:
        s.bind((ip, 0))
        return f"{ip}:{s.getsockname()[1]}"


def replicated_rate(level: int | None, seconds: float, root: str) -> float:
    """Writes/s over TLSTransport with zlib at `level`, or (level None) over pysyncobj's own TCP transport
    with a password (zlib 3 + Fernet), as before this transport."""
    transport.COMPRESS_LEVEL = level or 0
    ca_cert, ca_key = create_root_ca("bench")
    addrs = [_addr(f"127.0.0.{81 + i}") for i in range(3)]
    ids = {a: f"n{i}" for i, a in enumerate(addrs)}
    replicas = []
    for addr in addrs:
        d = tempfile.mkdtemp(dir=root)
        key = generate_key()
        cert = sign_node_certificate(ca_cert, ca_key, make_csr(key), ids[addr], "manager", "bench")
        for name, data in (("ca.pem", ca_cert), ("node.pem", cert), ("node.key", key)):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        files = [os.path.join(d, n) for n in ("node.pem", "node.key", "ca.pem")]
        factory = functools.partial(
            TLSTransport, server_context=tls.raft_server_context(*files),
            client_context=tls.client_context(files[2], files[0], files[1]),
            authorize=lambda ident, raddr: ids.get(raddr) == ident.node_id)
        counter = Counter()
        if level is None:
            conf = raft_conf(d, bindAddress=addr, password="bench-secret")
            sync = SyncObj(addr, [a for a in addrs if a != addr], conf, consumers=[counter])
        else:
            sync = SyncObj(addr, [a for a in addrs if a != addr], raft_conf(d, bindAddress=addr), consumers=[counter],
                           transportClass=factory)
        replicas.append((sync, counter))
    try:
        deadline = time.monotonic() + 10
        leader = None
        while leader is None and time.monotonic() < deadline:
            leader = next((r for r in replicas if r[0]._isLeader()), None)
            time.sleep(0.05)
        if leader is None:
            raise RuntimeError("no leader")
        stop = time.monotonic() + seconds
        done = [0]

        def client(i):
            n = 0
            while time.monotonic() < stop:
                leader[1].add([label_write(n)], sync=True, timeout=3)
                n += 1
            done[0] += n

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return done[0] / (time.monotonic() - started)
    finally:
        for sync, _ in replicas:
            sync.destroy()
        for sync, _ in replicas:
            sync._SyncObj__thread.join(5)
        transport.COMPRESS_LEVEL = 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    per_message(args.count)
    root = tempfile.mkdtemp(prefix="swarmctl-bench-raft-")
    try:
        print(f"\n[2] 3 replicas in one process over TLS, 8 threads of sync writes on the leader, {args.seconds:.0f}s each")
        rates = {}
        for level, label in ((0, "TLS, no compression"), (3, "TLS, zlib level 3"),
                             (None, "pysyncobj TCP, zlib 3 + Fernet (before)")):
            rates[level] = replicated_rate(level, args.seconds, root)
            print(f"    {label:40s} {rates[level]:6.0f} writes/s")
        keep_off = rates[0] >= rates[3] * 0.97
        print(f"\ncompression off: {rates[0]:.0f} writes/s, on: {rates[3]:.0f} writes/s -> "
              f"{'keep it off' if keep_off else 'turn it on'} (COMPRESS_LEVEL = {transport.COMPRESS_LEVEL})")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
