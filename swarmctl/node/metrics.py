"""Prometheus metrics of one daemon (`swarmctl daemon --metrics-addr IP:PORT`, off by default).

Every daemon has a registry of its own (never prometheus-client's global one: the hollow nodes and the tests run
several nodes in one process). Gauges of the cluster's state (nodes by state, tasks by state, services, leader)
are computed at scrape time from the local replica of the store: counts over records already in memory, nothing
kept by hand that could drift. Latencies and counters are observed where they happen, through the optional
`metrics` attribute of the store, the API server and the dispatcher, and a wrapper around the agent's container
runtime (None: not counted).

Names follow Docker Swarm's (moby/swarmkit) where the concept is the same: swarm_manager_*, swarm_node_*,
swarm_raft_*, swarm_store_*, swarm_dispatcher_*. swarmctl's own are swarmctl_*.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from swarmctl.state.records import NODE_STATES, TASK_STATES

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class _StateCollector:
    """The gauges read from the node and its store at scrape time."""

    def __init__(self, node, metrics: "Metrics"):
        self.node = node
        self.metrics = metrics

    def describe(self):  # no describe-time collect (the registry would otherwise call collect() at register)
        return []

    def collect(self):
        node = self.node
        manager = node.manager
        store = manager.store if manager is not None else None
        is_manager = GaugeMetricFamily("swarm_node_manager", "Whether this node is a manager or not")
        is_manager.add_metric([], 1 if store is not None else 0)
        yield is_manager
        info = GaugeMetricFamily("swarm_node_info", "Information related to the swarm",
                                 labels=["node_id", "swarm_id"])
        info.add_metric([node.node_id or "", node.cluster_id or ""], 1)
        yield info
        lag = getattr(node, "loop_lag", None)
        if lag is not None:
            g = GaugeMetricFamily("swarmctl_event_loop_lag_seconds",
                                  "How late the daemon's event loop ran its last probe (every 20 ms)")
            g.add_metric([], lag.last)
            yield g
            g = GaugeMetricFamily("swarmctl_event_loop_lag_max_seconds",
                                  "The largest event-loop lag since the daemon started")
            g.add_metric([], lag.max)
            yield g
        yield from self._mesh()
        if store is None:
            return
        leader = GaugeMetricFamily("swarm_manager_leader", "Indicates if this manager node is a leader")
        leader.add_metric([], 1 if store.is_leader() else 0)
        yield leader
        nodes = GaugeMetricFamily("swarm_manager_nodes", "The number of nodes in the cluster object store",
                                  labels=["state"])
        for state, n in _by_state(store, "node", NODE_STATES, "unknown").items():
            nodes.add_metric([state], n)
        yield nodes
        tasks = GaugeMetricFamily("swarm_manager_tasks_total", "The number of tasks in the cluster object store",
                                  labels=["state"])
        for state, n in _by_state(store, "task", TASK_STATES, "new").items():
            tasks.add_metric([state], n)
        yield tasks
        services = GaugeMetricFamily("swarm_manager_services_total",
                                     "The number of services in the cluster object store")
        services.add_metric([], store.count("service"))
        yield services
        for name, doc, value in (
                ("swarmctl_raft_applied_index", "The index of the last write this replica applied", store.index),
                ("swarmctl_raft_log_entries", "Raft log entries held by this replica (since its last snapshot)",
                 _log_size(store)),
                ("swarmctl_raft_members", "Members of the Raft configuration", len(store.members()))):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            yield g


    def _mesh(self):
        """The routing mesh's data plane, as read just before this scrape (Metrics.refresh): per published port, its
        backends, and with the userspace proxy its connections and the ones no backend took."""
        stats = self.metrics.mesh_stats or {}
        backends = GaugeMetricFamily("swarmctl_mesh_backends", "Backend tasks of a published port on this node",
                                     labels=["listener"])
        active = GaugeMetricFamily("swarmctl_mesh_active_connections",
                                   "Connections the mesh's userspace proxy is forwarding", labels=["listener"])
        total = CounterMetricFamily("swarmctl_mesh_connections", "Connections the mesh's userspace proxy took",
                                    labels=["listener"])
        failed = CounterMetricFamily("swarmctl_mesh_backend_errors",
                                     "Connections the mesh's userspace proxy could not forward to any backend",
                                     labels=["listener"])
        retried = CounterMetricFamily("swarmctl_mesh_retries",
                                      "Connections retried on another backend (proxy) or SYNs sent again (nft)",
                                      labels=["listener"])
        for key, listener in stats.items():
            if not isinstance(listener, dict):
                if key == "retried" and isinstance(listener, (int, float)):
                    retried.add_metric([""], listener)
                continue
            n = listener.get("backends")
            backends.add_metric([key], len(n) if isinstance(n, dict) else (n or 0))
            if "total" in listener:
                active.add_metric([key], listener.get("active") or 0)
                total.add_metric([key], listener.get("total") or 0)
                failed.add_metric([key], listener.get("failed") or 0)
                retried.add_metric([key], listener.get("retried") or 0)
        yield from (backends, active, total, failed, retried)


def _by_state(store, kind: str, states, default: str) -> dict[str, int]:
    """How many records of a kind are in each status state (every known state listed, 0 included)."""
    counts = dict.fromkeys(states, 0)
    for record in store.list(kind):
        state = (record.get("status") or {}).get("state") or default
        counts[state] = counts.get(state, 0) + 1
    return counts


def _log_size(store) -> int:
    try:
        return int(store._sync.getStatus().get("log_len", 0))
    except Exception:
        return 0


class Metrics:
    """The daemon's registry and the instruments the components observe into."""

    def __init__(self, node=None):
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.raft_transaction = Histogram(
            "swarm_raft_transaction_latency_seconds", "Raft transaction latency (submitted to committed and applied)",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.raft_snapshot = Histogram("swarm_raft_snapshot_latency_seconds", "Raft snapshot create latency",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.store_write = Histogram("swarm_store_write_tx_latency_seconds",
                                     "Raft store write tx latency (a write as the caller waits for it)",
                                     buckets=_LATENCY_BUCKETS, registry=r)
        self.scheduling_delay = Histogram(
            "swarm_dispatcher_scheduling_delay_seconds",
            "Scheduling delay: from a task's creation until it is assigned to a node", buckets=_DELAY_BUCKETS,
            registry=r)
        self.api_requests = Counter("swarmctl_api_requests", "API requests answered, by route and status code",
                                    ["method", "route", "code"], registry=r)
        self.heartbeats = Counter("swarmctl_dispatcher_heartbeats", "Node heartbeats answered by this manager",
                                  registry=r)
        self.container_ops = Counter("swarmctl_agent_container_operations",
                                     "Container operations of this node's agent on the engine", ["operation", "result"],
                                     registry=r)
        self.container_latency = Histogram("swarmctl_agent_container_operation_latency_seconds",
                                           "Latency of the agent's container operations", ["operation"],
                                           buckets=_LATENCY_BUCKETS, registry=r)
        self.refresh = None  # async () -> the mesh data plane's stats, read before each scrape
        self.mesh_stats: dict = {}
        if node is not None:
            r.register(_StateCollector(node, self))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ---- observations -------------------------------------------------------------------------
    def task_changed(self, old: dict | None, new: dict | None) -> None:
        """A task moved: count its scheduling delay when it becomes assigned."""
        if new is None:
            return
        state = (new.get("status") or {}).get("state")
        if state != "assigned" or ((old or {}).get("status") or {}).get("state") == "assigned":
            return
        created = new.get("created_at")
        updated = new.get("updated_at")
        if isinstance(created, (int, float)) and isinstance(updated, (int, float)) and updated >= created:
            self.scheduling_delay.observe(updated - created)


class Timer:
    """with Timer(histogram): observes the block's duration (histogram may be None)."""

    __slots__ = ("histogram", "start")

    def __init__(self, histogram):
        self.histogram = histogram

    def __enter__(self):
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc):
        if self.histogram is not None:
            self.histogram.observe(time.monotonic() - self.start)
        return False


async def serve(metrics: Metrics, host: str, port: int):
    """Serve GET /metrics on host:port with the daemon's aiohttp; returns the runner (cleanup() stops it)."""
    from aiohttp import web

    async def handle(_request):
        if metrics.refresh is not None:
            try:
                metrics.mesh_stats = await asyncio.wait_for(metrics.refresh(), 2.0)
            except Exception as exc:  # the data plane is restarting, say: the scrape goes on without it
                log.debug("mesh stats unavailable: %s", exc)
                metrics.mesh_stats = {}
        body = metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner


class InstrumentedRuntime:
    """A container runtime whose create, start, stop and remove are counted and timed (the rest passes through)."""

    OPERATIONS = ("create", "start", "stop", "remove")

    def __init__(self, runtime, metrics: Metrics):
        self._runtime = runtime
        self._metrics = metrics

    def __getattr__(self, name):
        attr = getattr(self._runtime, name)
        if name not in self.OPERATIONS:
            return attr
        metrics = self._metrics

        def timed(*args, **kwargs):
            start = time.monotonic()
            result = "error"
            try:
                value = attr(*args, **kwargs)
                result = "ok"
                return value
            finally:
                metrics.container_ops.labels(name, result).inc()
                metrics.container_latency.labels(name).observe(time.monotonic() - start)
        return timed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._runtime.close()
