"""Membership on the leader: joins with tokens, certificates, promotion, demotion, removal.

Raft membership changes go one at a time under a lock, each waiting for its result, because
pysyncobj's own guard does not serialise them. Demotion and removal are refused when the
managers left reachable could not form a quorum; a leader that is demoted hands leadership to a
caught-up follower first and lets the new leader finish the job (the request is re-forwarded).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from swarmctl.errors import BadRequest, Conflict, Forbidden, Misdirected, PreconditionFailed, Unavailable
from swarmctl.manager import ca
from swarmctl.manager.nodes import node_view, resolve_node
from swarmctl.manager.writes import commit
from swarmctl.security.tokens import TokenError, make_token, new_secret, parse_token, secret_matches
from swarmctl.state.raft import MembershipBusy, RaftStore
from swarmctl.state.records import NODE_CERT_EXPIRY, ROLES, new_id, new_node


def node_cert_expiry(cluster: dict) -> timedelta:
    """How long the certificates this cluster issues to nodes are valid (clusters made before the
    setting existed use the default)."""
    return timedelta(seconds=cluster["spec"].get("node_cert_expiry") or NODE_CERT_EXPIRY)


class Membership:
    def __init__(self, store: RaftStore):
        self.store = store
        self._lock = asyncio.Lock()

    # ---- helpers -----------------------------------------------------------------------------
    def cluster(self) -> dict:
        clusters = self.store.list("cluster")
        if not clusters:
            raise Unavailable("this manager is still loading the swarm state; try again in a moment")
        return clusters[0]

    def token(self, role: str) -> str:
        cluster = self.cluster()
        return make_token(cluster["root_ca"]["digest"], cluster["join_secrets"][role])

    def sign(self, csr_pem: str, node_id: str, role: str) -> str:
        cluster = self.cluster()
        try:
            cert = ca.sign_node_certificate(cluster["root_ca"]["cert"].encode(), cluster["root_ca"]["key"].encode(),
                                            csr_pem.encode(), node_id, role, cluster["id"],
                                            lifetime=node_cert_expiry(cluster))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return cert.decode()

    def managers(self) -> list[dict]:
        return [n for n in self.store.list("node") if n["spec"]["role"] == "manager"]

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

    # ---- joining -----------------------------------------------------------------------------
    async def join(self, token: str, csr: str, info: dict) -> dict:
        """Admit a node that presents a valid token; returns its id, role and certificate."""
        try:
            parsed = parse_token(token)
        except TokenError as exc:
            raise BadRequest(str(exc)) from None
        cluster = self.cluster()
        if parsed.digest != cluster["root_ca"]["digest"]:
            raise Forbidden("invalid join token: it was issued for a different swarm (root CA digest mismatch)")
        secrets = cluster["join_secrets"]
        if secret_matches(parsed.secret, secrets["manager"]):
            role = "manager"
        elif secret_matches(parsed.secret, secrets["worker"]):
            role = "worker"
        else:
            raise Forbidden("invalid join token: the token is wrong or has been rotated")
        node_id = new_id()
        cert = self.sign(csr, node_id, role)
        record = new_node(node_id, role, info["hostname"], info["addr"], engine_labels=info.get("engine_labels"),
                          resources=info.get("resources"), manager_addr=info["manager_addr"],
                          raft_addr=info["raft_addr"])
        record["description"]["heartbeat_period"] = info.get("heartbeat_period")
        await commit(self.store, [{"op": "create", "kind": "node", "id": node_id, "record": record}])
        return {"node_id": node_id, "role": role, "cluster_id": cluster["id"], "certificate": cert,
                "ca": cluster["root_ca"]["cert"], "managers": self.manager_addrs()}

    async def raft_join(self, node_id: str) -> dict:
        """Make a manager node a Raft member; returns what it needs to start its replica."""
        node = self.store.get("node", node_id)
        if node is None or node["spec"]["role"] != "manager":
            raise Forbidden(f"node {node_id} is not a manager")
        raft_addr = node["description"]["addrs"]["raft"]
        await self._lock.acquire()
        try:
            pending = await self.store.add_member(raft_addr, wait=False)
        except MembershipBusy as exc:
            self._lock.release()
            raise Conflict(str(exc)) from None
        except BaseException:
            self._lock.release()
            raise
        members = self.store.members()
        if pending is None:
            self._lock.release()
        else:  # hold the lock until the change commits, which needs the new member running
            asyncio.get_running_loop().create_task(self._release_when_done(pending))
        peers = {n["description"]["addrs"]["raft"]: n["id"] for n in self.managers()}  # authorise Raft peers until the state arrives
        return {"members": members, "peers": peers}

    async def _release_when_done(self, pending: asyncio.Future, timeout: float = 10.0) -> None:
        try:
            await asyncio.wait_for(pending, timeout)
        except Exception:
            pass
        finally:
            self._lock.release()

    async def raft_leave(self, node_id: str) -> dict:
        """A manager leaving with --force: drop it from Raft and keep it listed as a down worker."""
        node = self.store.get("node", node_id)
        if node is None:
            return {}
        raft_addr = node["description"]["addrs"]["raft"]
        if raft_addr == self.store.self_addr:
            await self._hand_over()
        await self._remove_member(raft_addr)
        await commit(self.store, [{"op": "patch", "kind": "node", "id": node_id, "set": [
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

    async def rotate_token(self, role: str) -> str:
        if role not in ROLES:
            raise BadRequest(f"unknown role {role!r}: must be worker or manager")
        cluster = self.cluster()
        await commit(self.store, [{"op": "patch", "kind": "cluster", "id": cluster["id"],
                                   "set": [(["join_secrets", role], new_secret())]}])
        return self.token(role)

    # ---- roles -------------------------------------------------------------------------------
    async def promote(self, ref: str) -> dict:
        node = resolve_node(self.store, ref)
        if node["spec"]["role"] != "manager":
            addrs = node["description"]["addrs"]
            await commit(self.store, [{"op": "patch", "kind": "node", "id": node["id"], "set": [
                (["spec", "role"], "manager"),
                (["manager_status"], {"addr": addrs["manager"], "raft_addr": addrs["raft"]})]}])
        return node_view(self.store, self.store.get("node", node["id"]))

    async def demote(self, ref: str) -> dict:
        node = resolve_node(self.store, ref)
        if node["spec"]["role"] == "manager":
            raft_addr = node["description"]["addrs"]["raft"]
            if len(self.managers()) <= 1:
                raise PreconditionFailed(f"cannot demote node {node['id']}: it is the last manager of the swarm")
            self._check_quorum_without(raft_addr, f"demote node {node['id']}")
            if raft_addr == self.store.self_addr:
                await self._hand_over()
            await self._remove_member(raft_addr)
            await commit(self.store, [{"op": "patch", "kind": "node", "id": node["id"], "set": [
                (["spec", "role"], "worker"), (["manager_status"], None)]}])
        return node_view(self.store, self.store.get("node", node["id"]))

    async def remove(self, ref: str, force: bool) -> None:
        node = resolve_node(self.store, ref)
        if node["spec"]["role"] == "manager":
            raise PreconditionFailed(f"node {node['id']} is a cluster manager and is a member of the raft cluster. "
                                     "It must be demoted to worker before removal")
        if node["status"]["state"] != "down" and not force:
            raise PreconditionFailed(f"node {node['id']} is not down and can't be removed "
                                     "(use --force to remove it anyway)")
        await commit(self.store, [{"op": "delete", "kind": "node", "id": node["id"]}])

    async def _remove_member(self, raft_addr: str) -> None:
        async with self._lock:
            try:
                await self.store.remove_member(raft_addr)
            except MembershipBusy as exc:
                raise Conflict(str(exc)) from None

    async def _hand_over(self) -> None:
        """Step down so that another manager, once leader, carries out the change (re-forwarded)."""
        if not await self.store.transfer_leadership():
            raise PreconditionFailed("cannot hand over leadership: no other manager is caught up and reachable")
        raise Misdirected("leadership handed over; retry on the new leader")
