"""swarmctl.cluster.secret and .config run against a fake daemon that keeps secrets and configs as the
contract of issue 11 describes them (/v1/secrets, /v1/configs, /matches): check mode, the requests sent,
idempotence, rolling versions, and that a secret's data is in no result."""

from __future__ import annotations

import base64
import copy
import json

import pytest

SECRET = "correct horse battery staple"


class Store:
    """Secrets or configs of a fake daemon; ids obj1, obj2, ... get their routes up front."""

    def __init__(self, daemon, kind):
        self.daemon, self.kind, self.path = daemon, kind, "/v1/%ss" % kind
        self.records, self.data, self.count = {}, {}, 0
        self.services = []
        routes = daemon.routes
        routes[("GET", self.path)] = lambda body: (200, [self.view(r) for r in self.records.values()])
        routes[("POST", self.path)] = self.create
        routes[("GET", "/v1/services")] = lambda body: (200, copy.deepcopy(self.services))
        for i in range(1, 20):
            rid = "%s%d" % (kind, i)
            routes[("GET", "%s/%s" % (self.path, rid))] = lambda body, rid=rid: self.get(rid)
            routes[("DELETE", "%s/%s" % (self.path, rid))] = lambda body, rid=rid: self.delete(rid)
            routes[("POST", "%s/%s/matches" % (self.path, rid))] = lambda body, rid=rid: (
                200, {"matches": base64.b64decode(body["data"]) == self.data[rid]})
            for version in range(1, 6):
                routes[("POST", "%s/%s/update?version=%d" % (self.path, rid, version))] = (
                    lambda body, rid=rid, version=version: self.update(rid, version, body))

    def view(self, record):
        out = copy.deepcopy(record)
        if self.kind == "config":
            out["spec"]["data"] = base64.b64encode(self.data[record["id"]]).decode()
        return out

    def create(self, body):
        if any(r["spec"]["name"] == body["name"] for r in self.records.values()):
            return 409, {"message": "%s %s already exists" % (self.kind, body["name"])}
        self.count += 1
        rid = "%s%d" % (self.kind, self.count)
        self.records[rid] = {"id": rid, "version": 1, "created_at": "t%02d" % self.count,
                             "spec": {"name": body["name"], "labels": dict(body.get("labels") or {})}}
        self.data[rid] = base64.b64decode(body["data"])
        return 201, {"id": rid}

    def get(self, rid):
        if rid not in self.records:
            return 404, {"message": "%s not found: %s" % (self.kind, rid)}
        return 200, self.view(self.records[rid])

    def delete(self, rid):
        users = [s["spec"]["name"] for s in self.services
                 if any(ref["%s_id" % self.kind] == rid for ref in s["spec"]["task"].get(self.kind + "s", []))]
        if users:
            return 400, {"message": "%s '%s' is in use by the following service: %s"
                                    % (self.kind, self.records[rid]["spec"]["name"], ", ".join(users))}
        self.records.pop(rid)
        return 200, {}

    def update(self, rid, version, body):
        record = self.records[rid]
        if record["version"] != version:
            return 409, {"message": "update out of sequence"}
        record["spec"]["labels"] = dict(body["labels"])
        record["version"] += 1
        return 200, self.view(record)

    def names(self):
        return sorted(r["spec"]["name"] for r in self.records.values())

    def use(self, service, rid):
        self.services.append({"spec": {"name": service, "task": {self.kind + "s": [
            {"%s_id" % self.kind: rid, "%s_name" % self.kind: self.records[rid]["spec"]["name"]}]}}})


@pytest.fixture
def secrets(fake_daemon):
    return Store(fake_daemon, "secret")


@pytest.fixture
def configs(fake_daemon):
    return Store(fake_daemon, "config")


def test_secret_create_check_mode_idempotence(fake_daemon, secrets, run_module):
    args = {"swarmctl_host": fake_daemon.host, "name": "db", "data": SECRET, "labels": {"app": "web"}}
    predicted = run_module("secret", args, check_mode=True)
    assert predicted["changed"] and predicted["secret_id"] is None and predicted["secret_name"] == "db"
    assert predicted["diff"] == {"before": {}, "after": {"name": "db", "labels": {"app": "web"},
                                                         "data": "VALUE_HIDDEN (changed)"}}
    assert fake_daemon.writes() == [] and secrets.records == {}
    real = run_module("secret", args)
    assert real["changed"] and real["secret_id"] == "secret1" and real["secret_name"] == "db"
    assert secrets.data["secret1"] == SECRET.encode()
    posted = [r for r in fake_daemon.writes() if r[1] == "/v1/secrets"]
    assert posted == [("POST", "/v1/secrets", {"name": "db", "labels": {"app": "web"},
                                               "data": base64.b64encode(SECRET.encode()).decode()})]
    for check_mode in (False, True):
        again = run_module("secret", args, check_mode=check_mode)
        assert not again["changed"] and again["secret_id"] == "secret1" and "diff" not in again
    for result in (predicted, real, again):
        assert SECRET not in json.dumps(result) and base64.b64encode(SECRET.encode()).decode() not in json.dumps(result)


def test_secret_changed_data_and_labels(fake_daemon, secrets, run_module):
    base = {"swarmctl_host": fake_daemon.host, "name": "db"}
    run_module("secret", dict(base, data="one", labels={"a": "1", "b": "2"}))
    # a label subset is no change; a changed label is an update in place with the version read
    assert not run_module("secret", dict(base, data="one", labels={"a": "1"}))["changed"]
    relabel = run_module("secret", dict(base, data="one", labels={"a": "9"}))
    assert relabel["changed"] and relabel["secret_id"] == "secret1"
    assert ("POST", "/v1/secrets/secret1/update?version=1", {"labels": {"a": "9"}}) in fake_daemon.writes()
    # changed data: removed and created again (same name, a new id)
    new = run_module("secret", dict(base, data="two"))
    assert new["changed"] and new["secret_id"] == "secret2" and secrets.names() == ["db"]
    assert secrets.records["secret2"]["spec"]["labels"] == {"a": "9"}  # labels left out: kept
    assert new["diff"]["after"]["data"] == "VALUE_HIDDEN (changed)"
    # in use: refused, in check mode too, nothing changed
    secrets.use("web", "secret2")
    refused = run_module("secret", dict(base, data="three"))
    assert refused["failed"] and "in use by the following service: web" in refused["msg"]
    assert "rolling_versions" in refused["msg"]
    # check mode warns instead (an earlier task of the play may take the secret from the service)
    predicted = run_module("secret", dict(base, data="three"), check_mode=True)
    assert predicted["changed"] and "would refuse this" in json.dumps(predicted["warnings"])
    assert secrets.data["secret2"] == b"two"
    forced = run_module("secret", dict(base, data="two", force=True))
    assert forced["failed"] and "in use" in forced["msg"]


def test_secret_rolling_versions(fake_daemon, secrets, run_module):
    # (the data values are long: Ansible masks a no_log value wherever it appears, even inside key_v1)
    base = {"swarmctl_host": fake_daemon.host, "name": "key", "rolling_versions": True, "versions_to_keep": 2}
    first = run_module("secret", dict(base, data="first-value"))
    assert first["secret_name"] == "key_v1" and secrets.records["secret1"]["spec"]["labels"] == {"ansible_version": "1"}
    assert not run_module("secret", dict(base, data="first-value"))["changed"]
    secrets.use("web", "secret1")
    second = run_module("secret", dict(base, data="second-value"))
    assert second["changed"] and second["secret_name"] == "key_v2" and second["removed"] == []
    third = run_module("secret", dict(base, data="third-value"), check_mode=True)
    assert third["changed"] and third["secret_name"] == "key_v3" and third["secret_id"] is None
    assert third["diff"]["before"]["versions"] == ["key_v1", "key_v2"]
    assert third["diff"]["after"]["versions"] == ["key_v1", "key_v2", "key_v3"]  # v1 in use: kept
    assert "key_v1 is kept" in json.dumps(third.get("warnings"))  # v1 in use: a warning, not a failure
    third = run_module("secret", dict(base, data="third-value"))
    assert third["secret_name"] == "key_v3" and secrets.names() == ["key_v1", "key_v2", "key_v3"]
    secrets.services = []
    pruned = run_module("secret", dict(base, data="third-value"))
    assert pruned["changed"] and pruned["removed"] == ["key_v1"] and secrets.names() == ["key_v2", "key_v3"]
    gone = run_module("secret", dict(base, state="absent"))
    assert gone["changed"] and sorted(gone["removed"]) == ["key_v2", "key_v3"] and secrets.names() == []
    assert not run_module("secret", dict(base, state="absent"))["changed"]


def test_secret_parameters(fake_daemon, secrets, run_module, tmp_path):
    base = {"swarmctl_host": fake_daemon.host, "name": "db"}
    assert "any of the following are missing: data, data_src" in run_module("secret", base)["msg"]
    src = tmp_path / "s"
    src.write_bytes(b"\x00binary\xff")
    both = run_module("secret", dict(base, data="some-data", data_src=str(src)))
    assert "mutually exclusive" in both["msg"]
    made = run_module("secret", dict(base, data_src=str(src)))
    assert made["changed"] and secrets.data["secret1"] == b"\x00binary\xff"
    same = run_module("secret", dict(base, data=base64.b64encode(b"\x00binary\xff").decode(), data_is_b64=True))
    assert not same["changed"]
    big = run_module("secret", dict(base, data="x" * (500 * 1024 + 1)), check_mode=True)
    assert big["failed"] and "less than 512000 bytes" in big["msg"]


def test_config_lifecycle_and_template_driver(fake_daemon, configs, run_module):
    base = {"swarmctl_host": fake_daemon.host, "name": "site"}
    refused = run_module("config", dict(base, data="x", template_driver="golang"))
    assert refused["failed"] and "template_driver is not supported" in refused["msg"]
    predicted = run_module("config", dict(base, data="hello\n"), check_mode=True)
    assert predicted["changed"] and predicted["config_name"] == "site" and fake_daemon.writes() == []
    assert predicted["diff"]["after"] == {"name": "site", "labels": {}, "data": "hello\n"}
    made = run_module("config", dict(base, data="hello\n"))
    assert made["config_id"] == "config1"
    assert not run_module("config", dict(base, data="hello\n"))["changed"]
    # no /matches for a config: its view holds the data
    assert not [r for r in fake_daemon.requests if r[1].endswith("/matches")]
    changed = run_module("config", dict(base, data="bye\n"))
    assert changed["changed"] and changed["diff"]["before"]["data"] == "hello\n"
    assert changed["diff"]["after"]["data"] == "bye\n" and configs.names() == ["site"]
    gone = run_module("config", dict(base, state="absent"))
    assert gone["changed"] and gone["removed"] == ["site"] and configs.names() == []
