"""module_utils.swarmctl_objects: the planning rules the secret and config modules share (community.docker's
docker_secret / docker_config semantics: label comparison, rolling versions, versions_to_keep)."""

from __future__ import annotations

import base64

import pytest

from ansible_collections.swarmctl.cluster.plugins.module_utils import swarmctl_objects as obj


def rec(rid, name, labels=None, data=None):
    spec = {"name": name, "labels": dict(labels or {})}
    if data is not None:
        spec["data"] = base64.b64encode(data).decode()
    return {"id": rid, "version": 3, "created_at": "2026-01-01T00:00:0%sZ" % rid[-1], "spec": spec}


def params(**kw):
    base = {"name": "db", "state": "present", "data": "pw", "data_is_b64": False, "data_src": None,
            "labels": None, "force": False, "rolling_versions": False, "versions_to_keep": 5}
    base.update(kw)
    return base


def never(record):
    raise AssertionError("data_matches must not be asked")


def test_read_data(tmp_path):
    assert obj.read_data(params(data="héllo")) == "héllo".encode()
    assert obj.read_data(params(data=base64.b64encode(b"\x00\xff").decode(), data_is_b64=True)) == b"\x00\xff"
    assert obj.read_data(params(data="aGVs\nbG8=", data_is_b64=True)) == b"hello"  # whitespace ignored
    with pytest.raises(obj.ObjectParamError, match="not valid base64"):
        obj.read_data(params(data="***", data_is_b64=True))
    src = tmp_path / "f"
    src.write_bytes(b"from file\n")
    assert obj.read_data(params(data=None, data_src=str(src))) == b"from file\n"
    with pytest.raises(obj.ObjectParamError, match="Error while reading"):
        obj.read_data(params(data=None, data_src=str(tmp_path / "missing")))
    assert obj.read_data(params(data=None)) is None


def test_size_limits():
    obj.check_size("secret", b"x" * (500 * 1024 - 1))
    with pytest.raises(obj.ObjectParamError, match="secret data must be larger than 0 and less than 512000 bytes"):
        obj.check_size("secret", b"x" * 500 * 1024)
    obj.check_size("config", b"x" * (1000 * 1024 - 1))
    with pytest.raises(obj.ObjectParamError, match="config data"):
        obj.check_size("config", b"")


def test_names():
    for good in ("a", "db_password", "A.b-c_9"):
        obj.check_name(good)
    for bad in ("", "-a", "a-", "a b", "x" * 65):
        with pytest.raises(obj.ObjectParamError, match=r"invalid name, only 64 \[a-zA-Z0-9-_.\] characters"):
            obj.check_name(bad)
    with pytest.raises(obj.ObjectParamError, match="invalid name"):
        obj.plan("secret", [], params(name="x" * 62, rolling_versions=True), b"pw", never)  # x..x_v1: 65


def test_labels_compare_allows_more_present():
    assert not obj.labels_differ(None, {"a": "1"})
    assert not obj.labels_differ({"a": "1"}, {"a": "1", "b": "2"})
    assert obj.labels_differ({"a": "2"}, {"a": "1"})
    assert obj.labels_differ({"c": ""}, {})
    assert obj.normalize_labels({"n": 1, "e": None}) == {"n": "1", "e": ""}
    with pytest.raises(obj.ObjectParamError, match="invalid label key"):
        obj.normalize_labels({"a b": "x"})


def test_managed_records_and_versions():
    records = [rec("id3", "db_v10", {"ansible_version": "10"}), rec("id1", "db_v2", {"ansible_version": "2"}),
               rec("id2", "db_v3"), rec("id4", "db"), rec("id5", "db_vx"), rec("id6", "dbx_v1")]
    assert [r["spec"]["name"] for r in obj.managed_records(records, "db", True)] == ["db_v2", "db_v3", "db_v10"]
    assert [r["id"] for r in obj.managed_records(records, "db", False)] == ["id4"]
    assert obj.version_of(records[2], "db") == 3  # no label: the name's suffix


def test_plan_create_and_no_change():
    d = obj.plan("secret", [], params(labels={"a": 1}), b"pw", never)
    assert d["action"] == "create" and d["name"] == "db" and d["labels"] == {"a": "1"}
    same = obj.plan("secret", [rec("id1", "db", {"a": "1", "b": "2"})], params(labels={"a": "1"}), b"pw",
                    lambda r: True)
    assert same["action"] == "none" and same["name"] == "db" and same["remove"] == []


def test_plan_changed_data_replaces_unless_in_use():
    records = [rec("id1", "db", {"keep": "me"})]
    d = obj.plan("secret", records, params(), b"new", lambda r: False)
    assert d["action"] == "replace" and d["remove"] == records and d["labels"] == {"keep": "me"}
    assert d["data_changed"]
    services = [{"spec": {"name": "web", "task": {"secrets": [{"secret_id": "id1", "secret_name": "db"}]}}},
                {"spec": {"name": "api", "task": {"secrets": [{"secret_id": "id1"}]}}}]
    with pytest.raises(obj.ObjectParamError,
                       match=r"secret 'db' is in use by the following services: api, web; .*rolling_versions"):
        obj.plan("secret", records, params(), b"new", lambda r: False, services)
    lenient = obj.plan("secret", records, params(), b"new", lambda r: False, services, strict=False)
    assert lenient["action"] == "replace" and "would refuse this" in lenient["warnings"][0]
    forced = obj.plan("secret", records, params(force=True, labels={"x": "y"}), b"pw", lambda r: True)
    assert forced["action"] == "replace" and forced["labels"] == {"x": "y"}


def test_plan_changed_labels_update_in_place():
    records = [rec("id1", "db", {"a": "1", "b": "2"})]
    d = obj.plan("config", records, params(labels={"a": "9"}), b"pw", lambda r: True)
    assert d["action"] == "labels" and d["labels"] == {"a": "9"} and d["target"]["id"] == "id1"


def test_plan_rolling_versions():
    d = obj.plan("secret", [], params(rolling_versions=True), b"pw", never)
    assert d["action"] == "create" and d["name"] == "db_v1" and d["labels"] == {"ansible_version": "1"}
    records = [rec("id%d" % i, "db_v%d" % i, {"ansible_version": str(i)}) for i in (1, 2, 3)]
    same = obj.plan("secret", records, params(rolling_versions=True), b"pw", lambda r: r["id"] == "id3")
    assert same["action"] == "none" and same["name"] == "db_v3"
    rolled = obj.plan("secret", records, params(rolling_versions=True, versions_to_keep=2), b"new",
                      lambda r: False)
    assert rolled["action"] == "roll" and rolled["name"] == "db_v4"
    assert rolled["labels"] == {"ansible_version": "4"}
    assert [r["id"] for r in rolled["remove"]] == ["id1", "id2"]  # 2 kept: v3 and the new v4
    # an old version a service still uses is kept, not a failure
    services = [{"spec": {"name": "web", "task": {"secrets": [{"secret_id": "id2"}]}}}]
    rolled = obj.plan("secret", records, params(rolling_versions=True, versions_to_keep=1), b"new",
                      lambda r: False, services)
    assert [r["id"] for r in rolled["remove"]] == ["id1", "id3"]
    assert [(r["id"], users) for r, users in rolled["keep_in_use"]] == [("id2", ["web"])]
    # lowering versions_to_keep prunes on a rerun without a new version
    pruned = obj.plan("secret", records, params(rolling_versions=True, versions_to_keep=1), b"pw",
                      lambda r: True)
    assert pruned["action"] == "prune" and [r["id"] for r in pruned["remove"]] == ["id1", "id2"]
    keep_all = obj.plan("secret", records, params(rolling_versions=True, versions_to_keep=-1), b"new",
                        lambda r: False)
    assert keep_all["remove"] == []
    relabel = obj.plan("secret", records, params(rolling_versions=True, labels={"a": "1"}), b"pw", lambda r: True)
    assert relabel["action"] == "labels" and relabel["labels"] == {"a": "1", "ansible_version": "3"}


def test_plan_absent():
    records = [rec("id1", "db_v1"), rec("id2", "db_v2"), rec("id3", "db")]
    d = obj.plan("secret", records, params(state="absent", rolling_versions=True), None, never)
    assert d["action"] == "remove" and [r["id"] for r in d["remove"]] == ["id1", "id2"]
    assert obj.plan("secret", [], params(state="absent"), None, never)["action"] == "none"
    services = [{"spec": {"name": "web", "task": {"configs": [{"config_id": "id3"}]}}}]
    with pytest.raises(obj.ObjectParamError, match="config 'db' is in use by the following service: web"):
        obj.plan("config", records, params(state="absent"), None, never, services)
    lenient = obj.plan("config", records, params(state="absent"), None, never, services, strict=False)
    assert lenient["action"] == "remove" and "in use by the following service: web" in lenient["warnings"][0]


def test_diff_never_holds_a_secret():
    records = [rec("id1", "db", {"a": "1"})]
    d = obj.plan("secret", records, params(), b"s3cr3t-value", lambda r: False)
    diff = obj.diff_of("secret", d, records, params(), b"s3cr3t-value")
    assert diff == {"before": {"name": "db", "labels": {"a": "1"}, "data": "VALUE_HIDDEN"},
                    "after": {"name": "db", "labels": {"a": "1"}, "data": "VALUE_HIDDEN (changed)"}}
    assert "s3cr3t" not in repr(diff)


def test_diff_of_a_config_shows_the_data():
    records = [rec("id1", "site_v1", {"ansible_version": "1"}, b"old\n")]
    p = params(name="site", rolling_versions=True, versions_to_keep=1)
    d = obj.plan("config", records, p, b"new\n", lambda r: obj.config_data(r) == b"new\n")
    diff = obj.diff_of("config", d, records, p, b"new\n")
    assert diff["before"] == {"name": "site_v1", "labels": {"ansible_version": "1"}, "data": "old\n",
                              "versions": ["site_v1"]}
    assert diff["after"] == {"name": "site_v2", "labels": {"ansible_version": "2"}, "data": "new\n",
                             "versions": ["site_v2"]}
    assert obj.data_text(b"\xff\x00") == "base64:/wA="
