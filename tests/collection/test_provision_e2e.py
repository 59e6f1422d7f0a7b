"""End to end: `swarmctl provision` runs the collection's playbooks over inventory/local (real SSH).

(a) `provision -i inventory/local site` forms the 5-node swarm of inventory/local (127.0.0.11-15) and ends
    with a per-host summary table and exit 0; `provision -i inventory/local teardown` removes it again.
(b) With an inventory that adds a host nobody answers for (127.0.0.19, SSH port 2299), provision exits
    non-zero and names that host (teardown limited to that host and worker2: quick, and harmless).

Needs the private sshd (scripts/sshd.sh) and the private Docker engine (tests/docker_engine.py): both are
started by a module fixture when they do not run, and stopped afterwards only if it started them.
Skipped without ansible-runner unless SWARMCTL_REQUIRE_ANSIBLE is set.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests import docker_engine

if importlib.util.find_spec("ansible_runner") is None:
    if os.environ.get("SWARMCTL_REQUIRE_ANSIBLE"):
        pytest.fail("ansible-runner is required (SWARMCTL_REQUIRE_ANSIBLE is set) but not importable; "
                    "pip install ansible-runner 'ansible-core>=2.19,<2.20'", pytrace=False)
    pytest.skip("ansible-runner is not installed", allow_module_level=True)

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SSHD_SH = os.path.join(REPO, "scripts", "sshd.sh")
INVENTORY = os.path.join(REPO, "inventory", "local")
LOCAL_ROOT = "/tmp/swarmctl-local"
HOSTS = ["manager1", "manager2", "manager3", "worker1", "worker2"]


def _sh(args, timeout=120):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def provision(*args, timeout=900):
    return _sh([sys.executable, "-m", "swarmctl.cli.main", "provision", *args], timeout=timeout)


@pytest.fixture(scope="module")
def local_hosts():
    """sshd on 127.0.0.11-19 and the private Docker engine; afterwards whatever the tests left is torn down."""
    if os.geteuid() != 0 or shutil.which("ansible-playbook") is None:
        if os.environ.get("SWARMCTL_REQUIRE_ANSIBLE"):
            pytest.fail("needs root and ansible-playbook", pytrace=False)
        pytest.skip("needs root and ansible-playbook")
    docker_engine.ensure_engine()
    started_sshd = False
    if _sh(["bash", SSHD_SH, "status"]).returncode != 0:
        res = _sh(["bash", SSHD_SH, "start"], timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        started_sshd = True
    try:
        yield INVENTORY
    finally:
        if any(os.path.exists(os.path.join(LOCAL_ROOT, h)) for h in HOSTS):  # a test failed half way
            provision("-i", INVENTORY, "teardown")
        if os.path.isdir(LOCAL_ROOT) and not os.listdir(LOCAL_ROOT):
            os.rmdir(LOCAL_ROOT)  # the hosts' common parent (teardown removes only each host's home)
        _sh(["bash", SSHD_SH, "close-masters"])  # Ansible's ControlPersist ssh processes end with the test
        if started_sshd:
            _sh(["bash", SSHD_SH, "stop"])
        docker_engine.release_engine()


def _summary(out: str) -> dict[str, list[int]]:
    """HOST OK CHANGED FAILED UNREACHABLE rows of provision's summary table."""
    lines = out.splitlines()
    head = [i for i, line in enumerate(lines) if re.match(r"^HOST\s+OK\s+CHANGED\s+FAILED\s+UNREACHABLE\s*$", line)]
    assert head, f"no summary table in:\n{out}"
    rows = {}
    for line in lines[head[-1] + 1:]:
        parts = line.split()
        if len(parts) == 5 and all(p.isdigit() for p in parts[1:]):
            rows[parts[0]] = [int(p) for p in parts[1:]]
    return rows


def test_site_forms_the_swarm_then_teardown(local_hosts):
    res = provision("-i", local_hosts, "site")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    rows = _summary(res.stdout)
    assert sorted(rows) == sorted(HOSTS), out
    for host, counts in rows.items():
        ok, _changed, failed, unreachable = counts
        assert ok > 0 and failed == 0 and unreachable == 0, f"{host}: {counts}\n{out}"

    cli = os.path.join(LOCAL_ROOT, "manager1", "venv", "bin", "swarmctl")
    ls = _sh([cli, "-H", f"unix://{LOCAL_ROOT}/manager1/swarmctl.sock", "node", "ls"])
    assert ls.returncode == 0, ls.stderr
    assert len([line for line in ls.stdout.splitlines()[1:] if re.search(r"\bReady\b", line)]) == 5, ls.stdout

    res = provision("-i", local_hosts, "teardown")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert sorted(_summary(res.stdout)) == sorted(HOSTS), out
    left = [h for h in HOSTS if os.path.exists(os.path.join(LOCAL_ROOT, h))]
    assert not left, f"teardown left {left}\n{out}"


def test_unreachable_host_is_named(local_hosts, tmp_path):
    inv = tmp_path / "inventory"
    shutil.copytree(local_hosts, inv)
    (inv / "unreachable.yml").write_text(
        "all:\n  children:\n    workers:\n      hosts:\n        ghost:\n"
        "          ansible_host: 127.0.0.19\n          ansible_port: 2299\n")
    res = provision("-i", str(inv), "teardown", "-l", "ghost,worker2", timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    rows = _summary(res.stdout)
    assert rows["ghost"][3] > 0, out            # UNREACHABLE
    assert rows["worker2"][2:] == [0, 0], out   # the good host ran fine
    assert re.search(r"Error: .*ghost", res.stderr), out
