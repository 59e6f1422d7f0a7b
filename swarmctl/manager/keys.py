"""Sealed fields of replicated records: the one place that reads and writes them.

The CA key, both join-token secrets, the Raft secret (while one exists) and the autolock unlock key are
sealed with the swarm's data encryption key (DEK, swarmctl/security/seal.py) before they enter a write, so
the Raft log, its snapshots and every Raft message carry them only as `sealed:v1:...`. Each value is bound
to its place, `<kind>/<record id>/<dotted path>`. Secrets and configs (a later issue) use `seal` and
`unseal` with their own kind and field the same way.

Everything else asks this module for the plaintext (ca_key, join_secret, raft_secret, unlock_key) instead of
reading the record's fields, so the record keeps its shape. A cluster record made by an earlier version
holds those fields in plaintext: they are read as they are until the leader's SealMigration seals them.
"""

from __future__ import annotations

import copy
import logging
from typing import Iterable, Protocol

from swarmctl.errors import APIError, Unavailable
from swarmctl.manager.component import Reconciler
from swarmctl.manager.writes import commit
from swarmctl.security import seal
from swarmctl.security.seal import Keyring, SealError, UnknownKey
from swarmctl.state import records

log = logging.getLogger(__name__)

CA_KEY = ("root_ca", "key")
RAFT_SECRET = ("raft_secret",)
UNLOCK_KEY = ("unlock_key",)


def join_secret_path(role: str) -> tuple[str, ...]:
    return ("join_secrets", role)


# Every sealed field of the cluster record.
CLUSTER_FIELDS = (CA_KEY, join_secret_path("worker"), join_secret_path("manager"), RAFT_SECRET, UNLOCK_KEY)

NO_DEK_MESSAGE = ("this manager does not hold the swarm's data encryption key yet (it asks the other "
                  "managers for it); try again in a moment")


def place(kind: str, record_id: str, path: Iterable[str]) -> str:
    return f"{kind}/{record_id}/{'.'.join(path)}"


def _get(record: dict, path) -> object:
    node = record
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def autolock(cluster: dict) -> bool:
    return bool(((cluster.get("spec") or {}).get("encryption_config") or {}).get("auto_lock_managers"))


class DekHolder(Protocol):
    """Where this manager keeps the DEK (swarmctl.node.keyfile.NodeKeys)."""
    dek: Keyring | None

    def install_dek(self, dek: Keyring) -> None: ...


class ClusterKeys:
    def __init__(self, holder: DekHolder):
        self.holder = holder

    @property
    def ring(self) -> Keyring | None:
        return self.holder.dek

    def _ring(self) -> Keyring:
        ring = self.holder.dek
        if ring is None:
            raise Unavailable(NO_DEK_MESSAGE)
        return ring

    # ---- any record's field ------------------------------------------------------------------------
    def seal(self, kind: str, record_id: str, path, value: bytes | str) -> str:
        return self._ring().seal(value, place(kind, record_id, path))

    def unseal(self, kind: str, record_id: str, path, value) -> bytes | None:
        """The plaintext of a field's value (None stays None; a plaintext str of an earlier version is
        returned as it is)."""
        if value is None:
            return None
        if not seal.is_sealed(value):
            return value.encode("utf-8") if isinstance(value, str) else value
        try:
            return self._ring().unseal(value, place(kind, record_id, path))
        except UnknownKey:
            raise Unavailable(NO_DEK_MESSAGE) from None
        except SealError as exc:
            raise APIError(f"cannot read a sealed field: {exc}", 500) from None

    def _text(self, cluster: dict, path) -> str | None:
        raw = self.unseal("cluster", cluster["id"], path, _get(cluster, path))
        return raw.decode("utf-8") if raw is not None else None

    # ---- the cluster record ------------------------------------------------------------------------
    def ca_key(self, cluster: dict) -> str:
        return self._text(cluster, CA_KEY)

    def join_secret(self, cluster: dict, role: str) -> str:
        return self._text(cluster, join_secret_path(role))

    def raft_secret(self, cluster: dict) -> str | None:
        return self._text(cluster, RAFT_SECRET)

    def unlock_key(self, cluster: dict) -> bytes | None:
        """The autolock key (KEK) while autolock is on, else None."""
        if not autolock(cluster):
            return None
        return self.unseal("cluster", cluster["id"], UNLOCK_KEY, _get(cluster, UNLOCK_KEY))

    def sealed_set(self, cluster: dict, path, value: bytes | str) -> tuple[list[str], str]:
        """A patch op's (path, value) that stores value sealed in the cluster record."""
        return list(path), self.seal("cluster", cluster["id"], path, value)

    def new_cluster(self, cluster_id: str, *, ca_cert: str, ca_key: str, ca_digest: str, worker_secret: str,
                    manager_secret: str, heartbeat_period: float, raft_secret: str | None = None,
                    unlock_key: bytes | None = None) -> dict:
        """records.new_cluster with its key fields sealed (unlock_key given: autolock on)."""
        def sealed(path, value):
            return None if value is None else self.seal("cluster", cluster_id, path, value)
        return records.new_cluster(
            cluster_id, ca_cert=ca_cert, ca_key=sealed(CA_KEY, ca_key), ca_digest=ca_digest,
            worker_secret=sealed(join_secret_path("worker"), worker_secret),
            manager_secret=sealed(join_secret_path("manager"), manager_secret),
            raft_secret=sealed(RAFT_SECRET, raft_secret), heartbeat_period=heartbeat_period,
            unlock_key=sealed(UNLOCK_KEY, unlock_key), autolock=unlock_key is not None)

    def with_field(self, cluster: dict, path, value: bytes | str) -> dict:
        """A copy of the cluster record with one field replaced by value, sealed (left in plaintext only in a
        swarm of an earlier version that has no DEK yet: SealMigration seals it then)."""
        record = copy.deepcopy(cluster)
        node = record
        for part in path[:-1]:
            node = node.setdefault(part, {})
        if self.ring is None and not self.sealed_key_ids(cluster):
            node[path[-1]] = value.decode() if isinstance(value, bytes) else value
        else:
            node[path[-1]] = self.seal("cluster", cluster["id"], path, value)
        return record

    def autolock_ops(self, cluster: dict, unlock_key: bytes | None) -> list[dict]:
        """Turn autolock on with (or rotate to) unlock_key, or off (None); conditional on the version read."""
        op = {"op": "patch", "kind": "cluster", "id": cluster["id"], "if_version": cluster.get("version"),
              "set": [(["spec", "encryption_config", "auto_lock_managers"], unlock_key is not None)]}
        if unlock_key is None:
            op["unset"] = [list(UNLOCK_KEY)]
        else:
            op["set"].append(self.sealed_set(cluster, UNLOCK_KEY, unlock_key))
        return [op]

    # ---- migration and key lookups -----------------------------------------------------------------
    @staticmethod
    def plaintext_fields(cluster: dict) -> list[tuple[tuple[str, ...], str]]:
        """The key fields an earlier version left in plaintext."""
        out = []
        for path in CLUSTER_FIELDS:
            value = _get(cluster, path)
            if isinstance(value, str) and value and not seal.is_sealed(value):
                out.append((path, value))
        return out

    @staticmethod
    def sealed_key_ids(cluster: dict) -> set[str]:
        ids = set()
        for path in CLUSTER_FIELDS:
            value = _get(cluster, path)
            if seal.is_sealed(value):
                try:
                    ids.add(seal.sealed_key_id(value))
                except SealError:
                    pass
        return ids

    def missing_key_ids(self, cluster: dict) -> set[str]:
        """Key ids the record's sealed fields name that this manager does not hold."""
        ring = self.holder.dek
        held = set(ring.ids) if ring is not None else set()
        return self.sealed_key_ids(cluster) - held

    def export_dek(self) -> list[str] | None:
        ring = self.holder.dek
        return ring.export() if ring is not None else None


class SealMigration(Reconciler):
    """On the leader: seal the key fields of a cluster record that an earlier version wrote in plaintext
    (once; the reads above accept both forms meanwhile). A swarm that never had a DEK gets one here; a
    leader that lacks the DEK the record already uses waits until it has fetched it (node/keyfile's
    KeyKeeper), because a second DEK would split the managers."""

    kinds = ("cluster",)
    interval = 5.0

    def __init__(self, store, keys: ClusterKeys, on_sealed=None):
        super().__init__(store)
        self.keys = keys
        self.on_sealed = on_sealed  # called after the migration committed (to compact the log)

    async def reconcile(self) -> None:
        clusters = self.store.list("cluster")
        if not clusters:
            return
        cluster = clusters[0]
        plain = self.keys.plaintext_fields(cluster)
        if not plain:
            return
        if self.keys.ring is None:
            if self.keys.sealed_key_ids(cluster):
                log.info("waiting for the swarm's data encryption key before sealing the cluster record")
                return
            self.keys.holder.install_dek(Keyring.generate())  # on disk before anything is sealed with it
            log.info("made the swarm's data encryption key (the swarm had none)")
        sets = [self.keys.sealed_set(cluster, path, value) for path, value in plain]
        await commit(self.store, [{"op": "patch", "kind": "cluster", "id": cluster["id"],
                                   "if_version": cluster.get("version"), "set": sets}])
        log.info("sealed %d plaintext key field(s) of the cluster record: %s", len(sets),
                 ", ".join(".".join(path) for path, _ in plain))
        if self.on_sealed is not None:
            self.on_sealed()
