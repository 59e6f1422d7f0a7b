"""Container runtimes used by the node agent.

``make_runtime(docker_host)`` gives the Docker Engine runtime: ``docker_host`` is an engine address
(``unix:///path/docker.sock``, ``tcp://127.0.0.1:2375``) or None for the default local engine
(DOCKER_HOST, else /var/run/docker.sock).
"""

from swarmctl.runtime.base import (
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    EngineUnavailable,
    ImageNotFound,
    Runtime,
    RuntimeFailure,
)


def make_runtime(docker_host: str | None = None, timeout: float = 30) -> Runtime:
    from swarmctl.runtime.docker_engine import DockerRuntime

    return DockerRuntime(docker_host, timeout=timeout)


__all__ = [
    "ContainerNotFound",
    "ContainerSpec",
    "ContainerState",
    "EngineUnavailable",
    "ImageNotFound",
    "Runtime",
    "RuntimeFailure",
    "make_runtime",
]
