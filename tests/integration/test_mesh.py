"""The routing mesh and service discovery on 5 real daemons and the real engine: published ports answer on every
node's address and spread over all tasks, no request fails while tasks go away, names resolve at every node and
inside a task, bad input is refused, and a restarted node comes back with its mesh and leaves nothing behind."""

from __future__ import annotations

import collections
import contextlib
import http.client
import shutil
import subprocess
import threading
import time

import dns.message
import dns.query
import dns.rdatatype
import docker
import pytest

from tests.integration.harness import check, wait_for

IMAGE = "swarmctl-test/busybox:latest"
# each task answers with its own name; it listens on the host port the leader gave it ($PORT)
HTTPD = ["sh", "-c", 'mkdir -p /www && echo "$WHO" > /www/index.html && exec httpd -f -p "$PORT" -h /www']
WHO = ["-e", "WHO={{.Task.Name}}"]


@pytest.fixture
def engine(docker_engine):
    client = docker.DockerClient(base_url=docker_engine)
    yield client
    client.close()


def get(ip: str, port: int, timeout: float = 3.0) -> str:
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode().strip()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        return body
    finally:
        conn.close()


def running_names(manager, service) -> set[str]:
    tasks = check(manager.cli("service", "ps", "--format", "json", service)).json()
    return {f"{t['name']}.{t['id']}" for t in tasks if t["desired_state"] == "running"
            and t["status"]["state"] == "running"}


def dataplanes() -> list[str]:
    """The nodes' data planes alive on this machine: proxy children and mesh tables (nftables)."""
    out = subprocess.run(["pgrep", "-af", "swarmctl.mesh.proxy"], capture_output=True, text=True).stdout
    found = [line for line in out.splitlines() if "pgrep" not in line]
    if shutil.which("nft"):
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        found += [line for line in tables.splitlines() if "swarmctl_mesh_" in line]
    return found


class Load:
    """Sequential requests, each on a new connection, round the given addresses, until stopped (bounded in
    count and time)."""

    def __init__(self, addrs: list[tuple[str, int]], limit: int = 20000, seconds: float = 180.0):
        self.addrs, self.limit, self.seconds = addrs, limit, seconds
        self.ok = 0
        self.failures: list[str] = []
        self.seen: collections.Counter = collections.Counter()
        self._stop = threading.Event()
        self._between = threading.Lock()  # held for each request; paused() holds it between two requests
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        i = 0
        while not self._stop.is_set() and i < self.limit and time.monotonic() < deadline:
            ip, port = self.addrs[i % len(self.addrs)]
            i += 1
            with self._between:
                try:
                    self.seen[get(ip, port)] += 1
                    self.ok += 1
                except Exception as exc:
                    self.failures.append(f"{ip}:{port}: {exc!r}")
            time.sleep(0.005)

    @contextlib.contextmanager
    def paused(self):
        """No request in flight while the body runs. A request that a task was answering when SIGKILL hit it
        is lost whatever forwards it (the task's process dies with it); what the mesh must save are the
        connections made after the task died, before the endpoints say so."""
        with self._between:
            yield

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


def burst_get(addrs: list[tuple[str, int]]) -> dict:
    """One request to each address at once, in threads; {"ok": [seconds], "failed": [texts]}."""
    result: dict = {"ok": [], "failed": []}

    def one(ip, port):
        start = time.monotonic()
        try:
            get(ip, port, timeout=5.0)
            result["ok"].append(time.monotonic() - start)
        except Exception as exc:
            result["failed"].append(f"{ip}:{port}: {exc!r}")

    threads = [threading.Thread(target=one, args=addr, daemon=True) for addr in addrs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    return result


def query(ip: str, name: str, rdtype: str = "A", tcp: bool = False):
    message = dns.message.make_query(name, rdtype)
    answer = (dns.query.tcp if tcp else dns.query.udp)(message, ip, port=53, timeout=3)
    return [item for rrset in answer.answer for item in rrset]


def test_routing_mesh_spreads_over_every_task_and_loses_no_request(docker_cluster, engine):
    managers, workers = docker_cluster.form(3, 2)
    m = managers[0]
    nodes = managers + workers
    # 3 replicas on the managers only: the workers run none, yet answer
    check(m.cli("service", "create", "--name", "web", "--replicas", "3", "-p", "8080:80", "--stop-grace-period", "2s",
                "--constraint", "node.role==manager", "--replicas-max-per-node", "1", *WHO, IMAGE, *HTTPD,
                timeout=120))
    names = running_names(m, "web")
    assert len(names) == 3
    ls = check(m.cli("service", "ls")).out
    assert "PORTS" in ls.splitlines()[0] and "*:8080->80/tcp" in ls
    spec = check(m.cli("service", "inspect", "web")).json()["spec"]
    assert spec["endpoint"]["ports"] == [{"protocol": "tcp", "target_port": 80, "published_port": 8080,
                                          "publish_mode": "ingress"}]
    worker = workers[0]
    wait_for(lambda: get(worker.ip, 8080) in names, timeout=10, what="the mesh on a worker")
    counts = collections.Counter(get(worker.ip, 8080) for _ in range(60))
    assert set(counts) == names and min(counts.values()) >= 10, counts
    for d in nodes:  # every node's address answers
        assert get(d.ip, 8080) in names

    # a scale-up's new task takes traffic within 2 s of running
    check(m.cli("service", "update", "--constraint-rm", "node.role==manager", "--replicas-max-per-node", "0",
                "--replicas", "5", "web", timeout=120))
    wait_for(lambda: len(running_names(m, "web")) == 5, timeout=60, what="5 running tasks")
    newest = running_names(m, "web")
    started = time.monotonic()
    seen = set()
    while time.monotonic() - started < 2.0 and seen != newest:
        seen.add(get(worker.ip, 8080))
    assert seen == newest, f"not reached within 2 s: {newest - seen}"
    print(f"scale-up: all 5 tasks answered within {time.monotonic() - started:.2f} s of running")

    # another service, removed while the load runs
    check(m.cli("service", "create", "--name", "other", "-p", "8081:80", *WHO, IMAGE, *HTTPD, timeout=120))
    wait_for(lambda: get(worker.ip, 8081), timeout=10, what="other through the mesh")
    with Load([(d.ip, 8080) for d in nodes]) as load:
        time.sleep(1.0)
        victim = engine.containers.list(filters={"label": "swarmctl.service.name=web"})[0]
        with load.paused():
            victim.kill()  # docker kill: the task dies under the load
            wait_for(lambda: victim.reload() or victim.status != "running", timeout=10, what="the task dead")
        # new connections right away, 20 at once to every node, while the endpoints still name the dead task
        burst = burst_get([(d.ip, 8080) for d in nodes] * 4)
        time.sleep(2.0)
        check(m.cli("node", "update", "--availability", "drain", workers[1].name))
        wait_for(lambda: all(t["node_name"] != workers[1].name for t in check(m.cli(
            "service", "ps", "--format", "json", "-f", "desired-state=running", "web")).json()),
            timeout=30, what="the drained node's tasks gone")
        check(m.cli("service", "rm", "other"))
        check(m.cli("service", "scale", "web=1", timeout=120))
        wait_for(lambda: len(running_names(m, "web")) == 1, timeout=60, what="one task left")
        wait_for(lambda: load.ok >= 500, timeout=60, what="500 requests")
        time.sleep(3.0)  # the scaled-down tasks have stopped by now
    print(f"mesh under faults: {load.ok} requests, {len(load.failures)} failed, answered by {dict(load.seen)}; "
          f"burst after the kill: {len(burst['ok'])} ok, slowest {max(burst['ok'] or [0]):.2f} s, "
          f"failed {burst['failed']}")
    assert load.failures == [], load.failures[:5]
    assert burst["failed"] == [] and len(burst["ok"]) == 20
    assert load.ok >= 500
    with pytest.raises(OSError):  # other's port closed on every node
        get(worker.ip, 8081, timeout=1)

    # bad input is refused with Docker's texts and changes nothing
    before = check(m.cli("service", "ls", "--format", "json")).json()
    web_id = check(m.cli("service", "inspect", "web")).json()["id"]
    conflict = m.cli("service", "create", "--name", "clash", "-p", "8080:80", IMAGE, "sleep", "60")
    assert conflict.code != 0
    assert f"port '8080' is already in use by service 'web' ({web_id}) as an ingress port" in conflict.err
    bad = m.cli("service", "create", "--name", "bad", "-p", "8080:http", IMAGE)
    assert bad.code != 0 and 'invalid argument "8080:http" for "-p, --publish" flag' in bad.err
    assert "Traceback" not in bad.err
    far = m.cli("service", "create", "--name", "far", "--publish", "published=70000,target=80", IMAGE)
    assert far.code != 0 and "must be in range 1-65535" in far.err
    add = m.cli("service", "update", "--publish-add", "published=8080,target=81,protocol=sctp", "web")
    assert add.code != 0 and "invalid protocol value 'sctp'" in add.err
    assert check(m.cli("service", "ls", "--format", "json")).json() == before


def test_names_resolve_at_every_node_and_inside_a_task(docker_cluster, engine):
    managers, workers = docker_cluster.form(3, 2)
    m = managers[0]
    nodes = managers + workers
    check(m.cli("service", "create", "--name", "web", "--replicas", "2", "-p", "8080:80", *WHO, IMAGE, *HTTPD,
                timeout=120))
    check(m.cli("service", "create", "--name", "client", "--constraint", f"node.hostname=={workers[0].name}",
                IMAGE, "sleep", "3600", timeout=120))
    tasks = [t for t in check(m.cli("service", "ps", "--format", "json", "web")).json()
             if t["status"]["state"] == "running"]
    task_ips = sorted({docker_cluster.daemons[int(t["node_name"][4:])].ip for t in tasks})
    for d in nodes:
        wait_for(lambda: query(d.ip, "tasks.web"), timeout=10, what=f"tasks.web at {d.name}")
        vip = [r.address for r in query(d.ip, "web")]
        assert len(vip) == 1 and vip[0].startswith(f"127.{d.ip.rsplit('.', 1)[1]}.")
        assert get(vip[0], 80) in running_names(m, "web")  # the VIP answers on the target port
        assert sorted(r.address for r in query(d.ip, "tasks.web", tcp=True)) == task_ips
        srv = query(d.ip, "_80._tcp.web", "SRV")
        assert len(srv) == 2 and all(20000 <= r.port <= 29999 for r in srv)
    # a task resolves the service by name through its node's DNS and reaches it on the target port
    client = engine.containers.list(filters={"label": "swarmctl.service.name=client"})[0]
    out = client.exec_run(["busybox", "nslookup", "web"]).output.decode()
    addresses = [line.split()[-1] for line in out.splitlines() if line.startswith("Address") and "#53" not in line
                 and line.split()[-1].startswith("127.")]
    vip = [a for a in addresses if not a.startswith("127.0.0.")]
    assert vip, out
    page = client.exec_run(["busybox", "wget", "-qO-", f"http://{vip[0]}/"]).output.decode().strip()
    assert page in running_names(m, "web")


def test_a_restarted_node_comes_back_with_its_mesh_and_leaves_nothing_behind(docker_cluster):
    managers, workers = docker_cluster.form(1, 1)
    m, w = managers[0], workers[0]
    check(m.cli("service", "create", "--name", "web", "-p", "8080:80", *WHO, IMAGE, *HTTPD, timeout=120))
    wait_for(lambda: get(w.ip, 8080), timeout=10, what="the mesh on the worker")
    assert len(dataplanes()) == 2
    w.stop()
    with pytest.raises(OSError):
        get(w.ip, 8080, timeout=1)
    assert len(dataplanes()) == 1  # the stopped node's data plane went with it
    w.start()
    wait_for(lambda: get(w.ip, 8080), timeout=20, what="the mesh after the restart")
    assert len(dataplanes()) == 2
    m.stop()
    w.stop()
    assert dataplanes() == []
