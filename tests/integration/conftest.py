import os
import tempfile

import pytest

from tests.integration.harness import Cluster


@pytest.fixture
def cluster():
    """A fresh set of daemons in a short temp dir (unix socket paths must stay short); all stopped after."""
    root = tempfile.mkdtemp(prefix="swi-", dir="/tmp")
    c = Cluster(root, heartbeat=0.5)
    try:
        yield c
    finally:
        c.stop_all()
        if os.environ.get("SWARMCTL_KEEP_LOGS") is None:
            import shutil
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def docker_cluster(docker_engine, test_image):
    """Like `cluster`, with every daemon's agent on the private test engine; removes its containers after."""
    root = tempfile.mkdtemp(prefix="swd-", dir="/tmp")
    c = Cluster(root, heartbeat=0.5, docker_host=docker_engine)
    c.image = test_image
    try:
        yield c
    finally:
        ids = c.node_ids()  # only this cluster's containers: other tests may share the engine
        c.stop_all()
        import docker
        client = docker.DockerClient(base_url=docker_engine)
        for container in client.containers.list(all=True, filters={"label": "swarmctl.node.id"}):
            if container.labels.get("swarmctl.node.id") not in ids:
                continue
            try:
                container.remove(force=True)
            except docker.errors.APIError:  # already being removed
                pass
        client.close()
        if os.environ.get("SWARMCTL_KEEP_LOGS") is None:
            import shutil
            shutil.rmtree(root, ignore_errors=True)


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
