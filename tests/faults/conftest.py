"""Fixtures of the fault suite: a formed cluster of real daemons, its network, and the figures summary.

    @pytest.mark.faults_cluster(managers=3, workers=0, docker=False, network=False)
    def test_x(cluster): ...   # cluster.managers, cluster.workers, cluster.network (a nemesis.Network or None)

Every daemon runs with a gid of its own (61000 + index; see cluster.py and nemesis.Network). All daemons are killed by pid
when the test ends, paused ones included. The nftables table is deleted, and so are the engine's containers
of this swarm. The daemons' logs are kept in the cluster's directory when the test failed, or when
SWARMCTL_KEEP_LOGS is set.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests.faults.cluster import FaultCluster

FIGURES: list[str] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "faults_cluster(managers=3, workers=0, docker=False, network=False): "
                                       "the shape of the `cluster` fixture in tests/faults")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("fault suite figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def remove_containers(docker_host: str) -> None:
    import docker
    client = docker.DockerClient(base_url=docker_host)
    try:
        for container in client.containers.list(all=True, filters={"label": "swarmctl.node.id"}):
            try:
                container.remove(force=True)
            except docker.errors.APIError:  # already being removed
                pass
    finally:
        client.close()


@pytest.fixture
def cluster(request):
    marker = request.node.get_closest_marker("faults_cluster")
    opts = dict(managers=3, workers=0, docker=False, network=False)
    opts.update(marker.kwargs if marker else {})
    docker_host = request.getfixturevalue("docker_engine") if opts["docker"] else None
    root = tempfile.mkdtemp(prefix="faultsuite-", dir="/tmp")  # short: unix socket paths are limited
    c = FaultCluster(root, heartbeat=0.5, docker_host=docker_host)
    if docker_host:
        c.image = request.getfixturevalue("test_image")
    try:
        c.form_faults(opts["managers"], opts["workers"], opts["network"])
        yield c
    finally:
        c.close()
        if docker_host:
            remove_containers(docker_host)
        failed = any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False) for w in ("setup", "call"))
        if failed or os.environ.get("SWARMCTL_KEEP_LOGS") is not None:
            print(f"daemon logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def figures(request):
    """figures(text): a line for the end-of-run summary (and the test's own output)."""
    def add(text: str) -> None:
        line = f"{request.node.name}: {text}"
        print(line)
        FIGURES.append(line)
    return add
