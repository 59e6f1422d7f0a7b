"""The container runtime interface used by the node agent.

Deliberately narrow and engine-neutral: the agent creates, starts, stops, inspects, lists and removes
containers described by a :class:`ContainerSpec`, and reads their logs.  All methods block; callers
that need concurrency run them in a thread pool.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from swarmctl.logformat import format_log_timestamp, parse_log_timestamp  # noqa: F401 - runtimes use them

#: the container statuses an engine reports (Docker's State.Status values)
STATUSES = ("created", "running", "restarting", "paused", "exited", "dead", "removing")
#: what a container's healthcheck says (Docker's State.Health.Status values)
HEALTH_STATES = ("starting", "healthy", "unhealthy")
#: a health check's output is kept to this many characters
HEALTH_OUTPUT_MAX = 200


@dataclass
class ContainerSpec:
    """What to run.  ``command`` overrides the image's entrypoint, ``args`` its default arguments."""

    name: str
    image: str
    command: list[str] | None = None
    args: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    cpu_limit: float | None = None  # CPUs, e.g. 0.5
    memory_limit: int | None = None  # bytes
    network_mode: str = "host"  # "host" or "none"
    hostname: str | None = None
    dns: list[str] | None = None  # nameservers written into the container's /etc/resolv.conf
    dns_search: list[str] | None = None  # search domains of the container's /etc/resolv.conf
    user: str | None = None  # USER[:GROUP] (names or ids); None: the image's
    working_dir: str | None = None  # None: the image's WORKDIR
    # None: the image's HEALTHCHECK applies; else the task spec's form (records.HEALTHCHECK_DEFAULTS: test, seconds)
    healthcheck: dict | None = None
    # (host path, container path) pairs bind-mounted read-only: the task's secrets and configs (agent/taskfiles.py)
    mounts: list[tuple[str, str]] = field(default_factory=list)
    # the container's log driver and its options; None: json-file rotated at LOG_DEFAULTS, so that a task's
    # output cannot fill the node's disk (Docker's --log-driver / --log-opt)
    log_driver: str | None = None
    log_options: dict[str, str] | None = None
    # the task's own mounts (task spec `mounts`: dicts with type, source, target, readonly, propagation, no_copy,
    # labels, driver_config, tmpfs_size, tmpfs_mode), apart from the secrets' and configs' `mounts` above
    volumes: list[dict] = field(default_factory=list)
    read_only: bool | None = None  # None: the engine's default (for these and the fields below)
    init: bool | None = None
    tty: bool | None = None
    cap_add: list[str] | None = None
    cap_drop: list[str] | None = None
    sysctls: dict[str, str] | None = None
    ulimits: list[dict] | None = None  # [{"name", "soft", "hard"}]
    dns_options: list[str] | None = None
    hosts: dict[str, str] | None = None  # /etc/hosts entries: hostname -> IP
    stop_signal: str | None = None  # the signal a stop sends first (the container's StopSignal)
    groups: list[str] | None = None  # additional groups (GroupAdd)


# json-file rotation unless the task says otherwise: at most 3 files of 10 MB per container
LOG_DEFAULTS = {"max-size": "10m", "max-file": "3"}


@dataclass
class ContainerState:
    """A container as the engine reports it."""

    id: str
    name: str
    labels: dict[str, str]
    status: str  # one of STATUSES
    exit_code: int | None  # set once the container has exited (status exited or dead)
    error: str  # the engine's error for a failed start, else ""
    started_at: str | None  # RFC 3339 timestamps as the engine gives them; None if never
    finished_at: str | None
    health: str | None = None  # "starting", "healthy" or "unhealthy"; None without a healthcheck
    health_output: str = ""  # the last check's output, stripped and shortened (only from inspect)

    @property
    def running(self) -> bool:
        return self.status == "running"


class RuntimeFailure(Exception):
    """An engine request failed; the message is the engine's error text on one line."""

    def __init__(self, message: str = ""):
        message = " ".join(str(message).split())
        super().__init__(message)
        self.message = message


class ImageNotFound(RuntimeFailure):
    """The image is not present in the engine (runtimes never pull)."""


class ContainerNotFound(RuntimeFailure):
    """No container with that id or name."""


class EngineUnavailable(RuntimeFailure):
    """The engine cannot be reached (not running, wrong socket, no answer in time)."""


class Runtime(abc.ABC):
    """A container engine.  Methods block and may raise :class:`RuntimeFailure` subclasses."""

    @abc.abstractmethod
    def ping(self) -> dict:
        """Engine version information; raises EngineUnavailable if the engine does not answer."""

    @abc.abstractmethod
    def has_image(self, image: str) -> bool:
        """Whether the image is present locally (images are never pulled)."""

    @abc.abstractmethod
    def create(self, spec: ContainerSpec) -> str:
        """Create (not start) a container and return its id.

        Raises ImageNotFound if the image is not present locally (never pulls)."""

    @abc.abstractmethod
    def start(self, container_id: str) -> None:
        """Start a created or stopped container (no error if it already runs)."""

    @abc.abstractmethod
    def stop(self, container_id: str, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns once it has stopped."""

    @abc.abstractmethod
    def remove(self, container_id: str, force: bool = True) -> None:
        """Remove a container (``force`` kills it first if it runs); no error if it is already gone."""

    @abc.abstractmethod
    def inspect(self, container_id: str) -> ContainerState | None:
        """The container's state, or None if there is no such container."""

    @abc.abstractmethod
    def list(self, labels: dict[str, str]) -> list[ContainerState]:
        """All containers, running or not, that carry all of ``labels`` (an empty dict lists all)."""

    @abc.abstractmethod
    def logs(self, container_id: str, tail: int | None = None) -> list[str]:
        """The container's stdout and stderr lines, decoded (the last ``tail`` lines if given)."""

    def log_entries(self, container_id: str, tail: int | None = None,
                    since: float | None = None) -> list[tuple[int, str]]:
        """(engine timestamp in ns since the epoch, line) pairs, oldest first: the last ``tail`` lines of those
        written at or after ``since`` (seconds since the epoch). A runtime without timestamps gives 0."""
        return [(0, line) for line in self.logs(container_id, tail)]

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections.  The runtime must not be used afterwards."""

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
