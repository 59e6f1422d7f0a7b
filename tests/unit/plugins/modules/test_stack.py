"""swarmctl.cluster.stack: the commands it runs (deploy with -c files, --prune, --dry-run in check mode, rm,
ps), how it reads `stack deploy --format json` (changed, diff, warnings), inline compose definitions written to
files, and state absent, with a stand-in `swarmctl` command that prints what the contract's CLI prints."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from ansible_collections.swarmctl.cluster.plugins.modules import stack

REPORT = {"changed": True, "warnings": ["Ignoring unsupported options: build"], "actions": [
    {"action": "create", "kind": "service", "name": "shop_web", "before": None, "after": {"name": "shop_web"}},
    {"action": "update", "kind": "service", "name": "shop_db", "before": {"replicas": 1}, "after": {"replicas": 2}},
    {"action": "unchanged", "kind": "config", "name": "shop_conf", "before": {"name": "shop_conf"},
     "after": {"name": "shop_conf"}},
    {"action": "remove", "kind": "secret", "name": "shop_old", "before": {"name": "shop_old"}, "after": None},
]}


def test_write_compose_files(tmp_path):
    files = stack.write_compose_files(["/srv/a.yml", {"services": {"web": {"image": "x"}}}], str(tmp_path))
    assert files[0] == "/srv/a.yml" and files[1].startswith(str(tmp_path)) and files[1].endswith(".json")
    with open(files[1]) as f:
        assert json.load(f) == {"services": {"web": {"image": "x"}}}
    with pytest.raises(stack.StackError, match="at least one element"):
        stack.write_compose_files([], str(tmp_path))
    with pytest.raises(stack.StackError, match="must be a file path"):
        stack.write_compose_files([3], str(tmp_path))


def test_deploy_command():
    assert stack.deploy_command("/bin/swarmctl", "unix:///s.sock", "shop", ["a.yml", "b.yml"]) == [
        "/bin/swarmctl", "-H", "unix:///s.sock", "stack", "deploy", "-c", "a.yml", "-c", "b.yml",
        "--format", "json", "shop"]
    cmd = stack.deploy_command("swarmctl", "unix:///s", "shop", ["a.yml"], prune=True, detach=False, dry_run=True)
    assert cmd[-6:] == ["--prune", "--detach=false", "--dry-run", "--format", "json", "shop"]


def test_parse_deploy_and_diff():
    report = stack.parse_deploy(json.dumps(REPORT))
    changes, diff = stack.spec_diff(report["actions"])
    assert sorted(changes) == ["shop_db", "shop_old", "shop_web"]  # unchanged ones left out
    assert changes["shop_web"] == {"kind": "service", "action": "create", "before": None, "after": {"name": "shop_web"}}
    assert diff == {"before": {"services": {"shop_db": {"replicas": 1}}, "secrets": {"shop_old": {"name": "shop_old"}}},
                    "after": {"services": {"shop_web": {"name": "shop_web"}, "shop_db": {"replicas": 2}}}}
    with pytest.raises(stack.StackError, match="printed no report"):
        stack.parse_deploy("Creating service shop_web\n")
    assert stack.parse_deploy('{"changed": false, "actions": []}')["warnings"] == []


def test_remaining_tasks():
    assert stack.remaining_tasks("", "Nothing found in stack: shop\n", "shop") == []
    assert stack.remaining_tasks("[]", "", "shop") == []
    assert stack.remaining_tasks('{"ID": "a"}\n{"ID": "b"}\n', "", "shop") == [{"ID": "a"}, {"ID": "b"}]
    assert stack.remaining_tasks('[{"ID": "a"}]', "", "shop") == [{"ID": "a"}]


FAKE_CLI = r'''#!{python}
import json, os, sys
log = os.environ["FAKE_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
args = sys.argv[1:]
if args[2:4] == ["stack", "deploy"]:
    for i, a in enumerate(args):
        if a == "-c" and args[i + 1].endswith(".json"):
            with open(args[i + 1]) as f:
                json.load(f)
    report = json.load(open(os.environ["FAKE_REPORT"]))
    if "--dry-run" not in args:
        json.dump(dict(report, changed=False), open(os.environ["FAKE_REPORT"], "w"))
    print(json.dumps(report))
elif args[2:4] == ["stack", "rm"]:
    print("Removing service shop_web")
elif args[2:4] == ["stack", "ps"]:
    n = int(os.environ.get("FAKE_PS_LEFT", "0"))
    state = os.environ["FAKE_LOG"] + ".ps"
    seen = int(open(state).read()) if os.path.exists(state) else 0
    open(state, "w").write(str(seen + 1))
    if seen < n:
        print(json.dumps([{{"ID": "t1"}}]))
    else:
        print("Nothing found in stack: " + args[-1], file=sys.stderr)
        sys.exit(1)
else:
    sys.exit("unexpected " + " ".join(args))
'''


@pytest.fixture
def fake_cli(tmp_path, monkeypatch):
    path = tmp_path / "swarmctl"
    path.write_text(FAKE_CLI.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    report = tmp_path / "report.json"
    report.write_text(json.dumps(REPORT))
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_REPORT", str(report))

    def calls():
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]
    return str(path), calls


def test_module_check_mode_then_deploy_then_no_change(fake_daemon, fake_cli, run_module):
    cli, calls = fake_cli
    args = {"swarmctl_host": fake_daemon.host, "swarmctl_cli": cli, "name": "shop", "prune": True,
            "with_registry_auth": True, "resolve_image": "never",
            "compose": ["/srv/shop.yml", {"services": {"web": {"deploy": {"replicas": 3}}}}]}
    predicted = run_module("stack", args, check_mode=True)
    assert predicted["changed"] and "--dry-run" in calls()[-1] and "--prune" in calls()[-1]
    assert predicted["diff"]["after"]["services"]["shop_web"] == {"name": "shop_web"}
    assert [a["name"] for a in predicted["actions"]] == ["shop_web", "shop_db", "shop_conf", "shop_old"]
    assert predicted["warnings_from_deploy"] == ["Ignoring unsupported options: build"]
    assert "--with-registry-auth" not in calls()[-1] and "--resolve-image" not in calls()[-1]
    real = run_module("stack", args)
    assert real["changed"] and "--dry-run" not in calls()[-1] and sorted(real["stack_spec_diff"]) == [
        "shop_db", "shop_old", "shop_web"]
    assert calls()[-1][:5] == ["-H", fake_daemon.host, "stack", "deploy", "-c"]
    again = run_module("stack", args)
    assert not again["changed"] and "diff" not in again and "stack_spec_diff" not in again
    assert fake_daemon.writes() == []


def test_module_absent(fake_daemon, fake_cli, run_module, monkeypatch):
    cli, calls = fake_cli
    ns = {"com.docker.stack.namespace": "shop"}
    fake_daemon.routes[("GET", "/v1/services")] = (200, [{"spec": {"name": "shop_web", "labels": ns}},
                                                         {"spec": {"name": "other", "labels": {}}}])
    fake_daemon.routes[("GET", "/v1/secrets")] = (200, [{"spec": {"name": "shop_pw", "labels": ns}}])
    fake_daemon.routes[("GET", "/v1/configs")] = (200, [])
    args = {"swarmctl_host": fake_daemon.host, "swarmctl_cli": cli, "name": "shop", "state": "absent",
            "absent_retries": 5, "absent_retries_interval": 0}
    predicted = run_module("stack", args, check_mode=True)
    assert predicted["changed"] and calls() == []
    assert predicted["diff"] == {"before": {"services": ["shop_web"], "secrets": ["shop_pw"]}, "after": {}}
    monkeypatch.setenv("FAKE_PS_LEFT", "2")
    real = run_module("stack", args)
    assert real["changed"] and [c[2:4] for c in calls()] == [["stack", "rm"]] + [["stack", "ps"]] * 3
    fake_daemon.routes[("GET", "/v1/services")] = (200, [])
    fake_daemon.routes[("GET", "/v1/secrets")] = (200, [])
    assert not run_module("stack", args)["changed"] and len(calls()) == 4
    os.remove(os.environ["FAKE_LOG"] + ".ps")


def test_module_absent_fails_when_tasks_stay(fake_daemon, fake_cli, run_module, monkeypatch):
    cli, _calls = fake_cli
    fake_daemon.routes[("GET", "/v1/services")] = (200, [{"spec": {"name": "shop_web", "labels": {
        "com.docker.stack.namespace": "shop"}}}])
    fake_daemon.routes[("GET", "/v1/secrets")] = (404, {"message": "not found"})  # a daemon without secrets
    fake_daemon.routes[("GET", "/v1/configs")] = (404, {"message": "not found"})
    monkeypatch.setenv("FAKE_PS_LEFT", "100")
    result = run_module("stack", {"swarmctl_host": fake_daemon.host, "swarmctl_cli": cli, "name": "shop",
                                  "state": "absent", "absent_retries": 2, "absent_retries_interval": 0})
    assert result["failed"] and "still has tasks after 2 checks" in result["msg"]


def test_module_errors(fake_daemon, fake_cli, run_module, tmp_path):
    cli, _calls = fake_cli
    base = {"swarmctl_host": fake_daemon.host, "swarmctl_cli": cli, "name": "shop"}
    assert "at least one element" in run_module("stack", base)["msg"]
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\necho 'Error: services.web.image: required' >&2\nexit 1\n")
    broken.chmod(0o755)
    failed = run_module("stack", dict(base, swarmctl_cli=str(broken), compose=["/x.yml"]))
    assert failed["failed"] and failed["msg"] == "swarmctl stack deploy failed: Error: services.web.image: required"
