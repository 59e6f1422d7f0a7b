"""swarmctl/manager/keys.py: the cluster record's sealed fields, read and written in one place."""

import pytest

from swarmctl.errors import Unavailable
from swarmctl.manager.keys import CA_KEY, RAFT_SECRET, UNLOCK_KEY, ClusterKeys, autolock, join_secret_path
from swarmctl.security import seal
from swarmctl.security.seal import Keyring
from swarmctl.state.machine import StateMachine
from swarmctl.state.records import new_cluster, public_cluster

PLAIN = dict(ca_cert="CERT", ca_key="-----BEGIN PRIVATE KEY-----\nCAKEYBODY\n-----END PRIVATE KEY-----\n",
             ca_digest="d" * 50, worker_secret="w" * 25, manager_secret="m" * 25, raft_secret="raftsecret",
             heartbeat_period=5.0)


class Holder:
    def __init__(self, dek=None):
        self.dek = dek

    def install_dek(self, dek):
        self.dek = dek


def _apply(machine, ops):
    result = machine.apply_batch([(None, 1.0, ops)])[0]
    assert result["ok"], result
    return result


def test_new_cluster_is_sealed_and_reads_back():
    keys = ClusterKeys(Holder(Keyring.generate()))
    kek = seal.new_unlock_key()
    cluster = keys.new_cluster("c1", unlock_key=kek, **PLAIN)
    flat = repr(cluster)
    for value in ("CAKEYBODY", "w" * 25, "m" * 25, "raftsecret"):
        assert value not in flat
    for path in (CA_KEY, join_secret_path("worker"), join_secret_path("manager"), RAFT_SECRET, UNLOCK_KEY):
        node = cluster
        for part in path:
            node = node[part]
        assert seal.is_sealed(node)
    assert keys.ca_key(cluster) == PLAIN["ca_key"]
    assert keys.join_secret(cluster, "worker") == "w" * 25 and keys.join_secret(cluster, "manager") == "m" * 25
    assert keys.raft_secret(cluster) == "raftsecret"
    assert autolock(cluster) and keys.unlock_key(cluster) == kek
    view = public_cluster(dict(cluster, version=1))
    assert "unlock_key" not in view and "key" not in view["root_ca"] and "join_secrets" not in view
    assert view["spec"]["encryption_config"] == {"auto_lock_managers": True}


def test_a_sealed_field_moved_to_another_field_does_not_open():
    keys = ClusterKeys(Holder(Keyring.generate()))
    cluster = keys.new_cluster("c1", **PLAIN)
    cluster["join_secrets"]["manager"] = cluster["join_secrets"]["worker"]  # a worker token as manager's
    with pytest.raises(Exception, match="authentication failed"):
        keys.join_secret(cluster, "manager")


def test_without_the_dek_reads_say_so():
    cluster = ClusterKeys(Holder(Keyring.generate())).new_cluster("c1", **PLAIN)
    keys = ClusterKeys(Holder(None))
    with pytest.raises(Unavailable, match="data encryption key"):
        keys.ca_key(cluster)
    assert keys.missing_key_ids(cluster) == {seal.sealed_key_id(cluster["root_ca"]["key"])}


def test_legacy_plaintext_record_reads_and_migrates():
    legacy = new_cluster("c1", **PLAIN)  # the shape an earlier version wrote: plaintext fields
    keys = ClusterKeys(Holder(Keyring.generate()))
    assert keys.ca_key(legacy) == PLAIN["ca_key"] and keys.join_secret(legacy, "worker") == "w" * 25
    fields = dict(keys.plaintext_fields(legacy))
    assert set(fields) == {CA_KEY, join_secret_path("worker"), join_secret_path("manager"), RAFT_SECRET}
    machine = StateMachine()
    _apply(machine, [{"op": "create", "kind": "cluster", "id": "c1", "record": legacy}])
    current = machine.get("cluster", "c1")
    sets = [keys.sealed_set(current, path, value) for path, value in keys.plaintext_fields(current)]
    _apply(machine, [{"op": "patch", "kind": "cluster", "id": "c1", "if_version": current["version"], "set": sets}])
    migrated = machine.get("cluster", "c1")
    assert keys.plaintext_fields(migrated) == []
    assert keys.ca_key(migrated) == PLAIN["ca_key"] and keys.raft_secret(migrated) == "raftsecret"
    assert "CAKEYBODY" not in repr(machine.snapshot())


def test_autolock_ops_turn_on_rotate_and_off():
    keys = ClusterKeys(Holder(Keyring.generate()))
    machine = StateMachine()
    _apply(machine, [{"op": "create", "kind": "cluster", "id": "c1", "record": keys.new_cluster("c1", **PLAIN)}])
    cluster = machine.get("cluster", "c1")
    assert not autolock(cluster) and keys.unlock_key(cluster) is None
    first = seal.new_unlock_key()
    _apply(machine, keys.autolock_ops(cluster, first))
    cluster = machine.get("cluster", "c1")
    assert keys.unlock_key(cluster) == first
    stale = keys.autolock_ops(dict(cluster, version=cluster["version"] - 1), seal.new_unlock_key())
    assert not machine.apply_batch([(None, 1.0, stale)])[0]["ok"]  # a stale read does not overwrite
    second = seal.new_unlock_key()
    _apply(machine, keys.autolock_ops(cluster, second))
    cluster = machine.get("cluster", "c1")
    assert keys.unlock_key(cluster) == second
    _apply(machine, keys.autolock_ops(cluster, None))
    cluster = machine.get("cluster", "c1")
    assert not autolock(cluster) and "unlock_key" not in cluster and keys.unlock_key(cluster) is None


def test_with_field_seals_the_replacement():
    keys = ClusterKeys(Holder(Keyring.generate()))
    cluster = keys.new_cluster("c1", **PLAIN)
    changed = keys.with_field(cluster, RAFT_SECRET, "newsecret")
    assert seal.is_sealed(changed["raft_secret"]) and keys.raft_secret(changed) == "newsecret"
    assert keys.raft_secret(cluster) == "raftsecret"
