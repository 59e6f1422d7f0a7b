"""Concurrent updates through several managers are never silently lost: each either lands in the final spec
or fails with Docker's "update out of sequence" (the CLI retried it at most 3 times meanwhile)."""

from concurrent.futures import ThreadPoolExecutor

from tests.integration.harness import check, wait_for


def test_twenty_concurrent_env_updates_over_three_managers(docker_cluster):
    managers, _ = docker_cluster.form(3, 0)
    check(managers[0].cli("service", "create", "-d", "--name", "web", "--replicas", "0", docker_cluster.image))
    wait_for(lambda: all(m.cli("service", "inspect", "web").ok for m in managers), what="web on every manager")

    def update(i):
        return managers[i % 3].cli("service", "update", "-d", "--env-add", f"KEY{i}=value{i}", "web", timeout=120)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(update, range(20)))
    service = check(managers[0].cli("service", "inspect", "web")).json()
    env = service["spec"]["task"]["env"]
    succeeded = [i for i, r in enumerate(results) if r.ok]
    for i, result in enumerate(results):
        if result.ok:
            assert env.get(f"KEY{i}") == f"value{i}", (i, env)
        else:
            assert result.err.strip() == "Error response from daemon: update out of sequence", (i, result.err)
            assert f"KEY{i}" not in env, (i, env)
    assert succeeded, [r.err for r in results]
    # every success changed the task spec exactly once: nothing applied twice, nothing lost
    assert service["spec_version"] == 1 + len(succeeded) and len(env) == len(succeeded)
    print(f"{len(succeeded)} of 20 concurrent updates applied, {20 - len(succeeded)} refused as out of sequence")
