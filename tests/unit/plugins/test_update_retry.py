"""The retry rule of updates after "update out of sequence": the CLI and the Ansible modules (which may import
only the standard library, so they repeat it) behave alike, and the commands follow it end to end against a stub
daemon (tests/unit/test_cli_service.py's)."""

from __future__ import annotations

import copy
import inspect

import pytest

from swarmctl.cli import client as cli
from swarmctl.cli.main import build_parser, main
from swarmctl.cli import node_cmds, service_cmds
# stub is the stub daemon fixture
from tests.unit.test_cli_service import _service, stub  # noqa: F401  pylint: disable=unused-import

mu = pytest.importorskip("ansible_collections.swarmctl.cluster.plugins.module_utils.swarmctl_client")

RECORDS = [
    {"spec": {"replicas": 1, "labels": {"a": "1"}, "task": {"env": {"A": "1"}, "image": "x"}}, "version": 3},
    {"spec": {"replicas": 2, "labels": {"a": "1"}, "task": {"env": {"A": "1", "B": "2"}, "image": "x"}}, "version": 4},
    {"spec": {"replicas": 1, "labels": {}, "task": {"env": {"A": "9"}, "image": "y"}}, "version": 5},
    {"spec": {"replicas": 1}, "version": 6},
    {},
]
PATHS = [[], [("spec", "replicas")], [("spec", "labels", "a")], [("spec", "task", "env", "A")],
         [("spec", "task", "env", "B")], [("spec", "task", "image"), ("spec", "replicas")], [("spec", "labels")],
         [("spec", "task", "placement", "constraints")], [("nope",)]]


def test_the_modules_repeat_the_cli_rule():
    assert mu.MAX_UPDATE_RETRIES == cli.MAX_UPDATE_RETRIES == 3
    assert mu.OUT_OF_SEQUENCE == cli.OUT_OF_SEQUENCE == "update out of sequence"
    for first in RECORDS:
        for fresh in RECORDS:
            for paths in PATHS:
                assert mu.still_meaningful(first, fresh, paths) == cli.still_meaningful(first, fresh, paths)
    for exc_cli, exc_mu in [(cli.DaemonError("update out of sequence", 409), mu.SwarmctlError("update out of sequence", 409)),
                            (cli.DaemonError("service web already exists", 409), mu.SwarmctlError("service web already exists", 409)),
                            (cli.DaemonError("update out of sequence", 400), mu.SwarmctlError("update out of sequence", 400))]:
        assert cli.is_out_of_sequence(exc_cli) == mu.is_out_of_sequence(exc_mu)
    # the loops are the same code apart from the error class

    def strip(func):
        return inspect.getsource(func).replace("DaemonError", "E").replace("SwarmctlError", "E").rsplit('"""', maxsplit=1)[-1]
    assert strip(cli.update_with_retry) == strip(mu.update_with_retry)
    assert mu.with_version("/p", {"version": 7}) == cli.with_version("/p", {"version": 7}) == "/p?version=7"


def _simulate(update_with_retry, error, conflicts, fresh_records, paths):
    reads = iter(fresh_records)
    sent = []

    def send(record, body):
        sent.append(record["version"])
        if len(sent) <= conflicts:
            raise error("update out of sequence", 409)
        return "ok"
    try:
        return update_with_retry(lambda: next(reads), lambda record: ({}, paths), send), sent
    except error as exc:
        return str(exc), sent


@pytest.mark.parametrize("conflicts, records, paths, expected", [
    (0, [RECORDS[0]], [("spec", "replicas")], "ok"),
    (1, [RECORDS[0], RECORDS[1]], [("spec", "labels", "a")], "ok"),            # someone else changed other fields
    (1, [RECORDS[0], RECORDS[1]], [("spec", "replicas")], "update out of sequence"),  # ... the same field
    (3, [RECORDS[0], RECORDS[1], RECORDS[1], RECORDS[1]], [("spec", "task", "env", "A")], "ok"),
    (4, [RECORDS[0]] + [RECORDS[1]] * 4, [("spec", "task", "env", "A")], "update out of sequence"),  # 3 retries at most
])
def test_retry_rule_outcomes_agree(conflicts, records, paths, expected):
    a = _simulate(cli.update_with_retry, cli.DaemonError, conflicts, list(records), paths)
    b = _simulate(mu.update_with_retry, mu.SwarmctlError, conflicts, list(records), paths)
    assert a[1] == b[1] and min(len(a[1]), cli.MAX_UPDATE_RETRIES + 1) == len(a[1])
    assert (a[0] if isinstance(a[0], str) else a[0][0]) == expected
    assert (b[0] if isinstance(b[0], str) else b[0][0]) == expected


def test_update_paths_per_flag():
    args = build_parser().parse_args(["service", "update", "--env-add", "K=1", "--env-rm", "J", "--label-add", "l=2",
                                      "--replicas", "3", "--limit-memory", "1M", "--constraint-add", "node.role==worker",
                                      "--force", "web"])
    assert sorted(service_cmds.update_paths(args)) == sorted([
        ("spec", "replicas"), ("spec", "labels", "l"), ("spec", "task", "resources", "limits", "memory"),
        ("spec", "task", "env", "K"), ("spec", "task", "env", "J"), ("spec", "task", "placement", "constraints"),
        ("spec", "task", "force_update")])
    args = build_parser().parse_args(["node", "update", "--availability", "drain", "--label-add", "a=1", "--label-rm", "b", "n"])
    assert node_cmds.update_paths(args) == [("spec", "availability"), ("spec", "labels", "a"), ("spec", "labels", "b")]


def test_cli_update_retries_over_a_concurrent_change_of_another_key(stub, capsys):  # noqa: F811
    svc = _service("web")
    other = copy.deepcopy(svc)
    other["version"] = 8
    other["spec"]["task"]["env"]["Z"] = "9"  # someone else added Z meanwhile
    stub.routes[("GET", "/v1/services/web")] = svc
    stub.routes[("GET", f"/v1/services/{svc['id']}")] = other
    stub.routes[("POST", f"/v1/services/{svc['id']}/update?version=7")] = (409, {"message": "update out of sequence"})
    stub.routes[("POST", f"/v1/services/{svc['id']}/update?version=8")] = {"service": other, "changes": ["task.env"]}
    assert main(["service", "update", "-d", "--env-add", "C=3", "web"]) == 0
    posts = [(p, b) for m, p, b in stub.requests if m == "POST"]
    assert posts[-1] == (f"/v1/services/{svc['id']}/update?version=8",
                         {"task": {"env": {"A": "1", "B": "2", "Z": "9", "C": "3"}}, "force": False})


def test_cli_update_stops_when_the_same_key_changed(stub, capsys):  # noqa: F811
    svc = _service("web")
    other = copy.deepcopy(svc)
    other["version"] = 8
    other["spec"]["task"]["env"]["C"] = "other"
    stub.routes[("GET", "/v1/services/web")] = svc
    stub.routes[("GET", f"/v1/services/{svc['id']}")] = other
    stub.routes[("POST", f"/v1/services/{svc['id']}/update?version=7")] = (409, {"message": "update out of sequence"})
    assert main(["service", "update", "-d", "--env-add", "C=3", "web"]) == 1
    assert capsys.readouterr().err.strip() == "Error response from daemon: update out of sequence"
    assert len([1 for m, _p, _b in stub.requests if m == "POST"]) == 1


def test_node_and_swarm_update_give_up_after_three_retries(stub, capsys):  # noqa: F811
    node = {"id": "n1", "version": 5, "spec": {"availability": "active", "labels": {}}}
    stub.routes[("GET", "/v1/nodes/n1")] = node
    stub.routes[("POST", "/v1/nodes/n1/update?version=5")] = (409, {"message": "update out of sequence"})
    assert main(["node", "update", "--label-add", "a=1", "n1"]) == 1
    assert capsys.readouterr().err.strip() == "Error response from daemon: update out of sequence"
    assert len([1 for m, _p, _b in stub.requests if m == "POST"]) == 1 + cli.MAX_UPDATE_RETRIES
    stub.routes[("GET", "/v1/swarm")] = {"id": "c", "version": 2, "spec": {"default_strategy": "spread"}}
    stub.routes[("POST", "/v1/swarm/update?version=2")] = [(409, {"message": "update out of sequence"}), {"spec": {}}]
    assert main(["swarm", "update", "--default-strategy", "binpack"]) == 0
