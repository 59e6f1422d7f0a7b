"""The cluster setting task_history_limit: `swarm update --task-history-limit N` and its API bounds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from swarmctl.api import limits as L
from swarmctl.api.schemas import SwarmUpdateRequest
from swarmctl.cli.main import main
from tests.unit.test_cli_service import stub  # noqa: F401  (the fixture: a fake daemon on a unix socket)


def test_swarm_update_task_history_limit(stub, capsys):  # noqa: F811
    stub.routes[("GET", "/v1/swarm")] = {"id": "c", "version": 4, "spec": {"task_history_limit": 5}}
    stub.routes[("POST", "/v1/swarm/update?version=4")] = {"spec": {"task_history_limit": 2}}
    assert main(["swarm", "update", "--task-history-limit", "2"]) == 0
    assert capsys.readouterr().out.endswith("Swarm updated.\n")
    assert stub.requests[-1] == ("POST", "/v1/swarm/update?version=4", {"task_history_limit": 2})
    assert main(["swarm", "update", "--task-history-limit=0"]) == 0
    assert stub.requests[-1][2] == {"task_history_limit": 0}
    before = len(stub.requests)
    for bad in ("-1", "abc", "1.5", str(L.MAX_TASK_HISTORY + 1), ""):
        capsys.readouterr()
        assert main(["swarm", "update", f"--task-history-limit={bad}"]) == 1
        err = capsys.readouterr().err
        assert "invalid task history limit" in err and "Traceback" not in err and err.count("\n") == 1
    assert len(stub.requests) == before  # nothing was sent


@pytest.mark.parametrize("value", [0, 5, L.MAX_TASK_HISTORY])
def test_api_accepts(value):
    assert SwarmUpdateRequest(task_history_limit=value).task_history_limit == value


@pytest.mark.parametrize("value", [-1, L.MAX_TASK_HISTORY + 1, "many", 2.5])
def test_api_refuses(value):
    with pytest.raises(ValidationError):
        SwarmUpdateRequest(task_history_limit=value)


def test_unset_keeps_the_setting():
    assert SwarmUpdateRequest().task_history_limit is None
