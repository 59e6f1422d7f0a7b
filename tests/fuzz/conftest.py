"""Daemons for the fuzz tests: real processes on loopback addresses (tests/integration/harness.py), with their
agents on the private Docker engine so that image checks answer (an image no node has is refused), all
stopped by the fixtures that start them."""

import os
import shutil
import tempfile

import pytest

from tests.integration.harness import Cluster, check


@pytest.fixture
def fuzz_cluster(docker_engine, test_image):
    root = tempfile.mkdtemp(prefix="swapifz-", dir="/tmp")
    c = Cluster(root, heartbeat=0.5, docker_host=docker_engine)
    c.image = test_image
    try:
        yield c
    finally:
        c.stop_all()
        import docker
        client = docker.DockerClient(base_url=docker_engine)
        for container in client.containers.list(all=True, filters={"label": "swarmctl.node.id"}):
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass
        client.close()
        if os.environ.get("SWARMCTL_KEEP_LOGS") is None:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fuzz_manager(fuzz_cluster):
    """A one-manager swarm with a global service named `fuzz` whose constraint no node meets (so fuzzed
    updates of it start no containers unless they also change its placement)."""
    (manager,), _ = fuzz_cluster.form(1, 0)
    check(manager.cli("service", "create", "-d", "--name", "fuzz", "--mode", "global", "--constraint",
                      "node.labels.fuzz==never", fuzz_cluster.image))
    return manager
