"""Restart attempts are counted on the tasks, not from the kept history (issue 8, point 5), on a real daemon
with busybox containers: `--restart-max-attempts 6` stops after 6 restarts with the default history of 5,
and `swarm update --task-history-limit` bounds the tasks kept."""

import json
import time

from tests.integration.harness import check, wait_for


def tasks(manager, service):
    return check(manager.cli("service", "ps", "--format", "json", service)).json()


def test_max_attempts_beyond_history(docker_cluster):
    managers, _workers = docker_cluster.form(1, 0)
    m = managers[0]
    assert json.loads(check(m.cli("swarm", "inspect")).out)["spec"]["task_history_limit"] == 5
    check(m.cli("service", "create", "--detach", "--name", "crash", "--stop-grace-period", "0s",
                "--restart-max-attempts", "6", "--restart-delay", "0s", docker_cluster.image, "sh", "-c", "exit 3",
                timeout=60))

    def done():
        ts = tasks(m, "crash")
        last = max(ts, key=lambda t: t.get("created_at") or 0)
        if last["desired_state"] == "running" and last["status"]["state"] == "failed" and last.get("attempt") == 6:
            return ts
        return None
    ts = wait_for(done, timeout=45, interval=0.3, what="the 6th restart to fail")
    assert len(ts) <= 5 + 1  # the default history, and the slot's current (ended) task
    time.sleep(2.0)  # and it stays done: no 7th restart
    after = tasks(m, "crash")
    assert max(t.get("attempt") or 0 for t in after) == 6
    assert sum(1 for t in after if t["desired_state"] == "running") == 1

    # a smaller history: the reaper deletes the older ended tasks
    check(m.cli("swarm", "update", "--task-history-limit", "1"))
    assert json.loads(check(m.cli("swarm", "inspect")).out)["spec"]["task_history_limit"] == 1
    wait_for(lambda: len(tasks(m, "crash")) <= 2, timeout=10, what="history trimmed to 1")
    bad = m.cli("swarm", "update", "--task-history-limit", "-3")
    assert bad.code != 0 and "invalid task history limit" in bad.err and "Traceback" not in bad.err
