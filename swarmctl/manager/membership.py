"""Membership on the leader: joins with tokens, certificates, Raft membership, promotion, demotion, removal.

Raft configuration changes go one at a time under a lock, and each is answered only once it has committed
(RaftStore.add_member/remove_member wait for that): pysyncobj's own guard does not serialise them. A manager
joins Raft in one step: it first asks for the current member list (`raft_members`), starts its replica with
that list, and then asks to be added (`raft_join`), so the change can commit with it at once.

Demotion and removal are refused when the managers left reachable could not form a quorum; a leader that is
demoted hands leadership to a caught-up follower first and lets the new leader finish the job (the request
is re-forwarded). Every handler here can be retried with the same request id: it then applies once and
answers as the first attempt did (join derives the new node's id from the request id and the CSR's key).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import timedelta

from swarmctl.errors import (BadRequest, Conflict, Forbidden, Misdirected, NotFound, PreconditionFailed,
                             Unavailable)
from swarmctl.manager import ca
from swarmctl.manager.keys import ClusterKeys
from swarmctl.manager.nodes import node_view, resolve_node
from swarmctl.manager.writes import commit
from swarmctl.security.tokens import TokenError, make_token, new_secret, parse_token, secret_matches
from swarmctl.state.raft import MembershipBusy, NoLeader, RaftStore
from swarmctl.state.records import NODE_CERT_EXPIRY, ROLES, new_node

PROMOTE_TIMEOUT = 30.0   # how long `node promote` waits for the node to join Raft before it reports an error
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def node_cert_expiry(cluster: dict) -> timedelta:
    """How long the certificates this cluster issues to nodes are valid (clusters made before the
    setting existed use the default)."""
    return timedelta(seconds=cluster["spec"].get("node_cert_expiry") or NODE_CERT_EXPIRY)


def derived_node_id(cluster_id: str, request_id: str, csr_pem: str) -> str:
    """The id a join gets: the same for a retry of the same request with the same key (so a retried join
    creates one node), different for anyone else (a request id alone never names someone else's node)."""
    from swarmctl.security.certs import csr_public_key_der
    try:
        key = csr_public_key_der(csr_pem.encode())
    except ValueError:
        raise BadRequest("invalid certificate signing request") from None
    digest = int.from_bytes(hashlib.sha256(b"\0".join([cluster_id.encode(), request_id.encode(), key])).digest(),
                            "big")
    out = []
    for _ in range(25):
        digest, rem = divmod(digest, 36)
        out.append(_ID_ALPHABET[rem])
    return "".join(out)


class Membership:
    def __init__(self, store: RaftStore, keys: ClusterKeys):
        self.store = store
        self.keys = keys  # the record's key fields are sealed: read and write them through keys only
        self.lock = asyncio.Lock()  # one Raft configuration change at a time (the reconciler takes it too)

    # ---- helpers -----------------------------------------------------------------------------
    def cluster(self) -> dict:
        clusters = self.store.list("cluster")
        if not clusters:
            raise Unavailable("this manager is still loading the swarm state; try again in a moment")
        return clusters[0]

    def token(self, role: str) -> str:
        cluster = self.cluster()
        return make_token(cluster["root_ca"]["digest"], self.keys.join_secret(cluster, role))

    def sign(self, csr_pem: str, node_id: str, role: str) -> str:
        cluster = self.cluster()
        try:
            cert = ca.sign_node_certificate(cluster["root_ca"]["cert"].encode(), self.keys.ca_key(cluster).encode(),
                                            csr_pem.encode(), node_id, role, cluster["id"],
                                            lifetime=node_cert_expiry(cluster))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return cert.decode()

    def managers(self) -> list[dict]:
        return self.store.find("node", "spec.role", "manager")  # indexed: no scan of every node per join

    def manager_addrs(self) -> list[str]:
        return sorted(n["description"]["addrs"]["manager"] for n in self.managers())

    def _check_quorum_without(self, raft_addr: str | None, what: str) -> None:
        remaining = [m for m in self.store.members() if m != raft_addr]
        if not remaining:
            raise PreconditionFailed(f"cannot {what}: it is the last manager of the swarm")
        reachable = sum(1 for m in remaining if self.store.connected(m))
        needed = len(remaining) // 2 + 1
        if reachable < needed:
            raise PreconditionFailed(
                f"cannot {what}: this would result in a loss of quorum ({reachable} of {len(remaining)} "
                f"remaining managers reachable, {needed} needed)")

    async def replayed(self, request_id: str | None) -> dict | None:
        """The stored result of this request id if an earlier attempt of it was applied. A barrier first:
        a leader elected meanwhile must apply everything committed before it trusts its request memory."""
        if not request_id:
            return None
        await self.store.barrier()
        result = self.store.applied(request_id)
        return result if result and result.get("ok") else None

    async def _add_member(self, raft_addr: str) -> None:
        async with self.lock:
            try:
                await self.store.add_member(raft_addr)
            except MembershipBusy as exc:
                raise Conflict(str(exc)) from None

    async def _remove_member(self, raft_addr: str) -> None:
        async with self.lock:
            try:
                await self.store.remove_member(raft_addr)
            except MembershipBusy as exc:
                raise Conflict(str(exc)) from None

    # ---- joining -----------------------------------------------------------------------------
    async def join(self, token: str, csr: str, info: dict, request_id: str) -> dict:
        """Admit a node that presents a valid token; returns its id, role and certificate."""
        try:
            parsed = parse_token(token)
        except TokenError as exc:
            raise BadRequest(str(exc)) from None
        cluster = self.cluster()
        if parsed.digest != cluster["root_ca"]["digest"]:
            raise Forbidden("invalid join token: it was issued for a different swarm (root CA digest mismatch)")
        secrets = {r: self.keys.join_secret(cluster, r) for r in ROLES}
        if secret_matches(parsed.secret, secrets["manager"]):
            role = "manager"
        elif secret_matches(parsed.secret, secrets["worker"]):
            role = "worker"
        else:
            raise Forbidden("invalid join token: the token is wrong or has been rotated")
        node_id = derived_node_id(cluster["id"], request_id, csr)
        cert = self.sign(csr, node_id, role)
        existing = self.store.get("node", node_id)
        if existing is None:
            record = new_node(node_id, role, info["hostname"], info["addr"],
                              engine_labels=info.get("engine_labels"), resources=info.get("resources"),
                              manager_addr=info["manager_addr"], raft_addr=info["raft_addr"])
            record["description"]["heartbeat_period"] = info.get("heartbeat_period")
            await commit(self.store, [{"op": "create", "kind": "node", "id": node_id, "record": record}],
                         request_id=f"join:{node_id}")
        elif existing["spec"]["role"] != role:  # cannot happen for a true retry: same token, same key
            raise Conflict(f"node {node_id} already joined as a {existing['spec']['role']}")
        return {"node_id": node_id, "role": role, "cluster_id": cluster["id"], "certificate": cert,
                "ca": cluster["root_ca"]["cert"], "managers": self.manager_addrs()}

    def _caller_raft_addr(self, node_id: str) -> str:
        node = self.store.get("node", node_id)
        if node is None or node["spec"]["role"] != "manager":
            raise Forbidden(f"node {node_id} is not a manager")
        return node["description"]["addrs"]["raft"]

    async def raft_members(self, node_id: str) -> dict:
        """What a manager needs to start its replica before it joins: the committed member list."""
        self._caller_raft_addr(node_id)
        await self.store.barrier()
        return self._member_answer()

    def _member_answer(self) -> dict:
        """What a manager needs to run its replica: the member list, the managers' {raft addr: node id} (which
        authorise its Raft peers until it holds the cluster state), and the swarm's data encryption key for the
        sealed fields (these routes are mutual TLS only, for a certificate whose record is a manager)."""
        peers = {n["description"]["addrs"]["raft"]: n["id"] for n in self.managers()}  # Raft peers, until its state arrives
        return {"members": self.store.members(), "peers": peers, "dek": self.keys.export_dek()}

    async def raft_join(self, node_id: str, members: list[str] | None) -> dict:
        """Add a manager (already running its replica with `members`) to Raft; answers once committed."""
        raft_addr = self._caller_raft_addr(node_id)
        async with self.lock:
            if not await self.store._committed_member(raft_addr):
                current = sorted(self.store.members())
                if members is not None and sorted(set(members) - {raft_addr}) != current:
                    raise Conflict("the Raft member list changed since this manager read it; "
                                   "restart the replica with the current list and try again")
                try:
                    await self.store.add_member(raft_addr)
                except MembershipBusy as exc:
                    raise Conflict(str(exc)) from None
        return self._member_answer()

    async def raft_leave(self, node_id: str) -> dict:
        """A manager leaving with --force: drop it from Raft and keep it listed as a down worker."""
        node = self.store.get("node", node_id)
        if node is None:
            return {}
        raft_addr = node["description"]["addrs"]["raft"]
        if raft_addr == self.store.self_addr:
            await self._hand_over()
        await self._remove_member(raft_addr)
        if node["spec"]["role"] == "manager" or node["status"]["state"] != "down":
            await commit(self.store, [{"op": "patch", "kind": "node", "id": node_id, "missing_ok": True, "set": [
                (["spec", "role"], "worker"), (["manager_status"], None),
                (["status", "state"], "down"), (["status", "message"], "node left the swarm")]}])
        return {}

    async def renew_certificate(self, node_id: str, csr: str) -> dict:
        """A fresh certificate for the node's current role: before the old one expires, and after
        promotion or demotion.  The caller proved who it is with its current certificate."""
        node = self.store.get("node", node_id)
        if node is None:
            raise Forbidden(f"node {node_id} is not part of this swarm")
        role = node["spec"]["role"]
        return {"certificate": self.sign(csr, node_id, role), "role": role}

    async def rotate_token(self, role: str, request_id: str | None = None) -> str:
        if role not in ROLES:
            raise BadRequest(f"unknown role {role!r}: must be worker or manager")
        if await self.replayed(request_id):  # a retry: the rotation happened; answer with today's token
            return self.token(role)
        cluster = self.cluster()
        await commit(self.store, [{"op": "patch", "kind": "cluster", "id": cluster["id"],
                                   "set": [self.keys.sealed_set(cluster, ["join_secrets", role], new_secret())]}],
                     request_id=request_id)
        return self.token(role)

    # ---- roles -------------------------------------------------------------------------------
    async def promote(self, ref: str) -> dict:
        """Make a node a manager; answers once it is a committed Raft member (it joins through its session)."""
        node = resolve_node(self.store, ref)
        addrs = node["description"]["addrs"]
        if node["spec"]["role"] != "manager":
            await commit(self.store, [{"op": "patch", "kind": "node", "id": node["id"], "set": [
                (["spec", "role"], "manager"),
                (["manager_status"], {"addr": addrs["manager"], "raft_addr": addrs["raft"]})]}])
        deadline = time.monotonic() + PROMOTE_TIMEOUT
        while True:
            try:
                if await self.store._committed_member(addrs["raft"]):
                    break
            except NoLeader:  # the configuration change that adds it is committing: barriers wait for it
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"node {node['id']} is promoted, but it has not joined the Raft cluster within "
                                  f"{PROMOTE_TIMEOUT:.0f}s; it joins once it is up and its next heartbeat reaches "
                                  "a manager")
            await asyncio.sleep(0.2)
        return node_view(self.store, self.store.get("node", node["id"]))

    async def demote(self, ref: str) -> dict:
        node = resolve_node(self.store, ref)
        raft_addr = node["description"]["addrs"]["raft"]
        if node["spec"]["role"] == "manager" or raft_addr in self.store.members():
            if node["spec"]["role"] == "manager" and len(self.managers()) <= 1:
                raise PreconditionFailed(f"cannot demote node {node['id']}: it is the last manager of the swarm")
            if raft_addr in self.store.members():
                self._check_quorum_without(raft_addr, f"demote node {node['id']}")
            if raft_addr == self.store.self_addr:
                await self._hand_over()
            await self._remove_member(raft_addr)
            if node["spec"]["role"] == "manager":
                await commit(self.store, [{"op": "patch", "kind": "node", "id": node["id"], "set": [
                    (["spec", "role"], "worker"), (["manager_status"], None)]}])
        return node_view(self.store, self.store.get("node", node["id"]))

    async def remove(self, ref: str, force: bool, request_id: str | None = None) -> None:
        if await self.replayed(request_id):  # a retry of a removal that was applied
            return
        node = resolve_node(self.store, ref)
        if node["spec"]["role"] == "manager":
            raise PreconditionFailed(f"node {node['id']} is a cluster manager and is a member of the raft cluster. "
                                     "It must be demoted to worker before removal")
        if node["status"]["state"] != "down" and not force:
            raise PreconditionFailed(f"node {node['id']} is not down and can't be removed "
                                     "(use --force to remove it anyway)")
        try:
            await commit(self.store, [{"op": "delete", "kind": "node", "id": node["id"]}], request_id=request_id)
        except Conflict as exc:
            if "not found" in str(exc):
                raise NotFound(f"No such node: {ref}") from None
            raise

    async def _hand_over(self) -> None:
        """Step down so that another manager, once leader, carries out the change (re-forwarded)."""
        if not await self.store.transfer_leadership():
            raise PreconditionFailed("cannot hand over leadership: no other manager is caught up and reachable")
        raise Misdirected("leadership handed over; retry on the new leader")
