"""swarmctl/stack: compose loading (interpolation, schema errors, merge, warnings), the translation of every
honoured key into a service create body, depends_on ordering and cycles, and the deploy plan against a given
swarm state (no daemon: the plan is a pure function of the files and the state)."""

from __future__ import annotations

import base64
import copy
import glob
import os
import shutil
import textwrap

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmctl.manager.services import build_spec
from swarmctl.stack import compose
from swarmctl.stack.compose import StackError, substitute
from swarmctl.stack.plan import State, plan
from swarmctl.stack.translate import comparable, deploy_order, service_body

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "data", "compose-examples")
IMAGE = "swarmctl-test/busybox:latest"


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def load(tmp_path, text: str, env: dict | None = None, name: str = "compose.yml"):
    return compose.load([write(tmp_path, name, text)], env=env or {})


# ---- interpolation ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("template,env,expected", [
    ("${A}", {"A": "x"}, "x"),
    ("$A-$B", {"A": "x", "B": "y"}, "x-y"),
    ("${A:-d}", {}, "d"), ("${A:-d}", {"A": ""}, "d"), ("${A:-d}", {"A": "x"}, "x"),
    ("${A-d}", {}, "d"), ("${A-d}", {"A": ""}, ""), ("${A-d}", {"A": "x"}, "x"),
    ("${A:?no}", {"A": "x"}, "x"), ("${A?no}", {"A": ""}, ""),
    ("$$A and $${A}", {"A": "x"}, "$A and ${A}"),
    ("${A:-x y}", {}, "x y"),
    ("no variables", {}, "no variables"),
])
def test_substitute(template, env, expected):
    assert substitute(template, env) == expected


@pytest.mark.parametrize("template,env,message", [
    ("${A:?it is needed}", {}, "required variable A is missing a value: it is needed"),
    ("${A:?empty}", {"A": ""}, "required variable A is missing a value: empty"),
    ("${A?unset}", {}, "required variable A is missing a value: unset"),
    ("cost: 5$", {}, "invalid template"),
    ("${}", {}, "invalid template"),
])
def test_substitute_refuses(template, env, message):
    with pytest.raises(StackError, match=message):
        substitute(template, env)


def test_interpolation_in_a_file_casts_numbers_and_names_the_key(tmp_path):
    project = load(tmp_path, """\
        services:
          web:
            image: ${IMAGE}
            command: echo $$HOME ${WHO:-nobody} $UNSET
            deploy: {replicas: "${N}"}
            ports: ["${PORT:-8080}:80"]
        """, env={"IMAGE": IMAGE, "N": "3"})
    web = project.services["web"]
    assert web["image"] == IMAGE and web["deploy"]["replicas"] == 3
    assert web["command"] == ["echo", "$HOME", "nobody"]
    assert web["ports"] == [{"target": 80, "published": 8080, "protocol": "tcp", "mode": "ingress"}]
    assert project.warnings() == ['The "UNSET" variable is not set. Defaulting to a blank string.']
    with pytest.raises(StackError) as info:
        load(tmp_path, "services:\n  web:\n    image: ${IMAGE:?set IMAGE}\n")
    assert str(info.value) == (f"{tmp_path}/compose.yml: invalid interpolation format for services.web.image: "
                               "required variable IMAGE is missing a value: set IMAGE. You may need to escape any $ "
                               "with another $.")


# ---- schema errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,needles", [
    ("services:\n  web:\n    image: x\n    deploy: {replicas: [1]}\n", ["service web", "deploy.replicas"]),
    ("services:\n  web:\n    image: x\n    hostnme: h\n", ["service web", "hostnme", "not allowed"]),
    ("services:\n  web:\n    image: x\n    deploy: {placement: {constrains: [a]}}\n",
     ["service web", "deploy.placement.constrains"]),
    ("services:\n  web:\n    image: x\n    healthcheck: {retries: [1]}\n", ["service web", "healthcheck.retries"]),
    ("services:\n  web:\n    image: x\n    ports: [{published: 80}]\n", ["service web", "ports", "target"]),
    ("services:\n  web:\n    image: x\nsecrets:\n  s: {file: [1]}\n", ["secrets.s.file"]),
    ("services:\n  web:\n    image: x\nservices2: {}\n", ["services2", "not allowed"]),
])
def test_schema_errors_name_the_file_the_service_and_the_key(tmp_path, text, needles):
    with pytest.raises(StackError) as info:
        load(tmp_path, text, name="stack.yml")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{tmp_path}/stack.yml: ")
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize("text,needle", [
    ("services: [a, b]\n", "services"),
    ("- a\n", "top-level object must be a mapping"),
    ("services:\n  web: {image: x\n", "invalid YAML at line"),
    ("services:\n  web:\n    image: x\n    image: y\n", "duplicate key 'image'"),
])
def test_bad_yaml_is_one_line(tmp_path, text, needle):
    with pytest.raises(StackError) as info:
        load(tmp_path, text)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_no_services(tmp_path):
    with pytest.raises(StackError, match="cannot read compose file"):
        compose.load([str(tmp_path / "nope.yml")], env={})
    with pytest.raises(StackError, match="no services"):
        load(tmp_path, "services: {}\n")


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    project = load(tmp_path, """\
        x-base: &base {image: a, hostname: base}
        services:
          web: {<<: *base, hostname: web}
        """)
    assert project.services["web"]["hostname"] == "web" and project.services["web"]["image"] == "a"


# ---- warnings and refusals --------------------------------------------------------------------------------
def test_unsupported_and_deprecated_keys_warn_with_dockers_texts(tmp_path, capsys):
    project = load(tmp_path, f"""\
        services:
          web:
            image: {IMAGE}
            build: .
            restart: always
            privileged: true
            container_name: web1
            expose: ["80"]
            networks: [default]
            shm_size: 64m
            deploy: {{resources: {{limits: {{pids: 5}}}}}}
        """)
    assert project.unsupported == ["build", "deploy.resources.limits.pids", "privileged", "restart", "shm_size"]
    assert project.warnings()[0] == ("Ignoring unsupported options: build, deploy.resources.limits.pids, privileged, "
                                     "restart, shm_size")
    project.print_warnings()
    err = capsys.readouterr().err
    assert "Ignoring unsupported options: build, deploy.resources.limits.pids, privileged, restart, shm_size\n" in err
    assert ("Ignoring deprecated options:\n\ncontainer_name: Setting the container name is not supported.\n"
            "expose: Exposing ports is unnecessary") in err


@pytest.mark.parametrize("key", ["extends", "volumes_from", "cpu_shares", "mem_limit", "cpuset"])
def test_forbidden_keys_are_refused(tmp_path, key):
    value = {"extends": "{service: x}", "volumes_from": "[x]", "cpu_shares": "2", "mem_limit": "1g",
             "cpuset": "'0'"}[key]
    with pytest.raises(StackError) as info:
        load(tmp_path, f"services:\n  web:\n    image: x\n    {key}: {value}\n")
    assert f"Compose file contains unsupported options: {key}: " in str(info.value)


def test_include_is_refused(tmp_path):
    with pytest.raises(StackError, match="include"):
        load(tmp_path, "include: [other.yml]\nservices:\n  web: {image: x}\n")


# ---- merging several files --------------------------------------------------------------------------------
def test_files_merge_as_docker_merges_them(tmp_path):
    base = write(tmp_path, "base.yml", f"""\
        services:
          web:
            image: {IMAGE}
            command: [a, b]
            environment: [A=1, B=2]
            labels: {{one: "1"}}
            ports: ["8080:80"]
            secrets: [s1, {{source: s2, target: old}}]
            deploy: {{replicas: 1, placement: {{constraints: [node.role==worker]}}}}
          db: {{image: {IMAGE}}}
        secrets:
          s1: {{external: true}}
          s2: {{external: true}}
        """)
    override = write(tmp_path, "override.yml", f"""\
        services:
          web:
            image: {IMAGE}-new
            command: [c]
            environment: {{B: "3", C: "4"}}
            ports: ["8080:80", "9090:90"]
            secrets: [{{source: s2, target: new}}]
            deploy: {{replicas: 3, placement: {{constraints: [node.labels.a==b]}}}}
          cache: {{image: {IMAGE}}}
        """)
    project = compose.load([base, override], env={})
    web = project.services["web"]
    assert sorted(project.services) == ["cache", "db", "web"]
    assert web["image"] == f"{IMAGE}-new" and web["command"] == ["c"]
    assert web["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert web["labels"] == {"one": "1"}
    assert [(p["published"], p["target"]) for p in web["ports"]] == [(8080, 80), (9090, 90)]
    assert web["secrets"] == [{"source": "s1"}, {"source": "s2", "target": "new"}]
    assert web["deploy"]["replicas"] == 3
    assert web["deploy"]["placement"]["constraints"] == ["node.role==worker", "node.labels.a==b"]
    assert sorted(project.secrets) == ["s1", "s2"]


def test_env_file_then_environment(tmp_path):
    write(tmp_path, "a.env", "# comment\nA=from-file\nB=file\nQUOTED=\"kept\"\n\nFROM_SHELL\n")
    project = load(tmp_path, f"""\
        services:
          web:
            image: {IMAGE}
            env_file: a.env
            environment: {{B: env, EMPTY: "", NONE: null}}
        """, env={"FROM_SHELL": "shell", "EMPTY": "filled"})
    assert project.services["web"]["environment"] == {"A": "from-file", "B": "env", "QUOTED": '"kept"',
                                                      "FROM_SHELL": "shell", "EMPTY": "filled", "NONE": None}
    body = service_body("st", "web", project.services["web"], project)
    assert "NONE" not in body["task"]["env"]
    write(tmp_path, "bad.env", "BAD KEY=1\n")
    with pytest.raises(StackError, match="contains whitespaces"):
        load(tmp_path, f"services:\n  web:\n    image: {IMAGE}\n    env_file: bad.env\n")


# ---- translation of every honoured key ---------------------------------------------------------------------
FULL = f"""\
services:
  web:
    image: {IMAGE}
    entrypoint: /bin/sh -c
    command: ["echo hi"]
    environment: {{A: "1", FLAG: true}}
    labels: [com.example=yes]
    hostname: "{{{{.Task.Name}}}}"
    user: "1000:1000"
    working_dir: /srv
    stop_grace_period: 1m30s
    ports:
      - "8080:80"
      - "5353:53/udp"
      - {{target: 443, published: "443", mode: host}}
      - 9000
    healthcheck:
      test: wget -q localhost
      interval: 5s
      timeout: 2s
      retries: 4
      start_period: 1s
      start_interval: 500ms
    secrets: [db, {{source: api, target: /etc/api.key, uid: "100", gid: "101", mode: 0400}}]
    configs: [nginx, {{source: extra, target: custom.conf, mode: "0440"}}]
    deploy:
      mode: replicated
      replicas: 4
      endpoint_mode: vip
      labels: {{tier: front}}
      placement:
        constraints: [node.role==worker]
        preferences: [{{spread: node.labels.zone}}]
        max_replicas_per_node: 2
      resources:
        limits: {{cpus: "1.5", memory: 512M}}
        reservations: {{cpus: 0.25, memory: 64m}}
      restart_policy: {{condition: on-failure, delay: 2s, max_attempts: 5, window: 1m}}
      update_config: {{parallelism: 2, delay: 10s, failure_action: rollback, monitor: 30s,
                      max_failure_ratio: 0.25, order: start-first}}
      rollback_config: {{parallelism: 0, delay: 1s, failure_action: continue, monitor: 5s, order: stop-first}}
secrets:
  db: {{file: ./db.txt}}
  api: {{external: true, name: shared_api_key}}
configs:
  nginx: {{file: ./nginx.conf}}
  extra: {{content: "x=1"}}
"""


def test_every_honoured_key_translates(tmp_path):
    project = load(tmp_path, FULL)
    body = service_body("shop", "web", project.services["web"], project,
                        secret_names={"db": "shop_db-v2"}, config_names={})
    assert body == {
        "name": "shop_web", "mode": "replicated", "replicas": 4,
        "labels": {"tier": "front", "com.docker.stack.namespace": "shop", "com.docker.stack.image": IMAGE},
        "task": {
            "image": IMAGE, "command": ["/bin/sh", "-c"], "args": ["echo hi"], "env": {"A": "1", "FLAG": "true"},
            "labels": {"com.example": "yes", "com.docker.stack.namespace": "shop"},
            "hostname": "{{.Task.Name}}", "user": "1000:1000", "working_dir": "/srv", "stop_grace_period": 90.0,
            "healthcheck": {"test": ["CMD-SHELL", "wget -q localhost"], "interval": 5.0, "timeout": 2.0,
                            "retries": 4, "start_period": 1.0, "start_interval": 0.5},
            "restart_policy": {"condition": "on-failure", "delay": 2.0, "max_attempts": 5, "window": 60.0},
            "resources": {"limits": {"cpus": 1.5, "memory": 512 * 1024 ** 2},
                          "reservations": {"cpus": 0.25, "memory": 64 * 1024 ** 2}},
            "placement": {"constraints": ["node.role==worker"], "preferences": [{"spread": "node.labels.zone"}],
                          "max_replicas_per_node": 2},
            "dns_search": ["shop"],
            "secrets": [{"secret_name": "shared_api_key", "target": "/etc/api.key", "uid": "100", "gid": "101",
                         "mode": 0o400},
                        {"secret_name": "shop_db-v2", "target": "db", "uid": "0", "gid": "0", "mode": 0o444}],
            "configs": [{"config_name": "shop_extra", "target": "/custom.conf", "uid": "0", "gid": "0", "mode": 0o440},
                        {"config_name": "shop_nginx", "target": "/nginx", "uid": "0", "gid": "0", "mode": 0o444}],
        },
        "endpoint": {"mode": "vip", "ports": [
            {"target_port": 80, "published_port": 8080, "protocol": "tcp", "publish_mode": "ingress"},
            {"target_port": 53, "published_port": 5353, "protocol": "udp", "publish_mode": "ingress"},
            {"target_port": 443, "published_port": 443, "protocol": "tcp", "publish_mode": "host"},
            {"target_port": 9000, "protocol": "tcp", "publish_mode": "ingress"}]},
        "update_config": {"parallelism": 2, "delay": 10.0, "failure_action": "rollback", "monitor": 30.0,
                          "max_failure_ratio": 0.25, "order": "start-first"},
        "rollback_config": {"parallelism": 0, "delay": 1.0, "failure_action": "continue", "monitor": 5.0,
                            "order": "stop-first"},
    }
    spec = build_spec(copy.deepcopy({k: v for k, v in body.items()}))  # the server's checks accept it
    assert spec["task"]["user"] == "1000:1000" and spec["update_config"]["healthy_deadline"] == 300.0


@pytest.mark.parametrize("extra,expected", [
    ("healthcheck: {disable: true}", {"healthcheck": {"test": ["NONE"]}}),
    ("restart: on-failure:3", {"restart_policy": {"condition": "on-failure", "max_attempts": 3}}),
    ("restart: unless-stopped", {"restart_policy": {"condition": "any", "max_attempts": 0}}),
    ("healthcheck: {test: [CMD, ping, x]}", {"healthcheck": {"test": ["CMD", "ping", "x"]}}),
])
def test_translation_variants(tmp_path, extra, expected):
    project = load(tmp_path, f"services:\n  web:\n    image: {IMAGE}\n    {extra}\n")
    task = service_body("st", "web", project.services["web"], project)["task"]
    for key, value in expected.items():
        assert task[key] == value


def test_global_mode_and_dnsrr(tmp_path):
    project = load(tmp_path, f"services:\n  agent:\n    image: {IMAGE}\n    deploy: {{mode: global, "
                             "endpoint_mode: dnsrr}\n")
    body = service_body("st", "agent", project.services["agent"], project)
    assert body["mode"] == "global" and body["endpoint"] == {"mode": "dnsrr", "ports": []}


@pytest.mark.parametrize("text,message", [
    ("services:\n  web: {build: .}\n", "service web: an image is required"),
    (f"services:\n  web: {{image: {IMAGE}, deploy: {{mode: global, replicas: 2}}}}\n",
     "service web: replicas can only be used with replicated mode"),
    (f"services:\n  web: {{image: {IMAGE}, deploy: {{mode: replicated-job}}}}\n", "unsupported mode"),
    (f"services:\n  web: {{image: {IMAGE}, secrets: [nope]}}\n", 'service web: undefined secret "nope"'),
    (f"services:\n  web: {{image: {IMAGE}, healthcheck: {{disable: true, test: [CMD, x]}}}}\n",
     "test and disable can't be set at the same time"),
    (f"services:\n  web: {{image: {IMAGE}, stop_grace_period: soon}}\n", "invalid stop_grace_period"),
    (f"services:\n  web: {{image: {IMAGE}, deploy: {{resources: {{limits: {{memory: lots}}}}}}}}\n",
     "invalid deploy.resources.limits.memory"),
])
def test_translation_refusals(tmp_path, text, message):
    project = load(tmp_path, text)
    with pytest.raises(StackError, match=message):
        plan("st", project, State(services=[], secrets=[], configs=[]))


def test_server_checks_name_the_service(tmp_path):
    project = load(tmp_path, f"services:\n  web:\n    image: {IMAGE}\n    deploy:\n      placement:\n"
                             "        constraints: [nonsense]\n")
    with pytest.raises(StackError, match="^service web: "):
        plan("st", project, State(services=[], secrets=[], configs=[]))


# ---- depends_on ---------------------------------------------------------------------------------------------
def test_depends_on_orders_the_deploy_and_refuses_unknowns_and_cycles(tmp_path):
    project = load(tmp_path, f"""\
        services:
          web: {{image: {IMAGE}, depends_on: {{api: {{condition: service_started}}}}}}
          api: {{image: {IMAGE}, depends_on: {{db: {{condition: service_healthy}}, cache: {{condition: service_started}}}}}}
          db: {{image: {IMAGE}}}
          cache: {{image: {IMAGE}}}
        """)
    result = plan("st", project, State(services=[], secrets=[], configs=[]))
    assert [a.key for a in result.services] == ["cache", "db", "api", "web"]
    api = next(a for a in result.services if a.key == "api")
    assert api.depends == {"st_db": "service_healthy", "st_cache": "service_started"}
    with pytest.raises(StackError, match="service web depends on undefined service nope"):
        plan("st", load(tmp_path, f"services:\n  web: {{image: {IMAGE}, depends_on: [nope]}}\n"),
             State(services=[]))
    cyclic = load(tmp_path, f"""\
        services:
          a: {{image: {IMAGE}, depends_on: [b]}}
          b: {{image: {IMAGE}, depends_on: [c]}}
          c: {{image: {IMAGE}, depends_on: [a]}}
          d: {{image: {IMAGE}}}
        """)
    with pytest.raises(StackError, match=r"^dependency cycle between services: a -> b -> c -> a$"):
        plan("st", cyclic, State(services=[]))
    with pytest.raises(StackError, match="condition service_completed_successfully is not supported"):
        plan("st", load(tmp_path, f"services:\n  a: {{image: {IMAGE}, depends_on: {{b: {{condition: "
                                  f"service_completed_successfully}}}}}}\n  b: {{image: {IMAGE}}}\n"), State(services=[]))


@st.composite
def dags(draw):
    n = draw(st.integers(1, 9))
    names = [f"s{i}" for i in range(n)]
    ranks = draw(st.permutations(names))  # edges only from later to earlier in this order: acyclic
    deps = {name: {} for name in names}
    for i, name in enumerate(ranks):
        for dep in draw(st.sets(st.sampled_from(ranks[:i]), max_size=i)) if i else []:
            deps[name][dep] = "service_started"
    return deps


@settings(max_examples=200, deadline=None)
@given(dags())
def test_deploy_order_puts_every_service_after_its_dependencies(deps):
    order = deploy_order(deps)
    assert sorted(order) == sorted(deps)
    position = {name: i for i, name in enumerate(order)}
    for name, needs in deps.items():
        assert all(position[dep] < position[name] for dep in needs)
    assert deploy_order(deps) == order  # deterministic


@settings(max_examples=200, deadline=None)
@given(dags(), st.data())
def test_a_cycle_is_always_refused_and_named(deps, data):
    names = sorted(deps)
    cycle = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
    for a, b in zip(cycle, cycle[1:] + cycle[:1]):
        deps[a][b] = "service_started"
    with pytest.raises(StackError) as info:
        deploy_order(deps)
    message = str(info.value)
    assert message.startswith("dependency cycle between services: ")
    path = message.split(": ", 1)[1].split(" -> ")
    assert path[0] == path[-1] and all(path[i + 1] in deps[path[i]] for i in range(len(path) - 1))


# ---- the plan -------------------------------------------------------------------------------------------------
def running(body: dict, service_id: str, version: int = 10) -> dict:
    """A service record as the leader keeps it after create: build_spec's spec, published ports allocated, the
    force counter, secret ids filled in."""
    spec = build_spec(copy.deepcopy(body))
    for port in (spec.get("endpoint") or {}).get("ports") or []:
        port["published_port"] = port.get("published_port") or 30000
    for ref in spec["task"].get("secrets") or []:
        ref["secret_id"] = "sid-" + ref["secret_name"]
    spec["task"]["force_update"] = 2
    return {"id": service_id, "version": version, "spec_version": 1, "spec": spec}


def secret_view(name: str, stack: str, key: str, sid: str) -> dict:
    return {"id": sid, "version": 3, "spec": {"name": name, "labels": {"com.docker.stack.namespace": stack,
                                                                       "swarmctl.stack.key": key}}}


SIMPLE = f"""\
services:
  web:
    image: {IMAGE}
    ports: ["80"]
    environment: {{A: "1"}}
    secrets: [pw]
  db:
    image: {IMAGE}
secrets:
  pw: {{file: ./pw.txt}}
configs:
  conf: {{content: "a=1"}}
"""


def test_an_unchanged_stack_plans_no_change(tmp_path):
    (tmp_path / "pw.txt").write_text("s3cret")
    project = load(tmp_path, SIMPLE)
    fresh = plan("st", project, State(services=[], secrets=[], configs=[]))
    assert [(a.action, a.kind, a.name) for a in fresh.actions()] == [
        ("create", "secret", "st_pw"), ("create", "config", "st_conf"),
        ("create", "service", "st_db"), ("create", "service", "st_web")]
    assert fresh.changed
    assert fresh.objects[0].body == {"name": "st_pw", "data": base64.b64encode(b"s3cret").decode(),
                                     "labels": {"com.docker.stack.namespace": "st", "swarmctl.stack.key": "pw"}}
    assert "data" not in fresh.objects[0].public()["after"]  # the secret never reaches the printed plan
    services = [running(a.body, f"id-{a.key}") for a in fresh.services]
    secrets = [secret_view("st_pw", "st", "pw", "sid1")]
    configs = [{"id": "cid1", "version": 1, "spec": {"name": "st_conf", "data": base64.b64encode(b"a=1").decode(),
                                                     "labels": {"com.docker.stack.namespace": "st",
                                                                "swarmctl.stack.key": "conf"}}}]
    asked = []
    state = State(services=services, secrets=secrets, configs=configs,
                  secret_matches=lambda view, data: asked.append((view["id"], data)) or data == b"s3cret")
    again = plan("st", project, state)
    assert {a.action for a in again.actions()} == {"unchanged"} and not again.changed
    assert asked == [("sid1", b"s3cret")]


def test_a_changed_service_updates_and_prune_removes(tmp_path):
    (tmp_path / "pw.txt").write_text("s3cret")
    project = load(tmp_path, SIMPLE)
    first = plan("st", project, State(services=[], secrets=[], configs=[]))
    services = [running(a.body, f"id-{a.key}") for a in first.services]
    old_body = service_body("st", "old", {"image": IMAGE}, project)
    services.append(running(old_body, "id-old"))
    services.append(running(dict(old_body, name="other_x", labels={"com.docker.stack.namespace": "other"}), "id-x"))
    changed = load(tmp_path, SIMPLE.replace('A: "1"', 'A: "2"'))
    state = State(services=services, secrets=[secret_view("st_pw", "st", "pw", "sid1")], configs=[],
                  secret_matches=lambda view, data: True)
    result = plan("st", changed, state, prune=True)
    by_name = {a.name: a for a in result.actions()}
    assert by_name["st_web"].action == "update" and by_name["st_db"].action == "unchanged"
    assert by_name["st_web"].before["task"]["env"] == {"A": "1"} and by_name["st_web"].after["task"]["env"] == {"A": "2"}
    assert by_name["st_old"].action == "remove" and "other_x" not in by_name
    # the published port the leader picked is kept: not a change
    assert by_name["st_web"].after["endpoint"]["ports"][0]["published_port"] == 30000
    without_prune = plan("st", changed, state)
    assert "st_old" not in {a.name for a in without_prune.actions()}


def test_a_changed_secret_file_makes_a_new_version_and_the_old_one_goes(tmp_path):
    (tmp_path / "pw.txt").write_text("new")
    project = load(tmp_path, SIMPLE)
    first = plan("st", load(tmp_path, SIMPLE), State(services=[], secrets=[], configs=[]))
    services = [running(a.body, f"id-{a.key}") for a in first.services]
    secrets = [secret_view("st_pw", "st", "pw", "sid1"), secret_view("st_pw-v2", "st", "pw", "sid2"),
               secret_view("unrelated", "other", "pw", "sid9")]
    state = State(services=services, secrets=secrets, configs=[], secret_matches=lambda view, data: False)
    result = plan("st", project, state)
    actions = [(a.action, a.kind, a.name) for a in result.actions()]
    assert ("create", "secret", "st_pw-v3") in actions
    web = next(a for a in result.services if a.key == "web")
    assert web.action == "update"
    assert [r["secret_name"] for r in web.body["task"]["secrets"]] == ["st_pw-v3"]
    assert [r["target"] for r in web.body["task"]["secrets"]] == ["pw"]  # the same path in the container
    # st_pw (v1) is used by no service after the deploy and st_pw-v2 by none at all: both go; the other stack's stays
    assert [(a.action, a.name) for a in result.cleanup] == [("remove", "st_pw"), ("remove", "st_pw-v2")]


def test_secret_labels_change_in_place_and_external_ones_must_exist(tmp_path):
    (tmp_path / "pw.txt").write_text("same")
    project = load(tmp_path, SIMPLE.replace("pw: {file: ./pw.txt}", "pw: {file: ./pw.txt, labels: {a: b}}"))
    state = State(services=[], secrets=[secret_view("st_pw", "st", "pw", "sid1")], configs=[],
                  secret_matches=lambda view, data: True)
    result = plan("st", project, state)
    assert (result.objects[0].action, result.objects[0].body["labels"]["a"]) == ("update", "b")
    external = load(tmp_path, f"services:\n  web: {{image: {IMAGE}, secrets: [k]}}\nsecrets:\n  k: {{external: true}}\n")
    with pytest.raises(StackError, match="secret not found: k"):
        plan("st", external, State(services=[], secrets=[], configs=[]))
    ok = plan("st", external, State(services=[], secrets=[{"id": "1", "spec": {"name": "k", "labels": {}}}],
                                    configs=[]))
    assert ok.services[0].body["task"]["secrets"][0]["secret_name"] == "k"
    with pytest.raises(StackError, match="no secrets API"):
        plan("st", external, State(services=[], secrets=None, configs=None))


def test_a_changed_config_is_compared_by_its_data(tmp_path):
    project = load(tmp_path, f"services:\n  web: {{image: {IMAGE}, configs: [c]}}\nconfigs:\n  c: {{content: new}}\n")
    view = {"id": "c1", "version": 1, "spec": {"name": "st_c", "data": base64.b64encode(b"old").decode(),
                                               "labels": {"com.docker.stack.namespace": "st", "swarmctl.stack.key": "c"}}}
    result = plan("st", project, State(services=[], secrets=[], configs=[view]))
    assert [(a.action, a.name) for a in result.objects] == [("create", "st_c-v2")]


def test_a_mode_change_is_refused(tmp_path):
    project = load(tmp_path, f"services:\n  web: {{image: {IMAGE}}}\n")
    current = running(service_body("st", "web", project.services["web"], project), "id1")
    globalised = load(tmp_path, f"services:\n  web: {{image: {IMAGE}, deploy: {{mode: global}}}}\n")
    with pytest.raises(StackError, match="mode of a service cannot be changed"):
        plan("st", globalised, State(services=[current]))


def test_comparable_ignores_what_the_leader_fills_in():
    body = {"name": "st_web", "task": {"image": IMAGE}, "endpoint": {"mode": "vip", "ports": [
        {"target_port": 80, "protocol": "tcp", "publish_mode": "ingress"}]}}
    desired = build_spec(copy.deepcopy(body))
    current = running(body, "x")["spec"]
    assert comparable(desired, current) == comparable(current)
    assert comparable(desired) != comparable(current)


# ---- the compose-spec's own examples ----------------------------------------------------------------------------
# the examples Docker's stack deploy refuses too, and why (the others deploy, with warnings for what is ignored)
REFUSED = {
    "05-services-7.yml": "extends", "05-services-8.yml": "extends", "05-services-9.yml": "extends",
    "05-services-10.yml": "extends",
    "05-services-29.yml": "additional property is not allowed",  # pre_start: newer than the vendored schema
    # `volumes: [db-data]`: a target that is not a path (Docker's engine refuses it too)
    "10-fragments-2.yml": "invalid mount target, must be an absolute path",
    "05-services-30.yml": "depends on undefined service", "11-extension-3.yml": "depends on undefined service",
}


def examples() -> list[str]:
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(EXAMPLES, "*.yml")))


def test_the_examples_are_vendored_with_their_license():
    assert len(examples()) >= 60
    assert os.path.exists(os.path.join(EXAMPLES, "LICENSE")) and "Apache License" in open(
        os.path.join(EXAMPLES, "LICENSE")).read()
    assert "Compose Specification Authors" in open(os.path.join(EXAMPLES, "NOTICE")).read()


@pytest.mark.parametrize("name", examples())
def test_every_compose_spec_example_translates_or_gives_the_warnings(tmp_path, name):
    shutil.copy(os.path.join(EXAMPLES, name), tmp_path / name)
    with open(tmp_path / name) as f:
        data = yaml.safe_load(f)
    for kind in ("secrets", "configs"):  # the files the example names exist, the external objects exist
        for obj in (data.get(kind) or {}).values():
            if isinstance(obj, dict) and obj.get("file"):
                target = tmp_path / obj["file"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("data")
    def externals(kind):
        return [{"id": f"id-{k}", "spec": {"name": v.get("name") or k, "labels": {}, "data": ""}}
                for k, v in (data.get(kind) or {}).items() if isinstance(v, dict) and v.get("external")]
    state = State(services=[], secrets=externals("secrets"), configs=externals("configs"))
    builds_only = [s for s, v in (data.get("services") or {}).items() if isinstance(v, dict) and "image" not in v]
    try:
        project = compose.load([str(tmp_path / name)], env={})
        result = plan("ex", project, state)
    except StackError as exc:
        message = str(exc)
        assert "\n" not in message
        if builds_only:  # swarmctl, as Docker's stack deploy, runs images and builds none
            assert "an image is required" in message or name in REFUSED, message
        else:
            assert name in REFUSED and REFUSED[name] in message, message
        return
    assert name not in REFUSED and not builds_only
    assert all(a.action == "create" for a in result.actions())
    honoured = set(compose.HONOURED) | set(compose.SILENT)
    used = {k for service in data["services"].values() for k in (service or {}) if not k.startswith("x-")}
    for key in used - honoured - set(compose.DEPRECATED):
        assert key in project.unsupported, (key, project.unsupported)
    if project.unsupported:
        assert project.warnings()[-1 if not project.deprecated else -2].startswith("Ignoring unsupported options: ")


# ---- odd input is refused in one line, never with a traceback ---------------------------------------------------
_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 70000) | st.sampled_from(
    ["", "x", "80", "8080:80", "1s", "abc", "$$", "${X}", "0.5", "64M", "a=b", "node.role==worker", "-1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["source", "target", "published", "condition", "test", "cpus", "memory", "spread", "mode", "file", "a"]),
        inner, max_size=3), max_leaves=6)
_KEYS = ["image", "command", "entrypoint", "environment", "env_file", "labels", "ports", "healthcheck", "secrets",
         "configs", "stop_grace_period", "hostname", "user", "working_dir", "depends_on", "restart", "build"]
_DEPLOY = ["mode", "replicas", "labels", "placement", "resources", "restart_policy", "update_config",
           "rollback_config", "endpoint_mode"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=5),
       st.dictionaries(st.sampled_from(_DEPLOY), _VALUES, max_size=3))
def test_odd_services_are_refused_in_one_line_or_deploy(service, deploy):
    import tempfile
    doc = {"services": {"web": dict(service, image=service.get("image", IMAGE), deploy=deploy), "db": {"image": IMAGE}},
           "secrets": {"x": {"file": "x.txt"}}}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        with open(os.path.join(tmp, "x.txt"), "w") as f:
            f.write("x")
        path = os.path.join(tmp, "c.yml")
        with open(path, "w") as f:
            yaml.safe_dump(doc, f)
        try:
            project = compose.load([path], env={"X": "1"})
            plan("st", project, State(services=[], secrets=[], configs=[]))
        except StackError as exc:
            assert "\n" not in str(exc) and str(exc)


def test_stack_ls_groups_services_by_their_namespace():
    from swarmctl.cli.stack_cmds import stack_list
    services = [{"spec": {"name": n, "labels": {"com.docker.stack.namespace": s} if s else {}}}
                for n, s in (("b_x", "b"), ("a_x", "a"), ("a_y", "a"), ("plain", None))]
    assert stack_list(services) == [{"name": "a", "services": 2}, {"name": "b", "services": 1}]


@pytest.mark.parametrize("name,ok", [("shop", True), ("my-app.v2", True), ("bad name", False), ("-x", False),
                                     ("", False), ("x" * 41, False)])
def test_stack_names(name, ok):
    from swarmctl.cli.client import CLIError
    from swarmctl.cli.stack_cmds import _stack_name
    if ok:
        assert _stack_name(name) == name
    else:
        with pytest.raises(CLIError):
            _stack_name(name)


def test_a_compose_file_from_stdin(tmp_path, monkeypatch):
    import io
    monkeypatch.chdir(tmp_path)
    project = compose.load(["-"], env={}, stdin=io.StringIO(f"services:\n  web: {{image: {IMAGE}}}\n"))
    assert list(project.services) == ["web"] and project.workdir == str(tmp_path)


def test_prune_removes_the_stack_s_objects_no_longer_in_the_files(tmp_path):
    project = load(tmp_path, f"services:\n  web: {{image: {IMAGE}}}\nsecrets:\n  s: {{file: ./s.txt, driver: x}}\n")
    assert project.unsupported == ["secrets.s.driver"]
    (tmp_path / "s.txt").write_text("x")
    gone = secret_view("st_old", "st", "old", "sid-old")
    used = secret_view("st_used", "st", "used", "sid-used")
    user = running({"name": "other_user", "task": {"image": IMAGE, "secrets": [{"secret_name": "st_used"}]}}, "u")
    state = State(services=[user], secrets=[gone, used, secret_view("st_s", "st", "s", "sid-s")], configs=[],
                  secret_matches=lambda view, data: True)
    assert plan("st", project, state).cleanup == []  # without --prune objects of other keys stay
    cleanup = plan("st", project, state, prune=True).cleanup
    assert [(a.action, a.name) for a in cleanup] == [("remove", "st_old")]  # st_used is still used by a service
