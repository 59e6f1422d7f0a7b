"""Service benchmark: swarmctl against real Docker Swarm mode, on the same private Docker engine.

    python bench/services.py [--sizes 20,60] [--quick] [--timeout 180] [--keep] [--floor] [--log-level debug]

For each size N, in one run and on the private engine unix:///tmp/swarmctl-dockerd/docker.sock:

A) swarmctl: a 5-node cluster (3 managers + 2 workers, every agent on that engine) on
   127.0.0.71-75:22377 (apart from the integration tests' 127.0.0.11+:2377). Timed through the API:
     create  POST /v1/services (N replicas of `sleep 3600`)  until N containers of it run in the engine
     update  a rolling update to a second image (parallelism 5, the rest Docker's defaults)
                                                              until N run the new image and none the old
     scale   POST /v1/services/NAME/scale (2N)                until 2N run
     rm      DELETE /v1/services/NAME                         until no container of it exists (all=True)
B) Docker Swarm mode on the same engine (`swarm init` on 127.0.0.1:2477), the same three phases through
   the engine API (docker SDK): services.create / scale / remove, `--network host`, counted by the label
   com.docker.swarm.service.name. Then `docker swarm leave --force`, always.

C) with --floor: the same phases with plain engine calls (create+start, rm -f; 8 at a time), as a
   reference for what the engine itself allows (not a strict lower bound: Swarm, which creates all
   containers before starting them, can beat it on small N).

Each phase line also shows the engine's own timeline (container events streamed live during the phase:
count and first-last second of create/start/kill/die/destroy), which tells control-plane latency from
engine throughput. --keep keeps the swarmctl daemons' logs; --log-level debug makes them list every
engine call with its time.

"Running" is what the engine reports (docker SDK, label filter, status=running), not either system's
own view. Both sides stop with no grace period (busybox `sleep` as PID 1 ignores SIGTERM): swarmctl
stop_grace_period 0, Swarm StopGracePeriod 0. Both run the same local image; Swarm is given the image
by ID so that its agent skips the registry pull it otherwise tries for every task.

Swarm on this engine, within the network rules (only 127.0.0.0/8, no Docker bridge networks):
`swarm init` always creates the routing-mesh network `ingress`, and setting up its sandbox makes the
bridge network `docker_gwbridge` (172.17.0.1/16 on the host). To prevent that, a placeholder link named
docker_gwbridge that is not a bridge (a down veth pair without addresses) is created first: the engine
then refuses to use it ("existing interface docker_gwbridge is not a bridge") and gives up on the ingress
sandbox, which nothing here needs (tasks use host networking and publish no ports). The ingress network
is then removed, and its address pool is set to 127.253.0.0/16 so even its short-lived overlay sandbox
stays on loopback addresses. A check of the host's IPv4 addresses and the engine's networks aborts the
Swarm part if anything else appears. The placeholder is deleted at the end.

Every daemon, service, container, swarm membership and link made here is removed in finally blocks.
The engine is started only if it was not running, and then stopped at the end (tests/docker_engine.py).
Exits 0 when the figures were measured (even if the target is missed), 1 on a crash.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import docker  # noqa: E402
from docker.types import ContainerSpec, ServiceMode, TaskTemplate, UpdateConfig  # noqa: E402

from swarmctl.cli.client import Client, CLIError  # noqa: E402
from tests import docker_engine  # noqa: E402
from tests.integration.harness import Cluster, Daemon, wait_for  # noqa: E402

TARGET_RATIO = 0.5
HEARTBEAT = float(os.environ.get("SWARMCTL_BENCH_HEARTBEAT", "5.0"))  # the daemon's default period
# integration tests use 127.0.0.11+ and port 2377, bench/control_plane.py 127.0.0.61+ and 12377
INDEX_OFFSET = int(os.environ.get("SWARMCTL_BENCH_SVC_INDEX", "60"))   # node1 -> 127.0.0.71
BENCH_PORT = int(os.environ.get("SWARMCTL_BENCH_SVC_PORT", "22377"))
SWARM_LISTEN = "127.0.0.1:2477"
SWARM_ADDR_POOL = "127.253.0.0/16"
GW_NAME = "docker_gwbridge"
GW_PEER = "swbench-gwpeer"
SLEEP = ["sleep", "3600"]
POLL = 0.1
PHASES = ("create", "update", "scale", "rm")
UPDATE_PARALLELISM = 5
IMAGE2 = "swarmctl-test/busybox:bench-update"  # built from the test image with one ENV more: other content


class BenchCluster(Cluster):
    """The harness's Cluster on addresses and a port apart from the integration tests' and control_plane's."""

    def daemon(self, index: int, start: bool = True, **kwargs) -> Daemon:
        kwargs.setdefault("port", BENCH_PORT)
        return super().daemon(index + INDEX_OFFSET, start=start, **kwargs)


class Timeout(Exception):
    pass


def log(msg: str = "") -> None:
    print(msg, flush=True)


def run(args: list[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return proc


def count(engine: docker.DockerClient, label: str, running: bool = True) -> int:
    """Containers carrying the label, as the engine reports them (one list call, no inspects)."""
    filters = {"label": label}
    if running:
        filters["status"] = "running"
    return len(engine.api.containers(all=not running, filters=filters, quiet=True))


def wait_count(engine, label: str, want: int, running: bool, timeout: float) -> dict:
    """Poll until the count equals `want`; returns {seconds, first} (first: time of the first change)."""
    t0 = time.perf_counter()
    start = None
    first = None
    while True:
        n = count(engine, label, running)
        now = time.perf_counter()
        if start is None:
            start = n
        elif first is None and n != start:
            first = now - t0
        if n == want:
            return {"seconds": now - t0, "first": first if first is not None else now - t0}
        if now - t0 > timeout:
            raise Timeout(f"{n} of {want} after {timeout:.0f}s")
        time.sleep(POLL)


def running_images(engine, label: str) -> list[str]:
    return [c["ImageID"] for c in engine.api.containers(filters={"label": label, "status": "running"})]


def wait_images(engine, label: str, image_id: str, want: int, timeout: float) -> dict:
    """Poll until `want` containers run `image_id` and no other; {seconds, first} as wait_count gives them."""
    t0 = time.perf_counter()
    first = None
    while True:
        images = running_images(engine, label)
        now = time.perf_counter() - t0
        new = sum(1 for i in images if i == image_id)
        if first is None and new:
            first = now
        if new == want and len(images) == want:
            return {"seconds": now, "first": first if first is not None else now}
        if now > timeout:
            raise Timeout(f"{new} of {want} on the new image ({len(images)} running) after {timeout:.0f}s")
        time.sleep(POLL)


def timed_update(engine, label: str, action, image_id: str, want: int, timeout: float) -> dict:
    """Run `action` (a rolling update), then wait until `want` containers run `image_id` and no other."""
    return _timed(engine, label, action, lambda left: wait_images(engine, label, image_id, want, left), timeout)


def timed(engine, label: str, action, want: int, running: bool, timeout: float) -> dict:
    """Run `action`, then wait for the engine to show `want` containers; the clock starts before the action."""
    return _timed(engine, label, action, lambda left: wait_count(engine, label, want, running, left), timeout)


def _timed(engine, label: str, action, wait, timeout: float) -> dict:
    recorder = EventRecorder(engine, label)
    t0 = time.perf_counter()
    recorder.t0 = time.time()
    try:
        action()
        call = time.perf_counter() - t0
        res = wait(max(1.0, timeout - call))
    except Timeout as exc:
        exc.events = recorder.stop()
        raise
    except BaseException:
        recorder.stop()
        raise
    res["seconds"] += call
    res["first"] += call
    res["call"] = call
    res["events"] = recorder.stop()
    return res


EVENT_ACTIONS = ("create", "start", "kill", "die", "destroy")


class EventRecorder:
    """The engine's own timeline of a phase, streamed live (the engine keeps only its last 256 events)."""

    def __init__(self, engine, label: str):
        self.t0 = time.time()
        self.seen: dict[str, list[float]] = {}
        self.error = None
        try:
            self.stream = engine.events(decode=True, filters={"type": "container", "label": label})
        except docker.errors.DockerException as exc:
            self.stream, self.error = None, exc
            return
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for ev in self.stream:
                action = ev.get("Action") or ev.get("status") or ""
                if action in EVENT_ACTIONS:
                    self.seen.setdefault(action, []).append(ev["timeNano"] / 1e9 - self.t0)
        except Exception:  # the stream was closed by stop()
            pass

    def stop(self) -> str:
        """Per container action: count and [first-last] seconds after the phase began."""
        if self.stream is None:
            return f"events unavailable: {self.error}"
        time.sleep(0.3)  # let the last events arrive
        self.stream.close()
        self.thread.join(5)
        seen = dict(self.seen)
        return "  ".join(f"{a} {len(seen[a])} [{min(seen[a]):.2f}-{max(seen[a]):.2f}s]"
                         for a in EVENT_ACTIONS if a in seen) or "no events"


def fmt_phase(name: str, n: int, res: dict) -> str:
    return (f"    {name:<6} N={n:<4} {res['seconds']:7.2f}s  (API call {res['call'] * 1000:.0f} ms, "
            f"first change after {res['first']:.2f}s)\n"
            f"           engine events: {res['events']}")


# ---- A) swarmctl -----------------------------------------------------------------------------
def bench_swarmctl(n: int, engine, socket_url: str, image: str, timeout: float, keep: bool,
                   log_level: str = "info") -> dict:
    results: dict[str, object] = {}
    root = tempfile.mkdtemp(prefix="swb-", dir="/tmp")   # short: unix socket paths are limited
    cluster = BenchCluster(root, heartbeat=HEARTBEAT, docker_host=socket_url)
    name = f"swbench{n}x{os.getpid()}"
    label = f"swarmctl.service.name={name}"
    node_ids: list[str] = []
    created = False
    try:
        t = time.perf_counter()
        # the harness passes --log-level info; a later --log-level wins
        managers, workers = cluster.form(managers=3, workers=2, extra_args=["--log-level", log_level])
        api = Client(f"unix://{managers[0].socket}", timeout=60)

        def all_ready():
            nodes = api.get("/v1/nodes")
            return len(nodes) == 5 and all(x["status"]["state"] == "ready" for x in nodes) and nodes
        nodes = wait_for(all_ready, timeout=60, interval=0.2, what="5 ready nodes")
        node_ids = [x["id"] for x in nodes]
        log(f"  swarmctl: 5 nodes ready on 127.0.0.{INDEX_OFFSET + 11}-{INDEX_OFFSET + 15}:{BENCH_PORT} "
            f"in {time.perf_counter() - t:.1f}s (heartbeat {HEARTBEAT:g}s, logs in {root})")
        body = {"name": name, "replicas": n, "task": {"image": image, "args": SLEEP, "stop_grace_period": 0}}

        def create():
            nonlocal created
            api.post("/v1/services", body)
            created = True
        try:
            results["create"] = res = timed(engine, label, create, n, True, timeout)
            log(fmt_phase("create", n, res))
            by_node = per_node(engine, label, "swarmctl.node.id", node_ids)
            log(f"           containers per node: {by_node}")
            image2_id = engine.images.get(IMAGE2).id
            results["update"] = res = timed_update(
                engine, label, lambda: api.post(f"/v1/services/{name}/update", {
                    "task": {"image": IMAGE2}, "update_config": {"parallelism": UPDATE_PARALLELISM}}),
                image2_id, n, timeout)
            log(fmt_phase("update", n, res))
            results["scale"] = res = timed(engine, label, lambda: api.post(f"/v1/services/{name}/scale",
                                                                           {"replicas": 2 * n}),
                                           2 * n, True, timeout)
            log(fmt_phase("scale", n, res))
        except Timeout as exc:
            phase = next(p for p in PHASES if p not in results)
            results[phase] = f"timeout ({exc})"
            log(f"    {phase:<6} N={n:<4} TIMEOUT: {exc}")
            log(f"           engine events: {getattr(exc, 'events', '?')}")
            try:
                log(f"           swarmctl progress: {api.get(f'/v1/services/{name}/progress')}")
            except CLIError as e:
                log(f"           swarmctl progress unavailable: {e}")
        if created:
            try:
                results["rm"] = res = timed(engine, label, lambda: api.delete(f"/v1/services/{name}"),
                                            0, False, timeout)
                created = False
                log(fmt_phase("rm", n, res))
            except Timeout as exc:
                results["rm"] = f"timeout ({exc})"
                log(f"    rm     N={n:<4} TIMEOUT: {exc}")
                log(f"           engine events: {getattr(exc, 'events', '?')}")
        return results
    except BaseException:
        for d in cluster.daemons.values():
            tail = d.tail(15)
            if tail:
                log(f"--- {d.name} log tail ---\n{tail}")
        raise
    finally:
        cluster.stop_all()
        # containers of this run only: the service's own, and any other made by these nodes' agents
        leftovers = engine.api.containers(all=True, filters={"label": label}, quiet=True)
        for nid in node_ids:
            leftovers += engine.api.containers(all=True, filters={"label": f"swarmctl.node.id={nid}"}, quiet=True)
        for cid in {c["Id"] for c in leftovers}:
            try:
                engine.api.remove_container(cid, force=True)
            except docker.errors.NotFound:
                pass
        if {c["Id"] for c in leftovers}:
            log(f"  swarmctl cleanup: force-removed {len({c['Id'] for c in leftovers})} leftover container(s)")
        if keep:
            log(f"  kept swarmctl logs in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def per_node(engine, label: str, node_label: str, order: list[str] | None = None) -> str:
    counts: dict[str, int] = {}
    for c in engine.api.containers(filters={"label": label, "status": "running"}):
        key = (c.get("Labels") or {}).get(node_label, "?")
        counts[key] = counts.get(key, 0) + 1
    keys = order or sorted(counts)
    return " ".join(str(counts.get(k, 0)) for k in keys)


# ---- B) Docker Swarm ---------------------------------------------------------------------------
def host_ipv4() -> set[str]:
    out = run(["ip", "-o", "-4", "addr", "show"]).stdout
    addrs = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            addrs.add(f"{parts[1]} {parts[parts.index('inet') + 1]}")
    return addrs


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def non_loopback_new(before: set[str], after: set[str]) -> list[str]:
    bad = []
    for entry in sorted(after - before):
        addr = entry.split()[1].split("/")[0]
        if not ipaddress.ip_address(addr).is_loopback:
            bad.append(entry)
    return bad


class SwarmSetup:
    """Swarm mode on the engine with no bridge network and no non-loopback address; undone by close()."""

    def __init__(self, engine, docker_cli: list[str]):
        self.engine = engine
        self.cli = docker_cli
        self.made_link = False
        self.joined = False
        self.addrs_before: set[str] = set()
        self.gw_network_before = False

    def open(self) -> None:
        state = self.engine.info().get("Swarm", {}).get("LocalNodeState")
        if state != "inactive":
            raise RuntimeError(f"the engine's swarm state is {state!r}, not 'inactive': someone else uses swarm "
                               "mode on it; not touching it")
        self.gw_network_before = bool(self.engine.networks.list(names=[GW_NAME]))
        if self.gw_network_before:
            raise RuntimeError(f"a Docker network {GW_NAME} already exists on the engine; Swarm would use it")
        if link_exists(GW_NAME):
            raise RuntimeError(f"a link named {GW_NAME} already exists on the host (not made by this bench)")
        self.addrs_before = host_ipv4()
        # the placeholder: not a bridge, down, no address -> the engine cannot make docker_gwbridge
        run(["ip", "link", "add", GW_NAME, "type", "veth", "peer", "name", GW_PEER])
        self.made_link = True
        self.joined = True  # from here on, always `swarm leave --force`
        run(self.cli + ["swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", SWARM_LISTEN,
                        "--data-path-addr", "127.0.0.1", "--default-addr-pool", SWARM_ADDR_POOL], timeout=60)
        # the routing mesh is not used (host networking, no published ports): remove it
        deadline = time.monotonic() + 20
        while True:
            nets = self.engine.networks.list(names=["ingress"])
            if nets:
                try:
                    nets[0].remove()
                    break
                except docker.errors.APIError as exc:
                    last = exc
            else:
                last = "not there yet"
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not remove the ingress network: {last}")
            time.sleep(0.2)
        wait_for(lambda: not self.engine.networks.list(names=["ingress"]), timeout=20, what="ingress removed")
        self.check_network_rules()

    def check_network_rules(self) -> None:
        bad = non_loopback_new(self.addrs_before, host_ipv4())
        if bad:
            raise RuntimeError(f"swarm mode put non-loopback addresses on the host: {bad}")
        bridges = [n.name for n in self.engine.networks.list() if (n.attrs.get("Driver") == "bridge")]
        if bridges:
            raise RuntimeError(f"swarm mode made bridge network(s) {bridges}")

    def close(self) -> list[str]:
        problems = []
        if self.joined:
            proc = run(self.cli + ["swarm", "leave", "--force"], timeout=120, check=False)
            if proc.returncode != 0 and "not part of a swarm" not in proc.stderr:
                problems.append(f"swarm leave: {proc.stderr.strip()}")
            self.joined = False
        if not self.gw_network_before:
            for net in self.engine.networks.list(names=[GW_NAME]):
                try:
                    net.remove()
                    problems.append(f"removed a {GW_NAME} network that appeared during the run")
                except docker.errors.APIError as exc:
                    problems.append(f"could not remove network {GW_NAME}: {exc}")
        if self.made_link:
            proc = run(["ip", "link", "del", GW_NAME], check=False)
            if proc.returncode != 0 and link_exists(GW_NAME):
                problems.append(f"could not delete link {GW_NAME}: {proc.stderr.strip()}")
            self.made_link = False
        return problems


def bench_swarm(n: int, engine, docker_cli: list[str], image_id: str, timeout: float) -> dict:
    results: dict[str, object] = {}
    setup = SwarmSetup(engine, docker_cli)
    name = f"bench{n}x{os.getpid()}"
    label = f"com.docker.swarm.service.name={name}"
    service_id = None
    try:
        t = time.perf_counter()
        setup.open()
        log(f"  Docker Swarm: single-node swarm on {SWARM_LISTEN} in {time.perf_counter() - t:.1f}s "
            f"(ingress removed, no bridge network, no new host address)")
        template = TaskTemplate(container_spec=ContainerSpec(image_id, SLEEP[:1], args=SLEEP[1:],
                                                             stop_grace_period=0),
                                networks=["host"])

        def create():
            nonlocal service_id
            service_id = engine.api.create_service(template, name=name, mode=ServiceMode("replicated", n))["ID"]
        try:
            results["create"] = res = timed(engine, label, create, n, True, timeout)
            log(fmt_phase("create", n, res))
            image2_id = engine.images.get(IMAGE2).id
            results["update"] = res = timed_update(
                engine, label, lambda: engine.services.get(service_id).update(
                    image=image2_id, update_config=UpdateConfig(parallelism=UPDATE_PARALLELISM),
                    fetch_current_spec=True),
                image2_id, n, timeout)
            log(fmt_phase("update", n, res))
            results["scale"] = res = timed(engine, label, lambda: engine.services.get(service_id).scale(2 * n),
                                           2 * n, True, timeout)
            log(fmt_phase("scale", n, res))
        except Timeout as exc:
            phase = next(p for p in PHASES if p not in results)
            results[phase] = f"timeout ({exc})"
            log(f"    {phase:<6} N={n:<4} TIMEOUT: {exc}")
            log(f"           engine events: {getattr(exc, 'events', '?')}")
            if service_id:
                ps = run(docker_cli + ["service", "ps", "--no-trunc", "--format",
                                       "{{.CurrentState}} {{.Error}}", service_id], check=False).stdout
                log("           swarm tasks: " + "; ".join(sorted(set(ps.splitlines()))[:5]))
        if service_id:
            try:
                results["rm"] = res = timed(engine, label, lambda: engine.api.remove_service(service_id),
                                            0, False, timeout)
                service_id = None
                log(fmt_phase("rm", n, res))
            except Timeout as exc:
                results["rm"] = f"timeout ({exc})"
                log(f"    rm     N={n:<4} TIMEOUT: {exc}")
                log(f"           engine events: {getattr(exc, 'events', '?')}")
        setup.check_network_rules()
        return results
    finally:
        if service_id:
            try:
                engine.api.remove_service(service_id)
            except docker.errors.APIError:
                pass
        problems = setup.close()
        for cid in {c["Id"] for c in engine.api.containers(all=True, filters={"label": label}, quiet=True)}:
            try:
                engine.api.remove_container(cid, force=True)
            except docker.errors.NotFound:
                pass
        for p in problems:
            log(f"  swarm cleanup: {p}")


# ---- C) the engine alone ------------------------------------------------------------------------
def bench_floor(n: int, engine, image: str, timeout: float, threads: int) -> dict:
    """The same three phases with plain container calls, `threads` at a time: what the engine itself allows."""
    from concurrent.futures import ThreadPoolExecutor
    results: dict[str, object] = {}
    tag = f"floor{n}x{os.getpid()}"
    label = f"swbench.floor={tag}"
    seq = iter(range(1, 10 ** 6))

    def start_one(_):
        c = engine.api.create_container(image, command=SLEEP, name=f"swbench-{tag}-{next(seq)}",
                                        labels={"swbench.floor": tag},
                                        host_config=engine.api.create_host_config(network_mode="host"))
        engine.api.start(c["Id"])

    def remove_one(cid):
        engine.api.remove_container(cid, force=True)

    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        results["create"] = res = timed(engine, label, lambda: list(pool.map(start_one, range(n))), n, True, timeout)
        log(fmt_phase("create", n, res))
        results["scale"] = res = timed(engine, label, lambda: list(pool.map(start_one, range(n))), 2 * n, True,
                                       timeout)
        log(fmt_phase("scale", n, res))
        ids = [c["Id"] for c in engine.api.containers(all=True, filters={"label": label}, quiet=True)]
        results["rm"] = res = timed(engine, label, lambda: list(pool.map(remove_one, ids)), 0, False, timeout)
        log(fmt_phase("rm", n, res))
        return results
    finally:
        pool.shutdown(wait=True)
        for c in engine.api.containers(all=True, filters={"label": label}, quiet=True):
            try:
                engine.api.remove_container(c["Id"], force=True)
            except docker.errors.NotFound:
                pass


# ---- report -----------------------------------------------------------------------------------
def secs(v) -> float | None:
    return v["seconds"] if isinstance(v, dict) else None


def cell(v) -> str:
    if isinstance(v, dict):
        return f"{v['seconds']:.2f}"
    if v is None:
        return "-"
    return "TIMEOUT" if str(v).startswith("timeout") else "n/a"


def report(sizes: list[int], ours: dict, theirs: dict, swarm_error: str | None, quick: bool,
           floor: dict | None = None, threads: int = 8) -> None:
    log("\n==== services bench: swarmctl (3 managers + 2 workers) vs Docker Swarm (1 node), same engine"
        + (" (--quick)" if quick else "") + " ====")
    log(f"{'phase':<8}{'N':>5}  {'swarmctl s':>11}  {'Docker Swarm s':>15}  {'ratio':>7}")
    tot_a = tot_b = 0.0
    complete = True
    for n in sizes:
        for ph in PHASES:
            a, b = ours.get(n, {}).get(ph), theirs.get(n, {}).get(ph)
            sa, sb = secs(a), secs(b)
            ratio = f"{sa / sb:.2f}" if sa is not None and sb else "-"
            log(f"{ph:<8}{n:>5}  {cell(a):>11}  {cell(b):>15}  {ratio:>7}")
            if sa is None or sb is None:
                complete = False
            else:
                tot_a += sa
                tot_b += sb
    tot_ratio = tot_a / tot_b if tot_b else float("nan")
    log(f"{'total':<8}{'':>5}  {tot_a:>11.2f}  {tot_b:>15.2f}  {tot_ratio:>7.2f}"
        + ("" if complete else "   (over the phases measured on both sides only)"))
    for n in sizes:
        a = [secs(ours.get(n, {}).get(p)) for p in PHASES]
        b = [secs(theirs.get(n, {}).get(p)) for p in PHASES]
        if None not in a and None not in b:
            log(f"  N={n}: swarmctl {sum(a):.2f}s, Docker Swarm {sum(b):.2f}s, ratio {sum(a) / sum(b):.2f}")
    if swarm_error:
        verdict = "n/a (Docker Swarm could not be measured)"
    elif not complete:
        verdict = "FAIL (incomplete: a phase timed out or failed)"
    else:
        verdict = "PASS" if tot_a <= TARGET_RATIO * tot_b else "FAIL"
    log(f"target: swarmctl total <= {TARGET_RATIO} x Docker Swarm total: {verdict}"
        + (f" ({tot_a:.2f}s vs {TARGET_RATIO} x {tot_b:.2f}s = {TARGET_RATIO * tot_b:.2f}s)" if complete and not
           swarm_error else ""))
    if swarm_error:
        log(f"Docker Swarm not measured: {swarm_error}")
    if floor:
        log(f"engine floor (no orchestrator: create+start / rm -f through the engine API, {threads} at a time):")
        log(f"{'phase':<8}{'N':>5}  {'engine s':>11}  {'swarmctl/floor':>15}  {'Swarm/floor':>11}")
        for n in sizes:
            for ph in PHASES:
                f = secs(floor.get(n, {}).get(ph))
                a, b = secs(ours.get(n, {}).get(ph)), secs(theirs.get(n, {}).get(ph))
                ra = f"{a / f:.2f}" if a is not None and f else "-"
                rb = f"{b / f:.2f}" if b is not None and f else "-"
                log(f"{ph:<8}{n:>5}  {cell(floor.get(n, {}).get(ph)):>11}  {ra:>15}  {rb:>11}")


def code_version() -> str:
    """The commit, and the swarmctl files that differ from it: the daemons run the working tree."""
    try:
        head = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], timeout=10).stdout.strip()
        dirty = run(["git", "-C", ROOT, "status", "--porcelain", "--", "swarmctl"], timeout=10).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
        return head + (f" + uncommitted changes in {', '.join(dirty)}" if dirty else " (clean)")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=None, help="comma-separated replica counts (default 20,60; --quick: 10)")
    ap.add_argument("--quick", action="store_true", help="one small size (10) unless --sizes is given")
    ap.add_argument("--timeout", type=float, default=180.0, help="bound of every wait, seconds (default 180)")
    ap.add_argument("--keep", action="store_true", help="keep the swarmctl daemons' temp dirs (logs)")
    ap.add_argument("--skip-swarm", action="store_true", help="measure swarmctl only")
    ap.add_argument("--floor", action="store_true",
                    help="also time the same phases with plain engine calls (no orchestrator), for reference")
    ap.add_argument("--floor-threads", type=int, default=8, help="parallel engine calls for --floor (default 8)")
    ap.add_argument("--log-level", default="info", help="log level of the swarmctl daemons (default info)")
    args = ap.parse_args()
    sizes = [int(x) for x in (args.sizes or ("10" if args.quick else "20,60")).split(",") if x.strip()]
    if not sizes or min(sizes) < 1:
        ap.error("--sizes needs positive integers")

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)

    t_begin = time.perf_counter()
    ours: dict[int, dict] = {}
    theirs: dict[int, dict] = {}
    floor: dict[int, dict] = {}
    swarm_error = "skipped (--skip-swarm)" if args.skip_swarm else None
    engine = None
    try:
        try:
            socket_url = docker_engine.ensure_engine()
        except BaseException as exc:  # pytest.skip/fail outcomes are BaseExceptions
            log(f"the private Docker engine is not available: {exc}")
            return 1
        log(f"engine {socket_url} ({'started by this bench' if docker_engine._started_by_us else 'already running'})")
        engine = docker.DockerClient(base_url=socket_url, timeout=120)
        image = docker_engine.TEST_IMAGE
        image_id = engine.images.get(image).id
        engine.images.build(fileobj=io.BytesIO(f"FROM {image}\nENV SWARMCTL_BENCH=update\n".encode()), tag=IMAGE2,
                            network_mode="none", rm=True)
        docker_cli = ["docker", "-H", socket_url]
        others = len(engine.api.containers(quiet=True))
        log(f"image {image} ({image_id[:19]}); {others} other container(s) running on the engine at start; "
            f"sizes {sizes}; waits bounded at {args.timeout:.0f}s")
        log(f"swarmctl code: {code_version()}")
        for n in sizes:
            log(f"\n[N={n}] A) swarmctl")
            ours[n] = bench_swarmctl(n, engine, socket_url, image, args.timeout, args.keep, args.log_level)
            if not swarm_error:
                log(f"[N={n}] B) Docker Swarm")
                try:
                    theirs[n] = bench_swarm(n, engine, docker_cli, image_id, args.timeout)
                except (RuntimeError, docker.errors.DockerException, subprocess.SubprocessError) as exc:
                    swarm_error = str(exc)
                    log(f"  Docker Swarm could not be measured: {exc}")
            if args.floor:
                log(f"[N={n}] C) the engine alone ({args.floor_threads} parallel calls)")
                floor[n] = bench_floor(n, engine, image, args.timeout, args.floor_threads)
        report(sizes, ours, theirs, swarm_error, args.quick, floor if args.floor else None, args.floor_threads)
        log(f"(total run {time.perf_counter() - t_begin:.1f}s)")
        return 0
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        if engine is not None:
            try:
                engine.images.remove(IMAGE2, force=True)
            except docker.errors.DockerException:
                pass
            try:
                state = engine.info().get("Swarm", {}).get("LocalNodeState")
                log(f"after the run: engine swarm state {state!r}, "
                    f"{len(engine.api.containers(all=True, quiet=True))} container(s) on the engine (all users)")
            except docker.errors.DockerException:
                pass
            engine.close()
        try:
            docker_engine.release_engine()
        except Exception as exc:
            log(f"stopping the engine failed: {exc}")


if __name__ == "__main__":
    sys.exit(main())
