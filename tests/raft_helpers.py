"""Real Raft replicas in-process, for tests and benches that need a store without a daemon: a CA of their
own, manager certificates, and RaftStore over the mutual-TLS transport on loopback addresses.

Until a replica holds a cluster record, the transport authorises its peers from the `peers` map
{raft address: node id}; the helpers give every member a certificate whose node id the map names."""

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


class PKI:
    """A cluster CA in a directory, issuing manager certificates."""

    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.ca_cert, self.ca_key = create_root_ca(CLUSTER)
        self.ca = os.path.join(self.dir, "ca.pem")
        with open(self.ca, "wb") as f:
            f.write(self.ca_cert)

    def issue(self, node_id: str) -> dict:
        key = generate_key()
        cert = sign_node_certificate(self.ca_cert, self.ca_key, make_csr(key), node_id, "manager", CLUSTER)
        paths = {"cert": os.path.join(self.dir, f"{node_id}.pem"), "key": os.path.join(self.dir, f"{node_id}.key")}
        for name, data in (("cert", cert), ("key", key)):
            with open(paths[name], "wb") as f:
                f.write(data)
        return dict(paths, ca=self.ca)


def node_id_of(addr: str) -> str:
    return "m-" + addr.replace(".", "-").replace(":", "-")


def tls_store(addr: str, members: list[str], data_dir, pki: PKI, **kwargs) -> RaftStore:
    """A replica at addr of the cluster `members`, each member's node id derived from its address."""
    creds = pki.issue(node_id_of(addr))
    peers = kwargs.pop("peers", None) or {m: node_id_of(m) for m in members}
    return RaftStore(addr, members, str(data_dir), cluster_id=CLUSTER, peers=peers,
                     server_context=tls.raft_server_context(creds["cert"], creds["key"], creds["ca"]),
                     client_context=tls.client_context(creds["ca"], creds["cert"], creds["key"]), **kwargs)


def one_member_store(directory, addr: str | None = None, **kwargs) -> RaftStore:
    """A RaftStore whose only member is itself, with its certificates and Raft dir in `directory`."""
    addr = addr or free_addr()
    return tls_store(addr, [addr], os.path.join(str(directory), "raft"), PKI(os.path.join(str(directory), "pki")),
                     **kwargs)
