"""Fixtures shared by all test directories (tests/integration/conftest.py adds the `cluster` fixture)."""

import pytest

from tests import docker_engine as _engine


@pytest.fixture(scope="session")
def docker_engine():
    """The socket URL of the private Docker engine (unix:///tmp/swarmctl-dockerd/docker.sock).

    Started once per session if it is not already running, and stopped at the end only if this
    session started it.  Skips without dockerd unless SWARMCTL_REQUIRE_DOCKER is set."""
    url = _engine.ensure_engine()
    try:
        yield url
    finally:
        _engine.release_engine()


@pytest.fixture
def test_image(docker_engine):
    """The offline busybox image (built in the private engine by ensure_engine)."""
    return _engine.TEST_IMAGE
