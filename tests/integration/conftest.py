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


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
