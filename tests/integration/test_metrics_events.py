"""Issue 12, items 1 and 2, with real daemons and the real engine: /metrics scraped and parsed with
prometheus-client's parser matches `node ls` and `service ps`; `swarmctl events` gives the right events, with
their attributes, in Raft order; `--since` replays them and `--until` ends the stream."""

import collections
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import docker
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import SWARMCTL, Cluster, check, wait_for

pytestmark = pytest.mark.integration

IMAGE = "swarmctl-test/busybox:latest"
METRICS_PORT = 39123
MESH_PORT = 39180


@pytest.fixture
def observed(docker_engine, test_image):
    """3 managers and a worker on the test engine, each serving /metrics on its own address."""
    root = tempfile.mkdtemp(prefix="swarmctl-obs-", dir="/tmp")
    c = Cluster(root, heartbeat=0.5, docker_host=docker_engine)
    try:
        yield c
    finally:
        c.stop_all()
        client = docker.DockerClient(base_url=docker_engine)
        for container in client.containers.list(all=True, filters={"label": "swarmctl.service.name=obsweb"}):
            try:
                container.remove(force=True)
            except docker.errors.APIError:  # already being removed
                pass
        client.close()
        shutil.rmtree(root, ignore_errors=True)


def start(cluster, index):
    ip = f"127.0.0.{10 + int(os.environ.get('SWARMCTL_TEST_IP_OFFSET', '0')) + index}"
    return cluster.daemon(index, extra_args=["--metrics-addr", f"{ip}:{METRICS_PORT}"])


def form(cluster):
    nodes = [start(cluster, i) for i in range(1, 5)]
    first = nodes[0]
    check(first.cli("swarm", "init", "--advertise-addr", first.ip))
    manager_token = check(first.cli("swarm", "join-token", "-q", "manager")).out.strip()
    worker_token = check(first.cli("swarm", "join-token", "-q", "worker")).out.strip()
    for d in nodes[1:3]:
        check(d.cli("swarm", "join", "--token", manager_token, first.addr))
    check(nodes[3].cli("swarm", "join", "--token", worker_token, first.addr))
    return nodes


def scrape(daemon) -> dict:
    """{(sample name, labels as a sorted tuple): value} from the daemon's /metrics."""
    with urllib.request.urlopen(f"http://{daemon.ip}:{METRICS_PORT}/metrics", timeout=10) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def gauge(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def mesh_backends(daemon):
    """The backends of the published port on the daemon's own address, from its /metrics."""
    samples = scrape(daemon)
    found = [v for (name, labels), v in samples.items() if name == "swarmctl_mesh_backends"
             and dict(labels).get("listener") == f"{daemon.ip}:{MESH_PORT}/tcp"]
    return found[0] if found else None


def counts_match(manager) -> bool:
    """The metrics' node and task counts are `node ls`'s and `service ps`'s (every task, all states)."""
    nodes = check(manager.cli("node", "ls", "--format", "json")).json()
    tasks = check(manager.cli("service", "ps", "--format", "json", "obsweb")).json()
    samples = scrape(manager)
    node_states = collections.Counter(n["status"]["state"] for n in nodes)
    task_states = collections.Counter(t["status"]["state"] for t in tasks)
    for state in ("ready", "down", "unknown"):
        if gauge(samples, "swarm_manager_nodes", state=state) != node_states.get(state, 0):
            return False
    for state in ("pending", "assigned", "running", "shutdown", "failed", "orphaned", "complete"):
        if gauge(samples, "swarm_manager_tasks_total", state=state) != task_states.get(state, 0):
            return False
    return gauge(samples, "swarm_manager_services_total") == 1


def running(manager, n) -> bool:
    tasks = check(manager.cli("service", "ps", "--format", "json", "obsweb")).json()
    return sum(1 for t in tasks if t["desired_state"] == "running" and t["status"]["state"] == "running") == n


def events_cli(daemon, *args, timeout=60):
    env = dict(os.environ, SWARMCTL_HOST=f"unix://{daemon.socket}")
    return subprocess.run(SWARMCTL + ["events", *args], capture_output=True, text=True, env=env, timeout=timeout)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_INFO = """
import json, sys
from ansible.module_utils.testing import patch_module_args
from ansible_collections.swarmctl.cluster.plugins.modules import info
with patch_module_args(json.loads(sys.argv[1])):
    try:
        info.main()
    except SystemExit:
        pass
"""


def info_module(daemon, root, args):
    """The collection's info module, run in a process of its own against the daemon's socket."""
    pytest.importorskip("ansible")
    collections_root = os.path.join(root, "coll")
    if not os.path.exists(collections_root):
        os.makedirs(os.path.join(collections_root, "ansible_collections", "swarmctl"))
        os.symlink(REPO, os.path.join(collections_root, "ansible_collections", "swarmctl", "cluster"))
    env = dict(os.environ, PYTHONPATH=collections_root)
    proc = subprocess.run([SWARMCTL[0], "-c", RUN_INFO, json.dumps(dict(args, swarmctl_host=f"unix://{daemon.socket}"))],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def ours(events):
    """The events of the scenario (service obsweb and node changes), as (type, action, attributes)."""
    return [e for e in events if e["Type"] in ("service", "node")]


def test_metrics_and_events(observed):
    nodes = form(observed)
    m = nodes[0]
    samples = scrape(m)
    assert gauge(samples, "swarm_manager_leader") == 1
    assert gauge(samples, "swarm_node_manager") == 1
    assert gauge(scrape(nodes[3]), "swarm_node_manager") == 0  # a worker: no store, no state gauges
    assert gauge(scrape(nodes[3]), "swarm_manager_nodes", state="ready") is None
    info = m.info()
    assert gauge(samples, "swarm_node_info", node_id=info["node_id"], swarm_id=info["cluster_id"]) == 1
    wait_for(lambda: gauge(scrape(m), "swarm_manager_nodes", state="ready") == 4, what="4 ready nodes")

    started = time.time()
    env = dict(os.environ, SWARMCTL_HOST=f"unix://{m.socket}")
    log = open(os.path.join(observed.root, "events.jsonl"), "w")
    follower = subprocess.Popen(SWARMCTL + ["events", "--format", "json", "--filter", "type=service",
                                            "--filter", "type=node"], stdout=log, stderr=subprocess.STDOUT,
                                env=env)
    try:
        time.sleep(1.0)
        check(m.cli("service", "create", "--name", "obsweb", "--stop-grace-period", "0s", "--replicas", "1",
                    "--publish", f"{MESH_PORT}:80", IMAGE, "sleep", "3600", timeout=120))
        wait_for(lambda: running(m, 1) and counts_match(m), timeout=30, what="metrics after create")
        check(m.cli("service", "scale", "obsweb=3", timeout=120))
        wait_for(lambda: running(m, 3) and counts_match(m), timeout=30, what="metrics after scale")
        wait_for(lambda: mesh_backends(m) == 3, timeout=30, what="the mesh's 3 backends in the metrics")
        check(m.cli("service", "update", "--image", "swarmctl-test/busybox", "obsweb", timeout=180))
        wait_for(lambda: running(m, 3), timeout=60, what="the update")
        worker = nodes[3]
        check(m.cli("node", "update", "--availability", "drain", worker.name))
        wait_for(lambda: running(m, 3), timeout=60, what="tasks off the drained worker")
        nodes[2].kill()
        wait_for(lambda: any(n["status"]["state"] == "down" and n["description"]["hostname"] == nodes[2].name
                             for n in check(m.cli("node", "ls", "--format", "json")).json()),
                 timeout=30, what="node3 down")
        wait_for(lambda: running(m, 3) and counts_match(m), timeout=60, what="metrics after the node kill")
        samples = scrape(m)
        assert gauge(samples, "swarm_manager_nodes", state="down") == 1
        assert gauge(samples, "swarm_manager_nodes", state="ready") == 3
        assert samples[("swarm_raft_transaction_latency_seconds_count", ())] > 0
        assert samples[("swarm_store_write_tx_latency_seconds_count", ())] > 0
        assert samples[("swarm_dispatcher_scheduling_delay_seconds_count", ())] > 0
        assert samples[("swarmctl_raft_applied_index", ())] > 0
        assert samples[("swarmctl_dispatcher_heartbeats_total", ())] > 0
        assert any(name == "swarmctl_api_requests_total" and dict(labels).get("route") == "/v1/services"
                   for name, labels in samples)
        agent_ops = [v for (name, labels), v in samples.items() if name == "swarmctl_agent_container_operations_total"
                     and dict(labels).get("operation") == "start" and dict(labels).get("result") == "ok"]
        assert agent_ops and agent_ops[0] >= 1
        check(m.cli("service", "rm", "obsweb"))
        time.sleep(1.5)
    finally:
        follower.terminate()
        follower.wait(10)
        log.close()
    ended = time.time()
    with open(os.path.join(observed.root, "events.jsonl")) as f:
        live = [json.loads(line) for line in f if line.strip()]
    assert [e["index"] for e in live] == sorted(e["index"] for e in live)  # Raft order

    def expect(events):
        svc = [e for e in events if e["Type"] == "service"]
        assert svc[0]["Action"] == "create"
        assert svc[0]["Actor"]["Attributes"]["name"] == "obsweb"
        assert svc[0]["Actor"]["Attributes"]["replicas.new"] == "1"
        assert svc[0]["Actor"]["Attributes"]["image.new"] == IMAGE
        service_id = svc[0]["Actor"]["ID"]
        steps = []
        for e in events:
            a = e["Actor"]["Attributes"]
            if e["Type"] == "service" and e["Action"] == "create":
                steps.append("create")
            elif e["Type"] == "service" and a.get("replicas.new") == "3":
                assert a["replicas.old"] == "1" and e["Action"] == "update"
                steps.append("scale")
            elif e["Type"] == "service" and a.get("image.new") == "swarmctl-test/busybox":
                assert a["image.old"] == IMAGE
                steps.append("update")
            elif e["Type"] == "service" and a.get("updatestate.new") == "completed":
                steps.append("update completed")
            elif e["Type"] == "node" and a.get("availability.new") == "drain":
                assert a["availability.old"] == "active" and a["name"] == nodes[3].name
                steps.append("drain")
            elif e["Type"] == "node" and a.get("state.new") == "down":
                assert a["state.old"] == "ready" and a["name"] == nodes[2].name
                steps.append("down")
            elif e["Type"] == "service" and e["Action"] == "remove":
                assert e["Actor"]["ID"] == service_id and a["name"] == "obsweb"
                steps.append("remove")
            assert e["scope"] == "swarm" and e["time"] == e["timeNano"] // 10 ** 9
        dedup = [s for i, s in enumerate(steps) if i == 0 or steps[i - 1] != s]
        assert [s for s in dedup if s != "update completed"] == ["create", "scale", "update", "drain", "down",
                                                                 "remove"], steps
        assert "update completed" in dedup

    expect(live)

    # --since replays the history (and --until ends it at once, being in the past)
    replay = events_cli(m, "--since", f"{started:.3f}", "--until", f"{ended:.3f}", "--format", "json",
                        "--filter", "type=service", "--filter", "type=node")
    assert replay.returncode == 0, replay.stderr
    replayed = [json.loads(line) for line in replay.stdout.splitlines()]
    expect(replayed)
    # compared from the scenario's first event to the live stream's last: a node event between `started` and the
    # moment the live follower subscribed is replayed but was never seen live
    first = min(e["index"] for e in live if e["Type"] == "service")
    last = max(e["index"] for e in live)
    assert [e["index"] for e in ours(replayed) if first <= e["index"] <= last] == \
        [e["index"] for e in ours(live) if e["index"] >= first]

    # the info module returns the same events
    result = info_module(m, observed.root, {"events_since": f"{started:.3f}", "events_until": f"{ended:.3f}",
                                            "events_filters": {"type": ["service", "node"]}})
    assert not result.get("failed"), result
    assert [e["index"] for e in result["events"]] == [e["index"] for e in replayed]

    # the text form, and a filter on the service
    text = events_cli(m, "--since", "10m", "--until", "0s", "--filter", "service=obsweb", "--filter", "event=remove")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()  # the service's removal, and its tasks' (they match service=obsweb too)
    assert len(lines) > 1 and all(" remove " in line and "obsweb" in line for line in lines), lines
    assert " task remove " in lines[-1] and "service.name=obsweb" in lines[-1], lines
    text = events_cli(m, "--since", "10m", "--until", "0s", "--filter", "service=obsweb", "--filter", "event=remove",
                      "--filter", "type=service")
    lines = text.stdout.splitlines()
    assert len(lines) == 1 and " service remove " in lines[0] and "(name=obsweb)" in lines[0], lines

    # --until in the future ends the stream then
    t0 = time.monotonic()
    until = events_cli(m, "--until", f"{time.time() + 2:.3f}", timeout=30)
    assert until.returncode == 0 and 1.5 < time.monotonic() - t0 < 15, (until, time.monotonic() - t0)

    # a client that went away (the follower above) is no error of the daemon's
    assert "internal error" not in m.tail(5000) and "Traceback" not in m.tail(5000), m.tail(60)

    # a daemon whose metrics address is taken (node1's) does not start, and says why in one line
    spare = f"127.0.0.{10 + int(os.environ.get('SWARMCTL_TEST_IP_OFFSET', '0')) + 5}"
    proc = subprocess.run(SWARMCTL + ["daemon", "--log-level", "error", "--data-dir", os.path.join(observed.root, "d5"),
                                      "--advertise-addr", spare, "--socket", os.path.join(observed.root, "d5.sock"),
                                      "--metrics-addr", f"{m.ip}:{METRICS_PORT}"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        f"Error: cannot listen on --metrics-addr {m.ip}:{METRICS_PORT}: Address already in use"], proc.stderr

    # bad input: one line, exit 1
    for args in (["--since", "yesterday"], ["--filter", "colour=red"], ["--filter", "type=volume"],
                 ["--since", "10s", "--until", "1h"]):
        bad = events_cli(m, *args)
        assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr, \
            (args, bad.stderr)
