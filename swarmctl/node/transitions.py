"""Moving a node between its shapes: init, join, leave, force-new-cluster, promotion and demotion.

Each transition runs under the node's busy lock, changes the data dir first where a restart must see the
new shape, and then (re)starts the node's parts through Node.activate / Node.deactivate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid

from swarmctl.api.peer import PeerClient, PeerUnreachable
from swarmctl.errors import (ALREADY_IN_SWARM_MESSAGE, APIError, BadRequest, Conflict, Forbidden, NotInSwarm,
                             PreconditionFailed, Unavailable)
from swarmctl.manager.ca import create_root_ca, sign_node_certificate
from swarmctl.manager.keys import ClusterKeys
from swarmctl.node.config import ConfigError, parse_host_port
from swarmctl.security import seal, tls
from swarmctl.security.certs import generate_key, make_csr
from swarmctl.security.tokens import TokenError, ca_digest, new_secret, parse_token
from swarmctl.state.records import new_id, new_node

log = logging.getLogger(__name__)


# ---- init ------------------------------------------------------------------------------------
async def init(node, advertise: str | None, listen: str | None, force_new_cluster: bool,
               autolock: bool = False, settings: dict | None = None) -> dict:
    """settings: swarm-wide settings of the new cluster's spec (already checked: api/routes_local.py)."""
    async with node.busy:
        if node.identity:
            if force_new_cluster and node.role == "manager":
                if settings:
                    raise BadRequest("swarm settings are not changed by --force-new-cluster: "
                                     "run swarm update once the swarm is back")
                return await _force_new_cluster(node)
            raise Conflict(ALREADY_IN_SWARM_MESSAGE)
        node.adopt_addresses(advertise, listen)
        cluster_id, node_id = new_id(), new_id()
        ca_cert, ca_key = create_root_ca(cluster_id)
        key = generate_key()
        cert = sign_node_certificate(ca_cert, ca_key, make_csr(key), node_id, "manager", cluster_id)
        node.data.keys.new_dek()  # the swarm's data encryption key: on disk with the TLS key before it seals
        node.data.save_certs(ca_cert, cert, key)
        part, store = await _one_member_raft(node)
        unlock_key = seal.new_unlock_key() if autolock else None
        cluster = ClusterKeys(node.data.keys).new_cluster(
            cluster_id, ca_cert=ca_cert.decode(), ca_key=ca_key.decode(), ca_digest=ca_digest(ca_cert),
            worker_secret=new_secret(), manager_secret=new_secret(),
            heartbeat_period=node.config.heartbeat_period, unlock_key=unlock_key)
        cluster["spec"].update(settings or {})
        record = new_node(node_id, "manager", node.config.hostname, node.addrs.advertise,
                          engine_labels=node.config.labels, resources=node.config.resources,
                          manager_addr=node.addrs.manager, raft_addr=node.addrs.raft)
        record["description"]["heartbeat_period"] = node.config.heartbeat_period
        result = await store.write([
            {"op": "create", "kind": "cluster", "id": cluster_id, "record": cluster},
            {"op": "create", "kind": "node", "id": node_id, "record": record}])
        if not result["ok"]:
            await part.stop()
            raise Conflict(result["error"])
        node.data.keys.set_kek(unlock_key)  # autolock: the key file is wrapped from the start
        node.save_identity(node_id, cluster_id, "manager", [node.addrs.manager])
        await node.activate(part)
        await node.agent.first_heartbeat()
        return {"node_id": node_id, "cluster_id": cluster_id}


async def _one_member_raft(node):
    """A fresh Raft dir and a one-member replica on this node's address, once it leads."""
    node.data.clear_raft()
    node.data.save_raft([node.addrs.raft])
    part = node.new_manager_part()
    store = part.open_store([node.addrs.raft])
    if not await part.wait_leader(10.0):
        await part.stop()
        raise Unavailable("the new Raft cluster did not elect itself leader")
    return part, store


async def _force_new_cluster(node) -> dict:
    """Restart Raft as a one-member cluster carrying the current state (docs/operations.md). The other
    managers become workers in their records, so the Raft transport refuses them from then on."""
    snapshot = node.store.snapshot()
    await node.deactivate()
    records = []
    for kind, items in snapshot["data"].items():
        for record in items.values():
            if kind == "cluster":
                record = {k: v for k, v in record.items() if k != "raft_secret"}  # of older versions
            if kind == "node" and record["spec"]["role"] == "manager" and record["id"] != node.node_id:
                record = dict(record, spec=dict(record["spec"], role="worker"), manager_status=None,
                              status=dict(record["status"], state="down", message="removed by force-new-cluster"))
            records.append({"op": "load", "kind": kind, "id": record["id"], "record": record})
    part, store = await _one_member_raft(node)
    result = await store.write(records, timeout=10.0)
    if not result["ok"]:
        await part.stop()
        raise Conflict(result["error"])
    node.save_identity(node.node_id, node.cluster_id, "manager", [node.addrs.manager])
    await node.activate(part)
    return {"node_id": node.node_id, "cluster_id": node.cluster_id}


# ---- join ------------------------------------------------------------------------------------
async def join(node, token: str, remote: str, advertise: str | None, listen: str | None) -> dict:
    async with node.busy:
        if node.identity:
            raise Conflict(ALREADY_IN_SWARM_MESSAGE)
        try:
            parsed = parse_token(token)
            host, port = parse_host_port(remote, "manager address")
        except (TokenError, ConfigError) as exc:
            raise BadRequest(str(exc)) from None
        remote = f"{host}:{port}"
        node.adopt_addresses(advertise, listen)
        bootstrap = PeerClient(tls.unverified_context(), timeout=5.0)
        try:
            ca_pem = (await bootstrap.call(remote, "GET", "/v1/ca"))["ca"]
        except PeerUnreachable as exc:
            raise Unavailable(f"could not connect to the manager at {remote}: {exc}") from None
        finally:
            await bootstrap.close()
        if ca_digest(ca_pem) != parsed.digest:
            raise Forbidden(f"the manager at {remote} presented a root CA that does not match the fingerprint "
                            "in the join token; refusing to join")
        ca_file = node.data.file("certs", "join-ca.pem")
        os.makedirs(os.path.dirname(ca_file), exist_ok=True)
        with open(ca_file, "w") as f:
            f.write(ca_pem)
        key = generate_key()
        joiner = PeerClient(tls.client_context(ca_file), timeout=10.0)
        try:
            answer = await joiner.call(remote, "POST", "/v1/join", headers={"X-Request-Id": uuid.uuid4().hex}, body={
                "token": token.strip(), "csr": make_csr(key).decode(), "hostname": node.config.hostname,
                "addr": node.addrs.advertise, "manager_addr": node.addrs.manager, "raft_addr": node.addrs.raft,
                "engine_labels": node.config.labels, "resources": node.config.resources,
                "heartbeat_period": node.config.heartbeat_period})
        except PeerUnreachable as exc:
            raise Unavailable(f"could not connect to the manager at {remote}: {exc}") from None
        finally:
            await joiner.close()
            os.unlink(ca_file)
        node.data.save_certs(answer["ca"].encode(), answer["certificate"].encode(), key)
        managers = answer.get("managers") or [remote]
        part = None
        if answer["role"] == "manager":
            peer = node.make_peer()
            try:
                part = await join_raft(node, peer, managers if remote in managers else [remote] + managers)
            finally:
                await peer.close()
        node.save_identity(answer["node_id"], answer["cluster_id"], answer["role"], managers)
        await node.activate(part)
        await node.agent.first_heartbeat()
        return {"node_id": node.node_id, "role": node.role}


async def join_raft(node, peer: PeerClient, managers: list[str]):
    """Start this node's replica with the committed member list and join Raft; returns the running manager
    part once the leader reports the configuration change committed. The replica runs before the change is
    made, so the change (which counts this member towards its quorum) can commit at once."""
    last: Exception | None = None
    for _ in range(3):
        for addr in managers:
            try:
                info = await peer.call(addr, "GET", "/v1/raft/members", timeout=10.0)
            except (PeerUnreachable, APIError) as exc:
                last = exc
                continue
            members = [m for m in info["members"] if m != node.addrs.raft]
            node.data.clear_raft()
            node.data.save_raft(members + [node.addrs.raft], info.get("peers"))
            node.data.keys.install_dek(info.get("dek"))  # the swarm's data encryption key, over mutual TLS
            part = node.new_manager_part()
            part.open_store(members + [node.addrs.raft], info.get("peers"))
            try:
                await peer.call(addr, "POST", "/v1/raft/join", {"members": members}, timeout=15.0)
                return part
            except (PeerUnreachable, APIError) as exc:
                last = exc
                await part.stop()
                node.data.clear_raft()
                node.data.keys.drop_manager_keys()
        await asyncio.sleep(0.5)
    raise Unavailable(f"could not become a Raft member: {last}")


# ---- leave -----------------------------------------------------------------------------------
async def leave(node, force: bool) -> dict:
    async with node.busy:
        if not node.identity:
            raise NotInSwarm()
        if node.role == "manager":
            store = node.store
            if not force:
                managers = len(store.members()) if store else 1
                raise PreconditionFailed(
                    "You are attempting to leave the swarm on a node that is participating as a manager "
                    f"({managers} managers in the swarm). Removing this node could lose quorum, and removing "
                    "the last manager erases all current state of the swarm. Use `--force` to ignore this message.")
            if store is not None and len(store.members()) > 1:
                try:
                    await node.peer.call(node.addrs.manager, "POST", "/v1/raft/leave", {}, timeout=6.0)
                except (PeerUnreachable, APIError) as exc:
                    log.warning("could not leave Raft cleanly: %s", exc)
        await forget_swarm(node)
        return {}


async def forget_swarm(node) -> None:
    await node.deactivate()
    node.data.clear_all()
    node.identity = {}


async def on_removed(node, message: str) -> None:
    log.warning("this node was removed from the swarm: %s", message)
    async with node.busy:
        await forget_swarm(node)


# ---- role changes ----------------------------------------------------------------------------
async def change_role(node, wanted: str) -> None:
    async with node.busy:
        try:
            if wanted == "manager":
                await _become_manager(node)
            else:
                await _become_worker(node)
        except Exception as exc:
            log.warning("changing role to %s failed (will retry): %s", wanted, exc)


async def renew_certificate(node, managers: list[str]) -> None:
    """A certificate for this node's current role from the leader, with a fresh key."""
    key = generate_key()
    last: Exception | None = None
    todo = list(managers)
    for addr in todo:
        try:
            answer = await node.peer.call(addr, "POST", "/v1/session/certificate", {"csr": make_csr(key).decode()})
        except (PeerUnreachable, APIError) as exc:
            last = exc
            leader = getattr(exc, "leader", None)  # a follower's 421 names the leader
            if leader and leader not in todo:
                todo.append(leader)
            continue
        node.data.save_certs(node.data.read(node.data.ca_file), answer["certificate"].encode(), key)
        return
    raise Unavailable(f"could not renew the node certificate: {last}")


async def _become_manager(node) -> None:
    current = node.agent.session.managers
    managers = [m for m in current if m != node.addrs.manager] or current
    await renew_certificate(node, managers)
    await node.reload_peer()
    part = await join_raft(node, node.peer, managers)
    await node.deactivate()
    node.identity["role"] = "manager"
    node.data.save_identity(node.identity)
    await node.activate(part)
    log.info("promoted to manager")


async def _become_worker(node) -> None:
    managers = [m for m in node.agent.session.managers if m != node.addrs.manager]
    await node.deactivate()
    node.data.clear_raft()
    node.data.keys.drop_manager_keys()  # a worker keeps no DEK and is never locked
    node.peer = node.make_peer()
    await renew_certificate(node, managers)
    await node.peer.close()
    node.peer = None
    node.identity["role"] = "worker"
    node.identity["managers"] = managers
    node.data.save_identity(node.identity)
    await node.activate()
    log.info("demoted to worker")
