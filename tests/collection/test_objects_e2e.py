"""End to end: swarmctl.cluster.secret, .config and .stack, and the services role's swarmctl_secrets,
swarmctl_configs and swarmctl_stacks, run by real `ansible` / `ansible-playbook` against a real daemon and the
private Docker engine.

One manager (harness index 71: 127.0.0.81, shifted by SWARMCTL_TEST_IP_OFFSET) forms a one-node swarm. The stack
module runs this checkout's `swarmctl` command (a wrapper around `python -m swarmctl.cli.main`).

For each module: check mode predicts a change and makes none, the real run changes, a second run and a check-mode
rerun change nothing, --diff shows before/after, state absent removes; a secret's data appears nowhere in the
output of ansible-playbook -vvv (neither the plaintext nor its base64).

The tests run in file order and share one module-scoped swarm. Temporary files under /tmp (or
SWARMCTL_TEST_TMP).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.collection.test_modules_e2e import ANSIBLE, Env, failed_with, ok, _remove_containers
from tests.integration.harness import wait_for

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TMP = os.environ.get("SWARMCTL_TEST_TMP", tempfile.gettempdir())
PLAINTEXT = "s3cr3t-Pa55word-e2e-7f3a"  # must never appear in any output
FILE_PLAINTEXT = "file-borne-s3cr3t-91c2\n"
NS = "com.docker.stack.namespace"

CLI_WRAPPER = """#!/bin/sh
PYTHONPATH={repo}${{PYTHONPATH:+:$PYTHONPATH}} exec {python} -m swarmctl.cli.main "$@"
"""


def leaked(text: str, *plain: str) -> list:
    """The plaintexts (or their base64) found in text."""
    found = []
    for p in plain:
        for form in (p, p.strip(), base64.b64encode(p.encode()).decode()):
            if form and form in text:
                found.append(form)
    return found


@pytest.fixture(scope="module")
def env(docker_engine):
    from tests import docker_engine as engine
    assert ANSIBLE
    os.makedirs(TMP, exist_ok=True)
    root = tempfile.mkdtemp(prefix="swarmctl-obj-", dir=TMP)  # short: unix socket paths are limited
    e = Env(root, docker_engine, engine.TEST_IMAGE)
    e.cli = os.path.join(root, "swarmctl")
    with open(e.cli, "w") as f:
        f.write(CLI_WRAPPER.format(repo=REPO, python=sys.executable))
    os.chmod(e.cli, 0o755)
    try:
        e.manager.start()
        init = e.ansible("swarm", {"state": "present", "advertise_addr": e.manager.ip})
        assert ok(init), init
        e.node_ids.add(init["node_id"])
        yield e
    finally:
        e.manager.stop()
        _remove_containers(docker_engine, e.node_ids)
        if os.environ.get("SWARMCTL_KEEP_LOGS") is None:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def has_secrets(env):
    """The daemon answers /v1/secrets (an error here fails the tests, never skips them)."""
    assert isinstance(env.api().get("/v1/secrets"), list)


@pytest.fixture(scope="module")
def has_stacks(env, has_secrets):
    proc = subprocess.run([env.cli, "stack", "deploy", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout, proc.stderr


def names(env, kind: str) -> list:
    return sorted(r["spec"]["name"] for r in env.api().get(f"/v1/{kind}s"))


def matches(env, ref: str, data: bytes) -> bool:
    return env.api().post(f"/v1/secrets/{ref}/matches", {"data": base64.b64encode(data).decode()})["matches"]


def write(env, name: str, text: str) -> str:
    path = os.path.join(env.root, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# ---- secret --------------------------------------------------------------------------------------------
def test_secret_lifecycle(env, has_secrets):
    def observe():
        return [(r["id"], r["spec"]) for r in env.api().get("/v1/secrets")]
    args = {"name": "db_password", "data": PLAINTEXT, "labels": {"app": "shop"}}
    real = env.cycle("secret", args, observe=observe)
    assert real["secret_name"] == "db_password" and real["secret_id"]
    assert real["diff"]["before"] == {}
    assert real["diff"]["after"] == {"name": "db_password", "labels": {"app": "shop"}, "data": "VALUE_HIDDEN (changed)"}
    assert names(env, "secret") == ["db_password"] and matches(env, "db_password", PLAINTEXT.encode())
    first_id = real["secret_id"]

    relabeled = env.cycle("secret", dict(args, labels={"app": "shop", "tier": "db"}), observe=observe)
    assert relabeled["secret_id"] == first_id  # labels change in place
    assert env.api().get("/v1/secrets/db_password")["spec"]["labels"] == {"app": "shop", "tier": "db"}

    changed = env.cycle("secret", dict(args, data=PLAINTEXT + "-2"), observe=observe)
    assert changed["secret_id"] != first_id and changed["removed"] == ["db_password"]
    assert changed["diff"]["after"]["data"] == "VALUE_HIDDEN (changed)"
    assert matches(env, "db_password", (PLAINTEXT + "-2").encode())
    # created again with the labels given (as community.docker does)
    assert env.api().get("/v1/secrets/db_password")["spec"]["labels"] == {"app": "shop"}

    removed = env.cycle("secret", {"name": "db_password", "state": "absent"}, observe=observe)
    assert removed["removed"] == ["db_password"] and removed["diff"]["after"] == {}
    assert names(env, "secret") == []
    for result in (real, relabeled, changed, removed):
        assert not leaked(json.dumps(result), PLAINTEXT, PLAINTEXT + "-2"), result


def test_secret_bad_input(env, has_secrets):
    cases = [
        ({"name": "x"}, "any of the following are missing: data, data_src"),
        ({"name": "bad name", "data": "some-data"}, "invalid name, only 64"),
        ({"name": "big", "data": "x" * (500 * 1024)}, "less than 512000 bytes"),
        ({"name": "b64", "data": "not base64!", "data_is_b64": True}, "not valid base64"),
        ({"name": "src", "data_src": "/nonexistent/file"}, "Error while reading /nonexistent/file"),
    ]
    for check_mode in (True, False):
        results = env.batch([("secret", args) for args, _message in cases], check=check_mode)
        for result, (_args, message) in zip(results, cases):
            assert failed_with(result, message)
    assert names(env, "secret") == []


def test_secret_rolling_versions_and_in_use(env, has_secrets):
    base = {"name": "api_key", "rolling_versions": True, "versions_to_keep": 1}
    first = env.cycle("secret", dict(base, data=PLAINTEXT), observe=lambda: names(env, "secret"))
    assert first["secret_name"] == "api_key_v1"
    assert env.api().get("/v1/secrets/api_key_v1")["spec"]["labels"] == {"ansible_version": "1"}
    # a service uses v1 (by name, as a playbook would with first.secret_name)
    env.api().post("/v1/services", {"name": "uses-key", "mode": "replicated", "replicas": 0,
                                    "task": {"image": env.image, "command": ["sleep", "3600"],
                                             "secrets": [{"secret_name": first["secret_name"]}]}})
    second = env.ansible("secret", dict(base, data=PLAINTEXT + "-v2"), diff=True)
    assert ok(second) and second["changed"] and second["secret_name"] == "api_key_v2", second
    assert "api_key_v1 is kept" in json.dumps(second.get("warnings")), second  # in use: kept, not a failure
    assert names(env, "secret") == ["api_key_v1", "api_key_v2"]
    assert second["diff"]["after"]["versions"] == ["api_key_v1", "api_key_v2"]
    # without rolling versions, changed data of a secret in use is refused (check mode too), nothing changes
    predicted, refused = env.batch([("secret", {"name": "api_key_v1", "data": "other-data"}, None, {"check_mode": True}),
                                    ("secret", {"name": "api_key_v1", "data": "other-data"})])
    assert ok(predicted) and predicted["changed"] and "would refuse this" in json.dumps(predicted["warnings"])
    assert failed_with(refused, "secret 'api_key_v1' is in use by the following service: uses-key")
    assert env.ansible("secret", {"name": "api_key", "state": "absent", "rolling_versions": True})["_rc"] != 0
    env.api().delete("/v1/services/uses-key")
    pruned = env.ansible("secret", dict(base, data=PLAINTEXT + "-v2"))
    assert ok(pruned) and pruned["changed"] and pruned["removed"] == ["api_key_v1"], pruned
    assert names(env, "secret") == ["api_key_v2"]
    gone = env.cycle("secret", {"name": "api_key", "state": "absent", "rolling_versions": True},
                     observe=lambda: names(env, "secret"))
    assert gone["removed"] == ["api_key_v2"] and names(env, "secret") == []


SECRET_PLAY = """
- name: Secrets at -vvv
  hosts: localhost
  gather_facts: false
  vars:
    db_password: {plaintext}
  tasks:
    - name: From a variable
      swarmctl.cluster.secret:
        swarmctl_host: {host}
        name: vvv_inline
        data: "{{{{ db_password }}}}"
    - name: From a variable, Base64 encoded
      swarmctl.cluster.secret:
        swarmctl_host: {host}
        name: vvv_b64
        data: "{{{{ db_password | b64encode }}}}"
        data_is_b64: true
        rolling_versions: true
    - name: From a file on the managed host
      swarmctl.cluster.secret:
        swarmctl_host: {host}
        name: vvv_file
        data_src: {src}
"""


def test_secret_data_never_in_verbose_output(env, has_secrets):
    src = write(env, "secret.txt", FILE_PLAINTEXT)
    play = SECRET_PLAY.format(plaintext=json.dumps(PLAINTEXT), host=env.host(env.manager), src=src)
    extra = ["-e", f"ansible_python_interpreter={sys.executable}"]
    for run, flags in enumerate((["--check", "--diff", "-vvv"], ["--diff", "-vvv"], ["--diff", "-vvv"])):
        proc = env.playbook(play, *flags, *extra)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        assert not leaked(out, PLAINTEXT, FILE_PLAINTEXT), leaked(out, PLAINTEXT, FILE_PLAINTEXT)
        assert "TASK [From a file on the managed host]" in out and "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in out
        if run < 2:  # check mode and the real run: changed, with the diff printed
            assert "changed=3" in out and out.count("VALUE_HIDDEN (changed)") >= 3, out[-3000:]
        else:
            assert "changed=0" in out, out[-3000:]
    assert names(env, "secret") == ["vvv_b64_v1", "vvv_file", "vvv_inline"]
    assert matches(env, "vvv_file", FILE_PLAINTEXT.encode()) and matches(env, "vvv_b64_v1", PLAINTEXT.encode())
    for name in ("vvv_inline", "vvv_file"):
        env.api().delete(f"/v1/secrets/{name}")
    env.api().delete("/v1/secrets/vvv_b64_v1")


# ---- config --------------------------------------------------------------------------------------------
def test_config_lifecycle(env, has_secrets):
    def observe():
        return [(r["id"], r["spec"]) for r in env.api().get("/v1/configs")]
    src = write(env, "nginx.conf", "server { listen 80; }\n")
    real = env.cycle("config", {"name": "nginx_conf", "data_src": src}, observe=observe)
    assert real["config_name"] == "nginx_conf"
    assert real["diff"]["after"] == {"name": "nginx_conf", "labels": {}, "data": "server { listen 80; }\n"}
    view = env.api().get("/v1/configs/nginx_conf")
    assert base64.b64decode(view["spec"]["data"]) == b"server { listen 80; }\n"

    changed = env.cycle("config", {"name": "nginx_conf", "data": "server { listen 8080; }\n", "labels": {"v": 2}},
                        observe=observe)
    assert changed["diff"]["before"]["data"] == "server { listen 80; }\n"
    assert changed["diff"]["after"]["data"] == "server { listen 8080; }\n"
    assert env.api().get("/v1/configs/nginx_conf")["spec"]["labels"] == {"v": "2"}

    rolling = {"name": "site", "data": "one\n", "rolling_versions": True}
    assert env.cycle("config", rolling, observe=observe)["config_name"] == "site_v1"
    rolled = env.cycle("config", dict(rolling, data="two\n"), observe=observe)
    assert rolled["config_name"] == "site_v2" and names(env, "config") == ["nginx_conf", "site_v1", "site_v2"]

    refused = env.ansible("config", {"name": "t", "data": "x-data", "template_driver": "golang"})
    assert failed_with(refused, "template_driver is not supported")
    for args in ({"name": "nginx_conf", "state": "absent"},
                 {"name": "site", "state": "absent", "rolling_versions": True}):
        gone = env.cycle("config", args, observe=observe)
        assert gone["diff"]["after"] == {}
    assert names(env, "config") == []


# ---- service with secrets and configs ------------------------------------------------------------------
def test_service_uses_secret_and_config(env, has_secrets):
    """The secret module's secret_name into the service module's secrets (docker_swarm_service's options); a new
    rolling version is a rolling update of the service; the file is in the container with its mode."""
    made = env.batch([("secret", {"name": "svc_key", "data": PLAINTEXT, "rolling_versions": True}),
                      ("config", {"name": "svc_conf", "data": "conf one\n"})])
    assert all(ok(r) for r in made), made
    base = {"name": "files", "image": env.image, "command": ["sleep", "3600"], "stop_grace_period": "1s",
            "placement": {"constraints": [f"node.hostname=={env.manager.name}"]},
            "configs": [{"config_name": "svc_conf", "filename": "/etc/app.conf"}]}
    real = env.cycle("service", dict(base, secrets=[{"secret_name": made[0]["secret_name"], "filename": "key",
                                                     "mode": 0o400}]),
                     observe=lambda: [s["spec"] for s in env.api().get("/v1/services")])
    refs = real["swarm_service"]["spec"]["task"]["secrets"]
    assert refs == [{"secret_id": made[0]["secret_id"], "secret_name": "svc_key_v1", "target": "key", "uid": "0",
                     "gid": "0", "mode": 0o400}]
    wait_for(lambda: env.api().get("/v1/services/files")["replicas_status"]["running"] == 1, timeout=60,
             what="the service running with its files")
    import docker
    client = docker.DockerClient(base_url=os.environ.get("DOCKER_HOST", "unix:///tmp/swarmctl-dockerd/docker.sock"))
    try:
        def container():
            for c in client.containers.list(filters={"label": f"swarmctl.node.id={next(iter(env.node_ids))}"}):
                if "files" in c.name:
                    return c
            return None
        wait_for(lambda: container() is not None, timeout=30, what="the container")
        out = container().exec_run(["sh", "-c", "cat /run/secrets/key; stat -c %a /run/secrets/key; cat /etc/app.conf"])
        assert out.output.decode() == PLAINTEXT + "400\nconf one\n", out.output
    finally:
        client.close()
    second = env.ansible("secret", {"name": "svc_key", "data": PLAINTEXT + "-next", "rolling_versions": True})
    assert ok(second) and second["secret_name"] == "svc_key_v2", second
    rolled = env.ansible("service", dict(base, secrets=[{"secret_name": second["secret_name"], "filename": "key",
                                                         "mode": 0o400}]), diff=True)
    assert ok(rolled) and rolled["changes"] == ["secrets"] and rolled["update_status"]["state"] == "completed", rolled
    assert not leaked(json.dumps([made, real, second, rolled]), PLAINTEXT, PLAINTEXT + "-next")
    assert ok(env.ansible("service", {"name": "files", "state": "absent"}))
    wait_for(lambda: env.api().get("/v1/services") == [], what="the service removed")
    cleanup = env.batch([("secret", {"name": "svc_key", "state": "absent", "rolling_versions": True}),
                         ("config", {"name": "svc_conf", "state": "absent"})])
    assert all(ok(r) and r["changed"] for r in cleanup), cleanup
    assert names(env, "secret") == [] and names(env, "config") == []


# ---- stack ---------------------------------------------------------------------------------------------
COMPOSE = """
services:
  web:
    image: {image}
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    secrets:
      - db_password
    configs:
      - source: site
        target: /etc/site.conf
    deploy:
      replicas: {replicas}
{worker}secrets:
  db_password:
    file: {secret}
configs:
  site:
    file: {config}
"""


WORKER = """  worker:
    image: {image}
    command: ["sleep", "3600"]
    stop_grace_period: 1s
"""


def stack_names(state: dict, kind: str) -> list:
    return [name for name, _spec in state[kind]]


def stack_state(env, name: str) -> dict:
    out = {}
    for kind in ("service", "secret", "config"):
        out[kind] = sorted((r["spec"]["name"], json.dumps(r["spec"], sort_keys=True)) for r in
                           env.api().get(f"/v1/{kind}s") if (r["spec"].get("labels") or {}).get(NS) == name)
    return out


def test_stack_lifecycle(env, has_stacks):
    secret = write(env, "stack-secret.txt", FILE_PLAINTEXT)
    config = write(env, "site.conf", "site one\n")
    compose = write(env, "compose.yml", COMPOSE.format(image=env.image, replicas=1, secret=secret, config=config,
                                                       worker=WORKER.format(image=env.image)))
    args = {"name": "shop", "compose": [compose], "swarmctl_cli": env.cli}
    real = env.cycle("stack", args, observe=lambda: stack_state(env, "shop"))
    state = stack_state(env, "shop")
    assert stack_names(state, "service") == ["shop_web", "shop_worker"]
    assert stack_names(state, "secret") == ["shop_db_password"] and stack_names(state, "config") == ["shop_site"]
    assert sorted(real["stack_spec_diff"]) == ["shop_db_password", "shop_site", "shop_web", "shop_worker"]
    assert real["diff"]["before"] == {} and sorted(real["diff"]["after"]["services"]) == ["shop_web", "shop_worker"]
    assert {a["action"] for a in real["actions"]} == {"create"}
    assert not leaked(json.dumps(real), FILE_PLAINTEXT)
    wait_for(lambda: env.api().get("/v1/services/shop_web")["replicas_status"]["running"] == 1, timeout=60,
             what="shop_web running")

    # a changed secret file: a new version of the secret, which web rolls to; its data in no output
    write(env, "stack-secret.txt", FILE_PLAINTEXT + "v2")
    rolled = env.cycle("stack", args, observe=lambda: stack_state(env, "shop"))
    secret_actions = [(a["action"], a["name"]) for a in rolled["actions"] if a["kind"] == "secret"]
    assert ("create", "shop_db_password-v2") in secret_actions, rolled["actions"]
    assert ("update", "shop_web") in [(a["action"], a["name"]) for a in rolled["actions"]]
    assert not leaked(json.dumps(rolled), FILE_PLAINTEXT, FILE_PLAINTEXT + "v2")

    # an inline override (a dict, written to a temp file) scales web; prune removes the worker
    override = {"services": {"web": {"deploy": {"replicas": 2}}}}
    inline = dict(args, compose=[compose, override])
    updated = env.cycle("stack", inline, observe=lambda: stack_state(env, "shop"))
    assert [(a["action"], a["name"]) for a in updated["actions"] if a["action"] != "unchanged"] == [
        ("update", "shop_web")]
    assert env.api().get("/v1/services/shop_web")["spec"]["replicas"] == 2
    only_web = write(env, "web-only.yml", COMPOSE.format(image=env.image, replicas=2, secret=secret, config=config,
                                                         worker=""))
    pruned = env.cycle("stack", dict(args, compose=[only_web], prune=True), observe=lambda: stack_state(env, "shop"))
    assert ("remove", "shop_worker") in [(a["action"], a["name"]) for a in pruned["actions"]]
    assert stack_names(stack_state(env, "shop"), "service") == ["shop_web"]

    bad = write(env, "bad.yml", "services:\n  web:\n    image: 3\n    replicas: [\n")
    for check_mode in (True, False):
        failed = env.batch([("stack", dict(args, compose=[bad]))], check=check_mode)[0]
        assert failed_with(failed, "swarmctl stack deploy failed")

    removed = env.cycle("stack", {"name": "shop", "state": "absent", "absent_retries": 60,
                                  "swarmctl_cli": env.cli}, observe=lambda: stack_state(env, "shop"))
    assert removed["diff"]["before"]["services"] == ["shop_web"] and removed["diff"]["after"] == {}
    assert stack_state(env, "shop") == {"service": [], "secret": [], "config": []}


# ---- the services role -----------------------------------------------------------------------------------
ROLE_PLAY = """
- name: Secrets, configs and a stack from variables
  hosts: localhost
  gather_facts: false
  vars:
    swarmctl_socket: {socket}
    swarmctl_cli: {cli}
    vault_db_password: {plaintext}
    swarmctl_services_wait_timeout: 60
    swarmctl_secrets:
      - name: role_db_password
        data: "{{{{ vault_db_password }}}}"
      - name: role_file_secret
        file: {secret}
        rolling_versions: true
    swarmctl_configs:
      - name: role_site
        data: "site from the role"
    swarmctl_stacks:
      - name: rolestack
        compose:
          - services:
              app:
                image: {image}
                command: ["sleep", "3600"]
                stop_grace_period: 1s
                secrets: [pw]
            secrets:
              pw:
                external: true
                name: role_db_password
  roles:
    - role: swarmctl.cluster.services
"""

ROLE_TEARDOWN = """
- name: Remove them again
  hosts: localhost
  gather_facts: false
  vars:
    swarmctl_socket: {socket}
    swarmctl_cli: {cli}
    swarmctl_secrets:
      - {{name: role_db_password, state: absent}}
      - {{name: role_file_secret, state: absent, rolling_versions: true}}
    swarmctl_configs:
      - {{name: role_site, state: absent}}
    swarmctl_stacks:
      - {{name: rolestack, state: absent, absent_retries: 60}}
  roles:
    - role: swarmctl.cluster.services
"""


def test_services_role_deploys_secrets_configs_and_stacks(env, has_stacks):
    secret = write(env, "role-secret.txt", FILE_PLAINTEXT)
    play = ROLE_PLAY.format(socket=env.manager.socket, cli=env.cli, plaintext=json.dumps(PLAINTEXT), secret=secret,
                            image=env.image)
    extra = ["-e", f"ansible_python_interpreter={sys.executable}"]
    # (no check mode first: the stack refers to a secret that the same play creates, which check mode does not)
    first = env.playbook(play, "--diff", "-vvv", *extra)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out
    assert not leaked(out, PLAINTEXT, FILE_PLAINTEXT), leaked(out, PLAINTEXT, FILE_PLAINTEXT)
    assert names(env, "secret") == ["role_db_password", "role_file_secret_v1"]
    assert names(env, "config") == ["role_site"]
    assert matches(env, "role_file_secret_v1", FILE_PLAINTEXT.encode())
    assert [s["spec"]["name"] for s in env.api().get("/v1/services")] == ["rolestack_app"]
    for flags in ([], ["--check"]):
        again = env.playbook(play, *flags, *extra)
        assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout
    teardown = ROLE_TEARDOWN.format(socket=env.manager.socket, cli=env.cli)
    checked = env.playbook(teardown, "--check", "--diff", *extra)
    assert checked.returncode == 0 and "changed=3" in checked.stdout, checked.stdout + checked.stderr
    assert names(env, "secret") == ["role_db_password", "role_file_secret_v1"] and names(env, "config") == ["role_site"]
    down = env.playbook(teardown, *extra)
    assert down.returncode == 0, down.stdout + down.stderr
    assert names(env, "secret") == [] and names(env, "config") == [] and env.api().get("/v1/services") == []
