"""`service create --placement-pref` and `service update --placement-pref-add/--placement-pref-rm`: parsing,
Docker's error texts, the request bodies and the retry paths (no daemon: the stub server of test_cli_service)."""

from __future__ import annotations

import pytest

from swarmctl.cli import service_cmds as sc
from swarmctl.cli.client import CLIError
from swarmctl.cli.main import main

from tests.unit.test_cli_service import _args, _service, stub  # noqa: F401 (stub is a fixture)

ZONE, RACK, DISK = {"spread": "node.labels.zone"}, {"spread": "node.labels.rack"}, {"spread": "engine.labels.disk"}


def test_create_body_preferences_in_order():
    args = _args("service", "create", "--name", "web", "--placement-pref", "spread=node.labels.zone",
                 "--placement-pref", "spread=node.labels.rack", "--constraint", "node.role==worker", "busybox")
    assert sc.build_create_body(args)["task"]["placement"] == {"constraints": ["node.role==worker"],
                                                              "preferences": [ZONE, RACK]}
    assert "placement" not in sc.build_create_body(_args("service", "create", "--name", "web", "busybox"))["task"]


@pytest.mark.parametrize("value, message", [
    ("foo", 'invalid argument "foo" for "--placement-pref" flag: placement preference must be of the format '
            '"<strategy>=<arg>"'),
    ("spread=a=b", 'invalid argument "spread=a=b" for "--placement-pref" flag: placement preference must be of '
                   'the format "<strategy>=<arg>"'),
    ("pack=node.labels.zone", 'invalid argument "pack=node.labels.zone" for "--placement-pref" flag: unsupported '
                              'placement preference pack (only spread is supported)'),
])
def test_create_bad_preference_is_dockers_one_line_error(value, message):
    with pytest.raises(CLIError) as info:
        sc.build_create_body(_args("service", "create", "--name", "web", "--placement-pref", value, "busybox"))
    assert str(info.value) == message


def test_create_bad_preference_exits_1_without_a_request(stub, capsys):  # noqa: F811
    assert main(["service", "create", "--name", "web", "--placement-pref", "foo", "busybox"]) == 1
    err = capsys.readouterr().err
    assert err == 'Error: invalid argument "foo" for "--placement-pref" flag: placement preference must be of ' \
                  'the format "<strategy>=<arg>"\n'
    assert stub.requests == []


def test_update_body_removes_then_appends():
    svc = _service(placement={"constraints": [], "preferences": [ZONE, RACK], "max_replicas_per_node": 0,
                              "strategy": None})
    args = _args("service", "update", "--placement-pref-rm", "spread=node.labels.zone",
                 "--placement-pref-add", "spread=engine.labels.disk", "--placement-pref-add", "spread=node.labels.zone",
                 "web")
    assert sc.build_update_body(args, svc) == {"task": {"placement": {"preferences": [RACK, DISK, ZONE]}},
                                               "force": False}
    args = _args("service", "update", "--placement-pref-rm", "spread=node.labels.missing", "web")
    assert sc.build_update_body(args, svc)["task"]["placement"]["preferences"] == [ZONE, RACK]
    # a service stored before preferences existed has none
    args = _args("service", "update", "--placement-pref-add", "spread=node.labels.zone", "web")
    assert sc.build_update_body(args, _service())["task"]["placement"] == {"preferences": [ZONE]}
    assert "task" not in sc.build_update_body(_args("service", "update", "web"), svc)


def test_update_bad_preference():
    with pytest.raises(CLIError, match='"--placement-pref-rm" flag: unsupported placement preference x'):
        sc.build_update_body(_args("service", "update", "--placement-pref-rm", "x=y", "web"), _service())
    with pytest.raises(CLIError, match='"--placement-pref-add" flag: placement preference must be'):
        sc.build_update_body(_args("service", "update", "--placement-pref-add", "spread", "web"), _service())


def test_update_paths():
    args = _args("service", "update", "--placement-pref-add", "spread=node.labels.zone", "web")
    assert sc.update_paths(args) == [("spec", "task", "placement", "preferences")]
    assert sc.update_paths(_args("service", "update", "--placement-pref-rm", "spread=node.labels.zone", "web")) == \
        [("spec", "task", "placement", "preferences")]
