"""swarmctl.cluster.service: secrets and configs (community.docker.docker_swarm_service's options), checked
against the daemon's own reference rules (swarmctl.manager.secrets.check_refs through services.build_spec and
_plan_update), served by the fake daemon of test_service.py."""

from __future__ import annotations

import pytest

from ansible_collections.swarmctl.cluster.plugins.modules import service as svc
from tests.unit.plugins.modules.test_service import IMAGE, FakeServices, run_cycle

secrets_mod = pytest.importorskip("swarmctl.manager.secrets")
if not hasattr(secrets_mod, "check_refs"):
    pytest.skip("this daemon has no secret references", allow_module_level=True)


@pytest.fixture
def fake(fake_daemon, run_module):
    run_module.fake = fake_daemon
    return FakeServices(fake_daemon)


def test_refs_match_the_daemons_rules():
    given = [{"secret_name": "db", "secret_id": None, "filename": None, "uid": None, "gid": None, "mode": None},
             {"secret_name": "tls", "secret_id": None, "filename": "/etc/tls.key", "uid": 1000, "gid": "1000",
              "mode": 0o400}]
    refs = svc.build_file_refs("secret", given)
    daemon = {"secrets": [{"secret_name": "db"},
                          {"secret_name": "tls", "target": "/etc/tls.key", "uid": "1000", "gid": "1000", "mode": 0o400}]}
    secrets_mod.check_refs(daemon)
    assert refs == daemon["secrets"]
    config = svc.build_file_refs("config", [{"config_name": "site"}])
    daemon = {"configs": [{"config_name": "site"}]}
    secrets_mod.check_refs(daemon)
    assert config == daemon["configs"]
    with pytest.raises(svc.ServiceParamError, match="expected a numeric id"):
        svc.build_file_refs("secret", [{"secret_name": "db", "uid": "root"}])
    with pytest.raises(svc.ServiceParamError, match="file mode"):
        svc.build_file_refs("config", [{"config_name": "c", "mode": 0o17777}])


def test_service_with_secrets_and_configs(fake, run_module):
    fake.daemon.routes[("GET", "/v1/secrets")] = (200, [{"id": "sec1", "spec": {"name": "db_v1", "labels": {}}},
                                                        {"id": "sec2", "spec": {"name": "db_v2", "labels": {}}}])
    fake.daemon.routes[("GET", "/v1/configs")] = (200, [{"id": "cfg1", "spec": {"name": "site", "labels": {}}}])
    base = {"swarmctl_host": fake.daemon.host, "name": "web", "image": IMAGE}
    created = run_cycle(run_module, dict(base, secrets=[{"secret_name": "db_v1"}],
                                         configs=[{"config_name": "site", "filename": "/etc/site.conf"}]))
    task = created["swarm_service"]["spec"]["task"]
    assert task["secrets"] == [{"secret_id": "sec1", "secret_name": "db_v1", "target": "db_v1", "uid": "0",
                                "gid": "0", "mode": 0o444}]
    assert task["configs"][0]["config_id"] == "cfg1" and task["configs"][0]["target"] == "/etc/site.conf"
    # options left out keep them; a new version is a change of the task spec
    assert not run_module("service", base)["changed"]
    rolled = run_cycle(run_module, dict(base, secrets=[{"secret_name": "db_v2", "filename": "db_v1"}]),
                       expect_changes=["secrets"])
    assert rolled["diff"]["after"]["task"]["secrets"][0]["secret_id"] == "sec2"
    emptied = run_cycle(run_module, dict(base, secrets=[], configs=[]), expect_changes=["configs", "secrets"])
    assert "secrets" not in emptied["swarm_service"]["spec"]["task"]
    assert not run_module("service", dict(base, secrets=[]))["changed"]
    unknown = run_module("service", dict(base, secrets=[{"secret_name": "nope"}]), check_mode=True)
    assert unknown["changed"] and "secret not found: nope" in str(unknown.get("warnings"))
