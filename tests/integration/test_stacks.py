"""Stacks on real daemons and the real engine: a 3-service compose file (ports, a healthcheck, depends_on with
service_healthy, deploy: settings) deploys with every setting in `service inspect`, the dependent only after its
dependency is healthy; a second deploy changes nothing; the stack's short names resolve from its tasks; bad files
are refused and change nothing; --prune and `stack rm` remove everything; secrets and configs roll to new versions."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
import time

import dns.message
import dns.query
import docker
import pytest

from tests.integration.harness import Cluster, check, wait_for

IMAGE = "swarmctl-test/busybox:latest"


@pytest.fixture
def stack_cluster(docker_engine, test_image):
    """Two daemons (a manager and a worker) on the private engine, in a temporary dir; removes the containers
    of this test's stacks only (their com.docker.stack.namespace label): other sessions share the engine."""
    root = tempfile.mkdtemp(prefix="swarmctl-stacks-")
    c = Cluster(root, heartbeat=0.5, docker_host=docker_engine)
    c.stacks = []
    try:
        yield c
    finally:
        c.stop_all()
        client = docker.DockerClient(base_url=docker_engine)
        for stack in c.stacks:
            for container in client.containers.list(all=True, filters={"label": f"com.docker.stack.namespace={stack}"}):
                try:
                    container.remove(force=True)
                except docker.errors.APIError:
                    pass
        client.close()
        unmount_under(root)
        if os.environ.get("SWARMCTL_KEEP_LOGS") is None:
            shutil.rmtree(root, ignore_errors=True)


def unmount_under(root: str) -> None:
    """A killed daemon leaves the tmpfs of its tasks' secret files mounted in its root: this test's only."""
    import subprocess
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[1].startswith(root + "/")]
    for mount in sorted(mounts, reverse=True):
        subprocess.run(["umount", mount], capture_output=True, timeout=10)


def write(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return path


COMPOSE = """\
services:
  db:
    image: swarmctl-test/busybox:latest
    # healthy only after 3 s: the dependent must wait for it
    command: ["sh", "-c", "sleep 3; mkdir -p /www; echo db > /www/index.html; exec httpd -f -p $$PORT -h /www"]
    ports: ["8090:80"]
    healthcheck:
      test: ["CMD-SHELL", "wget -qO- http://127.0.0.1:$$PORT/ >/dev/null"]
      interval: 1s
      timeout: 2s
      retries: 3
      start_period: 10s
    deploy:
      replicas: 1
      labels: {tier: data}
  api:
    image: swarmctl-test/busybox:latest
    entrypoint: ["sh", "-c"]
    command: ["mkdir -p /www; echo api > /www/index.html; exec httpd -f -p $$PORT -h /www"]
    environment:
      GREETING: ${GREETING:-hello}
      FROM_FILE: override
    env_file: [api.env]
    labels: [container.label=yes]
    hostname: api-host
    user: "0:0"
    working_dir: /tmp
    stop_grace_period: 3s
    ports:
      - {target: 80, published: 8091, protocol: tcp, mode: ingress}
    depends_on:
      db: {condition: service_healthy}
    deploy:
      mode: replicated
      replicas: 2
      endpoint_mode: vip
      labels: [tier=api]
      placement:
        constraints: [node.role != nobody]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 1
      resources:
        limits: {cpus: "0.5", memory: 64M}
        reservations: {cpus: "0.01", memory: 8M}
      restart_policy: {condition: on-failure, delay: 1s, max_attempts: 3, window: 10s}
      # stop-first: with one task per node on two nodes a start-first update would have no room
      update_config: {parallelism: 2, delay: 1s, order: stop-first, failure_action: rollback, monitor: 2s,
                      max_failure_ratio: 0.5}
      rollback_config: {parallelism: 1, delay: 0s, order: start-first, failure_action: pause}
  web:
    image: swarmctl-test/busybox:latest
    command: ["sleep", "3600"]
    build: ./web
    container_name: ignored
    depends_on: [api]
    deploy:
      mode: global
"""


def stack(m, *args, timeout: float = 180.0):
    return m.cli("stack", *args, timeout=timeout)


def services_json(m, name: str) -> dict:
    return {s["spec"]["name"]: s for s in check(stack(m, "services", "--format", "json", name)).json()}


def tasks_json(m, name: str) -> list[dict]:
    return check(stack(m, "ps", "--format", "json", name)).json()


def query(ip: str, name: str) -> list[str]:
    answer = dns.query.udp(dns.message.make_query(name, "A"), ip, port=53, timeout=3)
    return sorted(item.address for rrset in answer.answer for item in rrset)


def test_stack_deploy_redeploy_dns_bad_files_prune_and_rm(stack_cluster, docker_engine):
    managers, workers = stack_cluster.form(1, 1)
    m = managers[0]
    name = f"st{os.getpid() % 10000}"
    stack_cluster.stacks.append(name)
    work = tempfile.mkdtemp(dir=stack_cluster.root)
    write(work, "api.env", "FROM_FILE=file\nONLY_FILE=1\n# a comment\n")
    path = write(work, "compose.yml", COMPOSE)

    first = stack(m, "deploy", "-c", path, "--format", "json", name)
    check(first)
    plan = first.json()
    assert plan["changed"] is True
    assert [(a["action"], a["name"]) for a in plan["actions"]] == [
        ("create", f"{name}_db"), ("create", f"{name}_api"), ("create", f"{name}_web")]
    assert "Ignoring unsupported options: build" in first.err
    assert "container_name: Setting the container name is not supported." in first.err
    assert any(w.startswith("Ignoring unsupported options: build") for w in plan["warnings"])

    # every setting in service inspect
    found = services_json(m, name)
    assert sorted(found) == [f"{name}_api", f"{name}_db", f"{name}_web"]
    api = check(m.cli("service", "inspect", f"{name}_api")).json()
    spec, task = api["spec"], api["spec"]["task"]
    assert spec["labels"] == {"tier": "api", "com.docker.stack.namespace": name, "com.docker.stack.image": IMAGE}
    assert spec["mode"] == "replicated" and spec["replicas"] == 2
    assert task["command"] == ["sh", "-c"] and task["args"][0].startswith("mkdir -p /www")
    assert task["env"] == {"GREETING": "hello", "FROM_FILE": "override", "ONLY_FILE": "1"}
    assert task["labels"] == {"container.label": "yes", "com.docker.stack.namespace": name}
    assert (task["hostname"], task["user"], task["working_dir"]) == ("api-host", "0:0", "/tmp")
    assert task["stop_grace_period"] == 3.0 and task["dns_search"] == [name]
    assert task["placement"]["constraints"] == ["node.role != nobody"]
    assert task["placement"]["preferences"] == [{"spread": "node.labels.zone"}]
    assert task["placement"]["max_replicas_per_node"] == 1
    assert task["resources"] == {"limits": {"cpus": 0.5, "memory": 64 * 1024 * 1024},
                                 "reservations": {"cpus": 0.01, "memory": 8 * 1024 * 1024}}
    assert task["restart_policy"] == {"condition": "on-failure", "delay": 1.0, "max_attempts": 3, "window": 10.0}
    update = spec["update_config"]
    assert (update["parallelism"], update["delay"], update["order"], update["failure_action"], update["monitor"],
            update["max_failure_ratio"]) == (2, 1.0, "stop-first", "rollback", 2.0, 0.5)
    rollback = spec["rollback_config"]
    assert (rollback["parallelism"], rollback["order"], rollback["failure_action"]) == (1, "start-first", "pause")
    assert spec["endpoint"]["mode"] == "vip"
    assert [(p["target_port"], p["published_port"], p["protocol"], p["publish_mode"])
            for p in spec["endpoint"]["ports"]] == [(80, 8091, "tcp", "ingress")]
    db = found[f"{name}_db"]
    assert db["spec"]["task"]["healthcheck"] == {"test": ["CMD-SHELL", "wget -qO- http://127.0.0.1:$PORT/ >/dev/null"],
                                                 "interval": 1.0, "timeout": 2.0, "retries": 3, "start_period": 10.0,
                                                 "start_interval": 5.0}
    assert found[f"{name}_web"]["spec"]["mode"] == "global"

    # the dependent was created only after its dependency was healthy (running = healthy)
    def running_since(service: str) -> float | None:
        tasks = [t for t in tasks_json(m, name) if t["service_name"] == service and t["status"]["state"] == "running"]
        return min(t["status"]["timestamp"] for t in tasks) if tasks else None
    wait_for(lambda: running_since(f"{name}_api") and running_since(f"{name}_web"), timeout=60,
             what="api and web running")
    db_running = running_since(f"{name}_db")
    assert db_running is not None and db_running <= api["created_at"]
    assert running_since(f"{name}_api") <= found[f"{name}_web"]["created_at"]

    # the engine got what the task spec says
    engine = docker.DockerClient(base_url=docker_engine)
    try:
        containers = engine.containers.list(filters={"label": f"swarmctl.service.name={name}_api"})
        assert containers
        attrs = containers[0].attrs
        assert attrs["Config"]["User"] == "0:0" and attrs["Config"]["WorkingDir"] == "/tmp"
        assert attrs["Config"]["Labels"]["container.label"] == "yes"
        assert attrs["HostConfig"]["DnsSearch"] == [name]
        # the stack's short names resolve from a task of the stack, as the full names do
        web = engine.containers.list(filters={"label": f"swarmctl.service.name={name}_web"})[0]
        for d in managers + workers:
            wait_for(lambda: query(d.ip, f"api.{name}"), timeout=10, what=f"api.{name} at {d.name}")
            assert query(d.ip, f"api.{name}") == query(d.ip, f"{name}_api")
            assert query(d.ip, f"tasks.db.{name}") == query(d.ip, f"tasks.{name}_db")
        out = web.exec_run(["cat", "/etc/resolv.conf"]).output.decode()
        assert f"search {name}" in out, out
        page = wait_for(lambda: web.exec_run(["wget", "-qO-", "http://api/"]).output.decode().strip() == "api",
                        timeout=15, what="http://api/ from a web task")
        assert page
    finally:
        engine.close()

    # a second deploy changes nothing: same versions, no task restarted
    versions = {n: s["version"] for n, s in services_json(m, name).items()}
    task_ids = sorted(t["id"] for t in tasks_json(m, name))
    again = check(stack(m, "deploy", "-c", path, "--format", "json", name)).json()
    assert again["changed"] is False
    assert {a["action"] for a in again["actions"]} == {"unchanged"}
    dry = check(stack(m, "deploy", "-c", path, "--dry-run", name))
    assert dry.out.split("\n")[0].startswith("unchanged service")
    time.sleep(1.5)
    assert {n: s["version"] for n, s in services_json(m, name).items()} == versions
    assert sorted(t["id"] for t in tasks_json(m, name)) == task_ids

    # bad files are refused with one line, and nothing changes
    before = services_json(m, name)
    bad = {
        "schema": (COMPOSE.replace("replicas: 2", "replicas: [2]"), ["compose.yml", "service api", "deploy.replicas"]),
        "unknown dependency": (COMPOSE.replace("depends_on: [api]", "depends_on: [nosuch]"),
                               ["service web depends on undefined service nosuch"]),
        "cycle": (COMPOSE.replace("  db:\n    image", "  db:\n    depends_on: [web]\n    image"),
                  ["dependency cycle between services", "db", "web", "api"]),
        "unknown key": (COMPOSE.replace("hostname: api-host", "hostnme: api-host"),
                        ["service api", "hostnme"]),
    }
    for what, (text, needles) in bad.items():
        bad_path = write(work, "compose.yml", text)
        result = stack(m, "deploy", "-c", bad_path, name)
        assert result.code != 0, what
        error = [line for line in result.err.splitlines() if line.startswith("Error")]
        assert len(error) == 1 and "Traceback" not in result.err, (what, result.err)
        for needle in needles:
            assert needle in error[0], (what, error[0])
    write(work, "compose.yml", COMPOSE)
    after = services_json(m, name)
    assert {n: s["version"] for n, s in after.items()} == {n: s["version"] for n, s in before.items()}

    # a changed service goes through the updater; --prune removes what the files no longer have
    changed = COMPOSE.replace("GREETING: ${GREETING:-hello}", "GREETING: changed")
    without_web = changed[:changed.index("  web:")]
    pruned_path = write(work, "compose2.yml", without_web)
    result = check(stack(m, "deploy", "-c", pruned_path, "--prune", "--detach=false", "--format", "json", name))
    actions = {(a["action"], a["name"]) for a in result.json()["actions"]}
    assert actions == {("unchanged", f"{name}_db"), ("update", f"{name}_api"), ("remove", f"{name}_web")}
    found = services_json(m, name)
    assert sorted(found) == [f"{name}_api", f"{name}_db"]
    assert found[f"{name}_api"]["spec"]["task"]["env"]["GREETING"] == "changed"
    assert found[f"{name}_api"]["spec_version"] == 2
    assert (found[f"{name}_api"].get("update_status") or {}).get("state") == "completed"

    ls = check(stack(m, "ls", "--format", "json")).json()
    assert {"name": name, "services": 2} in ls
    assert name in check(stack(m, "ls")).out

    # stack rm removes everything
    removed = check(stack(m, "rm", name))
    assert f"Removing service {name}_api" in removed.out and f"Removing service {name}_db" in removed.out
    assert check(stack(m, "services", name)).err.strip() == f"Nothing found in stack: {name}"
    assert check(stack(m, "rm", name)).err.strip() == f"Nothing found in stack: {name}"
    nothing = stack(m, "ps", name)
    assert nothing.code != 0 and f"nothing found in stack: {name}" in nothing.err
    assert not [s for s in check(m.cli("service", "ls", "--format", "json")).json()
                if s["spec"]["labels"].get("com.docker.stack.namespace") == name]


def test_stack_secrets_and_configs_roll_to_new_versions(stack_cluster):
    managers, _workers = stack_cluster.form(1, 0)
    m = managers[0]
    name = f"ss{os.getpid() % 10000}"
    stack_cluster.stacks.append(name)
    work = tempfile.mkdtemp(dir=stack_cluster.root)
    write(work, "pw.txt", "first\n")
    write(work, "app.conf", "setting=1\n")
    path = write(work, "compose.yml", """\
        services:
          app:
            image: swarmctl-test/busybox:latest
            command: ["sh", "-c", "cat /run/secrets/pw /app.conf; sleep 3600"]
            secrets: [pw]
            configs: [{source: app.conf, target: /app.conf}]
        secrets:
          pw: {file: ./pw.txt}
        configs:
          app.conf: {file: ./app.conf}
        """)
    first = check(stack(m, "deploy", "-c", path, "--detach=false", "--format", "json", name)).json()
    assert {(a["action"], a["kind"], a["name"]) for a in first["actions"]} >= {
        ("create", "secret", f"{name}_pw"), ("create", "config", f"{name}_app.conf"), ("create", "service", f"{name}_app")}
    service = check(m.cli("service", "inspect", f"{name}_app")).json()
    assert [(r["secret_name"], r["target"], r["mode"]) for r in service["spec"]["task"]["secrets"]] == [
        (f"{name}_pw", "pw", 0o444)]
    assert [(r["config_name"], r["target"]) for r in service["spec"]["task"]["configs"]] == [
        (f"{name}_app.conf", "/app.conf")]
    wait_for(lambda: "first" in check(m.cli("service", "logs", f"{name}_app")).out, timeout=30,
             what="the secret read inside the task")
    assert "setting=1" in check(m.cli("service", "logs", f"{name}_app")).out
    again = check(stack(m, "deploy", "-c", path, "--format", "json", name)).json()
    assert again["changed"] is False
    write(work, "pw.txt", "second\n")
    rolled = check(stack(m, "deploy", "-c", path, "--detach=false", "--format", "json", name)).json()
    actions = {(a["action"], a["kind"], a["name"]) for a in rolled["actions"]}
    assert ("create", "secret", f"{name}_pw-v2") in actions and ("update", "service", f"{name}_app") in actions
    assert ("remove", "secret", f"{name}_pw") in actions
    service = check(m.cli("service", "inspect", f"{name}_app")).json()
    assert [s["secret_name"] for s in service["spec"]["task"]["secrets"]] == [f"{name}_pw-v2"]
    secrets = json.loads(check(m.cli("secret", "ls", "--format", "json")).out)
    assert sorted(s["spec"]["name"] for s in secrets if s["spec"]["name"].startswith(name)) == [f"{name}_pw-v2"]
    wait_for(lambda: "second" in check(m.cli("service", "logs", f"{name}_app")).out, timeout=30,
             what="the new secret version read inside the new task")
    check(stack(m, "rm", name))
    secrets = json.loads(check(m.cli("secret", "ls", "--format", "json")).out)
    assert not [s for s in secrets if s["spec"]["name"].startswith(name)]
