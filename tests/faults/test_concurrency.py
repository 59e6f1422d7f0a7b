"""Concurrency: 20 concurrent `swarmctl service update --env-add KEYi=i` on one service, spread over the
three managers. Every call that exited 0 must be in the final spec. Every other call must say
`update out of sequence` on one line. None may be lost silently."""

import os
import subprocess
import time

import pytest

from tests.integration.harness import SWARMCTL, check

CALLS = 20
OUT_OF_SEQUENCE = "update out of sequence"


@pytest.mark.faults_cluster(managers=3, docker=True)
def test_concurrent_service_updates_lose_nothing(cluster, figures):
    managers = cluster.managers
    check(managers[0].cli("service", "create", "--name", "conc", "--replicas", "0", cluster.image, "sleep", "3600",
                          timeout=120))
    procs = []
    start = time.monotonic()
    try:
        for i in range(CALLS):
            d = managers[i % len(managers)]
            env = dict(os.environ, SWARMCTL_HOST=f"unix://{d.socket}")
            procs.append(subprocess.Popen(SWARMCTL + ["service", "update", "--detach", "--env-add", f"KEY{i}={i}", "conc"],
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results = []
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, 90 - (time.monotonic() - start)))
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    elapsed = time.monotonic() - start
    def envs():
        return {d.name: check(d.cli("service", "inspect", "conc")).json()["spec"]["task"].get("env") or {}
                for d in managers}
    deadline = time.monotonic() + 15  # the final spec, once every manager has it (stale reads are tested apart)
    spec = envs()
    while len({tuple(sorted(e.items())) for e in spec.values()}) != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
        spec = envs()
    final = spec[managers[0].name]
    ok = [i for i, (code, _, _) in enumerate(results) if code == 0]
    refused = [i for i, (code, _, _) in enumerate(results) if code != 0]
    lost = [i for i in ok if final.get(f"KEY{i}") != str(i)]
    bad_errors = [f"KEY{i}: {results[i][2].strip()!r}" for i in refused
                  if OUT_OF_SEQUENCE not in results[i][2] or "Traceback" in results[i][2]
                  or len(results[i][2].strip().splitlines()) != 1]
    figures(f"{CALLS} concurrent updates in {elapsed:.1f} s: {len(ok)} exited 0, {len(refused)} refused; "
            f"{len(final)} keys in the final spec; exited 0 but missing from the spec: {len(lost)}")
    problems = []
    if lost:
        problems.append(f"{len(lost)} of {len(ok)} updates that exited 0 are not in the final spec "
                        f"(lost silently): {['KEY%d' % i for i in lost]}; final env {final}")
    if bad_errors:
        problems.append(f"{len(bad_errors)} refused updates do not say {OUT_OF_SEQUENCE!r} on one line: "
                        + "; ".join(bad_errors[:5]))
    if not ok:
        problems.append("no update succeeded")
    if len({tuple(sorted(e.items())) for e in spec.values()}) != 1:
        problems.append(f"the managers disagree on the final spec: {spec}")
    assert not problems, "\n".join(problems)
