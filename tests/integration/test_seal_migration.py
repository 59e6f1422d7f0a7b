"""A cluster record of an earlier version (key fields in plaintext) keeps working and is sealed once by the
leader, on a real Raft replica (pysyncobj over TCP on a loopback address) in this process."""

import asyncio
import os

from swarmctl.manager.ca import create_root_ca
from swarmctl.manager.keys import ClusterKeys, SealMigration
from swarmctl.manager.membership import Membership
from swarmctl.node.datadir import _write_atomic
from swarmctl.node.keyfile import NodeKeys
from swarmctl.security.certs import cert_identity, generate_key, make_csr
from swarmctl.security.tokens import ca_digest, new_secret
from tests.raft_helpers import one_member_store
from swarmctl.state.records import new_cluster
from tests.integration.harness import ensure_free, wait_for
from tests.integration.test_sealed_at_rest import find_plaintext

ADDR = "127.0.0.31:2378"


class NoDek:
    dek = None

    def install_dek(self, dek):
        raise AssertionError("a leader must not make a second DEK for a record that is already sealed")


def test_plaintext_record_of_an_earlier_version_is_sealed_once(tmp_path):
    ensure_free("127.0.0.31", 2378)
    ca_cert, ca_key = create_root_ca("c1")
    worker, manager = new_secret(), new_secret()
    legacy = new_cluster("c1", ca_cert=ca_cert.decode(), ca_key=ca_key.decode(), ca_digest=ca_digest(ca_cert),
                         worker_secret=worker, manager_secret=manager, raft_secret="legacy-raft-secret",
                         heartbeat_period=5.0)

    async def scenario():
        store = one_member_store(tmp_path / "store", ADDR)
        try:
            for _ in range(200):
                if store.is_leader():
                    break
                await asyncio.sleep(0.05)
            await store.write([{"op": "create", "kind": "cluster", "id": "c1", "record": legacy}])
            node_keys = NodeKeys(str(tmp_path / "certs" / "node.key"), _write_atomic)
            node_keys.save_tls_key(generate_key())  # a manager of the earlier version: a TLS key, no DEK
            keys = ClusterKeys(node_keys)
            membership = Membership(store, keys)
            token = membership.token("worker")
            assert token.endswith(worker)  # works meanwhile, from the plaintext fields
            membership.sign(make_csr(generate_key()).decode(), "n1", "worker")

            migration = SealMigration(store, keys, on_sealed=store.compact)
            await migration.reconcile()
            cluster = store.list("cluster")[0]
            assert keys.plaintext_fields(cluster) == []
            assert node_keys.dek is not None
            on_disk = NodeKeys(node_keys.path, _write_atomic)
            on_disk.load()
            assert on_disk.dek.ids == node_keys.dek.ids  # the DEK was written before anything was sealed with it
            assert membership.token("worker") == token and membership.token("manager").endswith(manager)
            cert = membership.sign(make_csr(generate_key()).decode(), "n2", "manager")
            assert cert_identity(cert.encode()).role == "manager"
            assert keys.raft_secret(cluster) == "legacy-raft-secret"
            await migration.reconcile()  # once: nothing more to do
            assert store.list("cluster")[0]["version"] == cluster["version"]

            # an earlier-version leader writes a field in plaintext again; a new leader without the DEK waits
            # (it must not make a second DEK), the one with it seals the field
            await store.write([{"op": "patch", "kind": "cluster", "id": "c1", "set": [(["raft_secret"], "again")]}])
            await SealMigration(store, ClusterKeys(NoDek())).reconcile()
            assert keys.plaintext_fields(store.list("cluster")[0]) == [(("raft_secret",), "again")]
            await migration.reconcile()
            assert keys.plaintext_fields(store.list("cluster")[0]) == []
            assert keys.raft_secret(store.list("cluster")[0]) == "again"

            # the migration compacted the log: the new snapshot holds the fields sealed only
            snapshot = tmp_path / "store" / "raft" / "raft.snapshot"
            wait_for(lambda: snapshot.exists(), timeout=10, what="a snapshot after the migration")
            await asyncio.sleep(0.5)
            body = [line.encode() for line in ca_key.decode().splitlines() if len(line) >= 40]
            needles = {"worker secret": worker.encode(), "manager secret": manager.encode(),
                       **{f"CA key line {i}": line for i, line in enumerate(body)}}
            assert find_plaintext([str(snapshot)], needles) == []
        finally:
            store.destroy()

    asyncio.run(scenario())
    assert os.path.exists(tmp_path / "certs" / "node.key")
