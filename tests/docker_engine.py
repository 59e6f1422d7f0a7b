"""The private Docker engine for tests (helper for pytest fixtures; no tests here).

``ensure_engine()`` makes sure a private dockerd answers on unix:///tmp/swarmctl-dockerd/docker.sock
(started with scripts/dockerd.sh if it is not running) and that the offline test image exists
(scripts/build-test-image.sh).  Every ensure_engine() is paired with one release_engine(); the last
release stops the engine, and only if ensure_engine started it, so an engine someone started by hand
stays up and one fixture's release never pulls the engine from under another fixture still using it.

Without dockerd (or without root) the calling test is skipped, unless SWARMCTL_REQUIRE_DOCKER is set
(CI sets it): then a missing engine is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERD_SH = REPO / "scripts" / "dockerd.sh"
BUILD_IMAGE_SH = REPO / "scripts" / "build-test-image.sh"
# SWARMCTL_TEST_ENGINE_DIR gives a session its own engine (parallel runs in separate network namespaces)
ENGINE_DIR = os.environ.get("SWARMCTL_TEST_ENGINE_DIR", "/tmp/swarmctl-dockerd")
SOCKET_URL = f"unix://{ENGINE_DIR}/docker.sock"
TEST_IMAGE = "swarmctl-test/busybox:latest"

_lock = threading.Lock()
_started_by_us = False
_ready = False
_users = 0  # ensure_engine() calls not yet paired with a release_engine()


def _required() -> bool:
    return bool(os.environ.get("SWARMCTL_REQUIRE_DOCKER"))


def _unavailable(reason: str):
    if _required():
        pytest.fail(f"Docker engine required (SWARMCTL_REQUIRE_DOCKER is set) but {reason}", pytrace=False)
    pytest.skip(reason)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def engine_running() -> bool:
    return _run(["bash", str(DOCKERD_SH), "status", ENGINE_DIR], timeout=30).returncode == 0


def ensure_engine() -> str:
    """Start the private engine if needed, build the test image if needed; return the socket URL."""
    global _started_by_us, _ready, _users
    with _lock:
        if _ready:
            _users += 1
            return SOCKET_URL
        if shutil.which("dockerd") is None:
            _unavailable("dockerd is not installed (scripts/setup.sh --system installs docker.io)")
        if shutil.which("docker") is None:
            _unavailable("the docker CLI is not installed (scripts/setup.sh --system installs docker.io)")
        if os.geteuid() != 0:
            _unavailable("the private dockerd needs root")
        if not engine_running():
            res = _run(["bash", str(DOCKERD_SH), "start", ENGINE_DIR], timeout=90)
            if res.returncode != 0:
                pytest.fail(f"scripts/dockerd.sh start failed:\n{res.stdout}{res.stderr}", pytrace=False)
            _started_by_us = True
        res = _run(["bash", str(BUILD_IMAGE_SH), SOCKET_URL], timeout=300)
        if res.returncode != 0:
            if _started_by_us:
                _started_by_us = False
                _run(["bash", str(DOCKERD_SH), "stop", ENGINE_DIR], timeout=120)
            pytest.fail(f"scripts/build-test-image.sh failed:\n{res.stdout}{res.stderr}", pytrace=False)
        _ready = True
        _users += 1
        return SOCKET_URL


def release_engine() -> None:
    """Drop one use; the last one stops the engine if ensure_engine started it (with its containers)."""
    global _started_by_us, _ready, _users
    with _lock:
        _users = max(0, _users - 1)
        if _users:
            return
        _ready = False
        if not _started_by_us:
            return
        _started_by_us = False
        res = _run(["bash", str(DOCKERD_SH), "stop", ENGINE_DIR], timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"scripts/dockerd.sh stop failed:\n{res.stdout}{res.stderr}")
