"""The simulated runtime, a stand-in for the Docker engine used only by hollow nodes (swarmctl/hollow/).

It implements the runtime interface of runtime/base.py in memory: no process, no image, no network. A
"container" is created, then started: the start takes ``start_latency`` seconds and fails with probability
``fail_rate`` (the container is then left exited with code 128 and the start raises RuntimeFailure, as an
engine does when the container's process cannot start); a started container runs until it is stopped or
removed, and then exits with code 0. Every step appends a line to the container's log, which `service logs`
reads through the hollow process's agent listener.

The blocking methods sleep for the latency, as the interface requires (they are what the unit tests and a
worker on a thread pool call). A hollow process runs hundreds of nodes on one event loop and cannot give
each a thread per start, so the worker awaits ``call_async`` instead when a runtime offers it: the same
steps, with the latency slept on the event loop.

It never stands in for Docker in the tests that check containers: those use the real engine.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from swarmctl.runtime.base import (ContainerNotFound, ContainerSpec, ContainerState, ImageNotFound, Runtime,
                                   RuntimeFailure)

START_FAILURE_EXIT = 128
ENGINE_VERSION = "simulated"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class _Container:
    id: str
    spec: ContainerSpec
    status: str = "created"
    exit_code: int | None = None
    error: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    log: list[str] = field(default_factory=list)

    def state(self) -> ContainerState:
        return ContainerState(id=self.id, name=self.spec.name, labels=dict(self.spec.labels), status=self.status,
                              exit_code=self.exit_code, error=self.error, started_at=self.started_at,
                              finished_at=self.finished_at)


class SimulatedRuntime(Runtime):
    """Simulated runtime, a stand-in for the Docker engine used only by hollow nodes."""

    _ids = itertools.count(1)

    def __init__(self, start_latency: float = 0.2, fail_rate: float = 0.0, images: set[str] | None = None,
                 rng: random.Random | None = None, name: str = "hollow"):
        if start_latency < 0:
            raise ValueError("start latency must be >= 0")
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("fail rate must be between 0 and 1")
        self.start_latency = float(start_latency)
        self.fail_rate = float(fail_rate)
        self.images = images  # None: every image is present
        self.name = name
        self._rng = rng or random.Random()
        self._containers: dict[str, _Container] = {}
        self._by_name: dict[str, str] = {}
        self._lock = threading.Lock()  # the blocking methods may be called from a thread pool
        self._closed = False
        self.starts = 0
        self.failures = 0

    # ---- helpers -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeFailure("the simulated runtime was closed")

    def _get(self, ref: str) -> _Container:
        container = self._containers.get(ref) or self._containers.get(self._by_name.get(ref, ""))
        if container is None:
            raise ContainerNotFound(f"No such container: {ref}")
        return container

    # ---- the runtime interface -----------------------------------------------------------------
    def ping(self) -> dict:
        self._check_open()
        return {"Version": ENGINE_VERSION, "ApiVersion": ENGINE_VERSION, "Os": "simulated",
                "Name": self.name, "Containers": len(self._containers)}

    def has_image(self, image: str) -> bool:
        self._check_open()
        return bool(image) and (self.images is None or image in self.images)

    def create(self, spec: ContainerSpec) -> str:
        self._check_open()
        if not self.has_image(spec.image):
            raise ImageNotFound(f"No such image: {spec.image}")
        with self._lock:
            if spec.name in self._by_name:
                raise RuntimeFailure(f'Conflict. The container name "/{spec.name}" is already in use')
            container_id = f"{next(self._ids):016x}{self._rng.getrandbits(192):048x}"
            container = _Container(container_id, spec)
            container.log.append(f"simulated runtime: created {spec.name} from {spec.image}")
            self._containers[container_id] = container
            self._by_name[spec.name] = container_id
        return container_id

    def start(self, container_id: str) -> None:
        self._check_open()
        if self._begin_start(container_id):
            time.sleep(self.start_latency)
            self._finish_start(container_id)

    def stop(self, container_id: str, timeout: float = 10) -> None:
        self._check_open()
        with self._lock:
            container = self._get(container_id)
            self._exit(container, 0, "stopped")

    def remove(self, container_id: str, force: bool = True) -> None:
        self._check_open()
        with self._lock:
            try:
                container = self._get(container_id)
            except ContainerNotFound:
                return
            if container.status == "running" and not force:
                raise RuntimeFailure(f"You cannot remove a running container {container.id}. "
                                     "Stop the container before attempting removal or force remove")
            self._containers.pop(container.id, None)
            self._by_name.pop(container.spec.name, None)

    def inspect(self, container_id: str) -> ContainerState | None:
        self._check_open()
        with self._lock:
            try:
                return self._get(container_id).state()
            except ContainerNotFound:
                return None

    def list(self, labels: dict[str, str]) -> list[ContainerState]:
        self._check_open()
        with self._lock:
            return [c.state() for c in self._containers.values()
                    if all(c.spec.labels.get(k) == v for k, v in labels.items())]

    def logs(self, container_id: str, tail: int | None = None) -> list[str]:
        self._check_open()
        with self._lock:
            lines = list(self._get(container_id).log)
        return lines[-tail:] if tail is not None and tail > 0 else ([] if tail == 0 else lines)

    def close(self) -> None:
        self._closed = True

    # ---- the event-loop form -------------------------------------------------------------------
    async def call_async(self, fn, *args):
        """Run one of this runtime's methods (or a callable using them) without blocking the loop:
        a start sleeps its latency with asyncio, every other step is an in-memory change."""
        if fn == self.start:  # a bound method of this very runtime
            (container_id,) = args
            self._check_open()
            if self._begin_start(container_id):
                await asyncio.sleep(self.start_latency)
                self._finish_start(container_id)
            return None
        return fn(*args)

    # ---- steps ---------------------------------------------------------------------------------
    def _begin_start(self, container_id: str) -> bool:
        """Check a start; False if the container already runs (no error, like the engine)."""
        with self._lock:
            container = self._get(container_id)
            if container.status == "running":
                return False
            container.status, container.exit_code, container.error = "created", None, ""
            return True

    def _finish_start(self, container_id: str) -> None:
        with self._lock:
            container = self._get(container_id)  # removed meanwhile: ContainerNotFound, as an engine would say
            self.starts += 1
            if self.fail_rate > 0 and self._rng.random() < self.fail_rate:
                self.failures += 1
                error = f"simulated runtime: start failed (fail rate {self.fail_rate:g})"
                container.started_at = _now()
                self._exit(container, START_FAILURE_EXIT, "start failed", error=error)
                raise RuntimeFailure(error)
            container.status, container.started_at, container.finished_at = "running", _now(), None
            container.log.append(f"simulated runtime: {container.spec.name} running "
                                 f"(started in {self.start_latency:g}s)")

    def _exit(self, container: _Container, code: int, why: str, error: str = "") -> None:
        if container.status in ("exited", "dead"):
            return
        container.status, container.exit_code, container.error = "exited", code, error
        container.finished_at = _now()
        container.log.append(f"simulated runtime: {container.spec.name} exited with code {code} ({why})")
