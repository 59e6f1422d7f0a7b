"""A real one-member Raft replica for tests that need a store in-process (not a daemon): a CA of its own,
a manager certificate, and RaftStore over the mutual-TLS transport on a loopback address."""

from __future__ import annotations

import os
import socket

from swarmctl.manager.ca import create_root_ca, sign_node_certificate
from swarmctl.security import tls
from swarmctl.security.certs import generate_key, make_csr
from swarmctl.state.raft import RaftStore

CLUSTER = "testcluster"


def free_addr(ip: str = "127.0.0.1") -> str:
    with socket.socket() as s:
        s.bind((ip, 0))
        return f"{ip}:{s.getsockname()[1]}"


def one_member_store(directory, addr: str | None = None, **kwargs) -> RaftStore:
    """A RaftStore whose only member is itself, with certificates made in `directory`."""
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    addr = addr or free_addr()
    ca_cert, ca_key = create_root_ca(CLUSTER)
    key = generate_key()
    cert = sign_node_certificate(ca_cert, ca_key, make_csr(key), "self", "manager", CLUSTER)
    paths = {name: os.path.join(directory, name) for name in ("ca.pem", "node.pem", "node.key")}
    for name, data in (("ca.pem", ca_cert), ("node.pem", cert), ("node.key", key)):
        with open(paths[name], "wb") as f:
            f.write(data)
    return RaftStore(addr, [addr], os.path.join(directory, "raft"), cluster_id=CLUSTER,
                     server_context=tls.raft_server_context(paths["node.pem"], paths["node.key"], paths["ca.pem"]),
                     client_context=tls.client_context(paths["ca.pem"], paths["node.pem"], paths["node.key"]),
                     **kwargs)
