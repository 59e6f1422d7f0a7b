"""The Docker Engine runtime (docker SDK, low-level APIClient).

Never pulls images: ``create`` of an image that is not present fails at once with ImageNotFound.

Thread safety: the SDK's APIClient is a ``requests.Session``, which is not documented as safe to share
between threads.  Each calling thread therefore gets its own APIClient (created on first use, with the
API version negotiated once per runtime); clients of threads that have ended are closed when a new one
is made, and ``close()`` closes them all.  So one DockerRuntime may be used from a ThreadPoolExecutor
with any number of workers.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from typing import Iterator

import docker
import docker.errors
import requests.exceptions
from docker.constants import DEFAULT_DOCKER_API_VERSION, MINIMUM_DOCKER_API_VERSION
from docker.utils import kwargs_from_env, parse_host, version_lt

from swarmctl.runtime.base import (
    LOG_DEFAULTS,
    ContainerNotFound,
    ContainerSpec,
    ContainerState,
    EngineUnavailable,
    HEALTH_OUTPUT_MAX,
    HEALTH_STATES,
    ImageNotFound,
    Runtime,
    RuntimeFailure,
    parse_log_timestamp,
)

_ZERO_TIME = "0001-01-01T00:00:00Z"


def _root_cause(exc: BaseException) -> str:
    """The innermost OS-level reason of a connection error, e.g. 'No such file or directory'."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    best = None
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror:
            best = e.strerror
        for nxt in (e.__cause__, e.__context__, *[a for a in e.args if isinstance(a, BaseException)]):
            if nxt is not None:
                todo.append(nxt)
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return best or str(exc)


def _api_message(e: docker.errors.APIError) -> str:
    msg = e.explanation if e.explanation else str(e)
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return str(msg)


def _timestamp(value: str | None) -> str | None:
    if not value or value.startswith("0001-01-01"):
        return None
    return value


def healthcheck_config(health: dict | None) -> dict | None:
    """Docker's container `Healthcheck` for a task's healthcheck (seconds -> nanoseconds); None leaves the image's."""
    if health is None:
        return None
    config = {"Test": list(health.get("test") or [])}
    if config["Test"] == ["NONE"]:
        return config
    for key, name in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"),
                      ("start_interval", "StartInterval")):
        if health.get(key) is not None:
            config[name] = int(round(float(health[key]) * 1e9))
    if health.get("retries") is not None:
        config["Retries"] = int(health["retries"])
    return config


def _health(st: dict) -> tuple[str | None, str]:
    """(status, last output) of the engine's State.Health; (None, "") without a healthcheck."""
    health = st.get("Health") or {}
    status = health.get("Status")
    if status not in HEALTH_STATES:
        return None, ""
    entries = health.get("Log") or []
    output = " ".join(str((entries[-1] or {}).get("Output") or "").split()) if entries else ""
    if len(output) > HEALTH_OUTPUT_MAX:
        output = output[:HEALTH_OUTPUT_MAX - 1] + "…"
    return status, output


# the container list gives a running container's health only in its Status text: "Up 3 seconds (health: starting)"
_SUMMARY_HEALTH = re.compile(r"\((?:health: )?(starting|healthy|unhealthy)\)\s*$")


def _state(info: dict) -> ContainerState:
    st = info.get("State") or {}
    status = st.get("Status") or ("running" if st.get("Running") else "exited")
    exit_code = st.get("ExitCode") if status in ("exited", "dead") else None
    health, output = _health(st)
    return ContainerState(
        id=info["Id"],
        name=(info.get("Name") or "").lstrip("/"),
        labels=dict((info.get("Config") or {}).get("Labels") or {}),
        status=status,
        exit_code=exit_code,
        error=st.get("Error") or "",
        started_at=_timestamp(st.get("StartedAt")),
        finished_at=_timestamp(st.get("FinishedAt")),
        health=health,
        health_output=output,
    )


def _summary_state(summary: dict) -> ContainerState:
    """A ContainerState from one entry of the engine's container list (no exit code: not ended; the health but
    not its output, which only an inspect gives)."""
    names = summary.get("Names") or [""]
    health = _SUMMARY_HEALTH.search(summary.get("Status") or "")
    return ContainerState(id=summary["Id"], name=names[0].lstrip("/"), labels=dict(summary.get("Labels") or {}),
                          status=summary.get("State") or "created", exit_code=None, error="",
                          started_at=None, finished_at=None, health=health.group(1) if health else None)


class DockerRuntime(Runtime):
    """A Docker Engine reached at ``base_url`` (``unix:///path``, ``tcp://host:port``), or the default
    local engine (DOCKER_HOST / DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, like ``docker.from_env()``) if None.
    ``timeout`` bounds every request, in seconds (a stop gets its stop timeout on top)."""

    def __init__(self, base_url: str | None = None, timeout: float = 30):
        if base_url is not None:
            try:
                parse_host(base_url)
            except docker.errors.DockerException as e:
                raise ValueError(f"bad Docker engine address {base_url!r}: {e}") from None
            self._client_kwargs: dict = {"base_url": base_url}
        else:
            self._client_kwargs = kwargs_from_env()
        self.base_url = self._client_kwargs.get("base_url") or "unix:///var/run/docker.sock"
        self.timeout = timeout
        self._lock = threading.Lock()
        self._clients: dict[int, tuple[threading.Thread, docker.APIClient]] = {}
        self._version: str | None = None
        self._closed = False

    # -- clients -----------------------------------------------------------------------------------

    def _new_client(self, version: str) -> docker.APIClient:
        try:
            return docker.APIClient(version=version, timeout=self.timeout, **self._client_kwargs)
        except docker.errors.DockerException as e:
            raise RuntimeFailure(f"cannot make a Docker client for {self.base_url}: {e}") from None

    def _negotiate(self) -> str:
        """The API version to speak: the engine's, capped at what the SDK knows."""
        probe = self._new_client(MINIMUM_DOCKER_API_VERSION)
        try:
            with self._errors():
                server = probe.version(api_version=False).get("ApiVersion") or MINIMUM_DOCKER_API_VERSION
        finally:
            probe.close()
        if version_lt(DEFAULT_DOCKER_API_VERSION, server):
            return DEFAULT_DOCKER_API_VERSION
        if version_lt(server, MINIMUM_DOCKER_API_VERSION):
            raise RuntimeFailure(f"Docker engine API {server} is older than the minimum {MINIMUM_DOCKER_API_VERSION}")
        return server

    def _client(self) -> docker.APIClient:
        me = threading.current_thread()
        with self._lock:
            if self._closed:
                raise RuntimeFailure("the Docker runtime is closed")
            entry = self._clients.get(me.ident)
            if entry is not None and entry[0] is me:
                return entry[1]
            version = self._version
        if version is None:
            version = self._negotiate()
        client = self._new_client(version)
        stale = []
        with self._lock:
            if self._closed:
                stale.append(client)
            else:
                self._version = version
                for ident, (thread, old) in list(self._clients.items()):
                    if not thread.is_alive() or ident == me.ident:
                        stale.append(old)
                        del self._clients[ident]
                self._clients[me.ident] = (me, client)
        for old in stale:
            with contextlib.suppress(Exception):
                old.close()
        if self._closed:
            raise RuntimeFailure("the Docker runtime is closed")
        return client

    @contextlib.contextmanager
    def _errors(self, not_found: type[RuntimeFailure] = ContainerNotFound) -> Iterator[None]:
        try:
            yield
        except docker.errors.ImageNotFound as e:
            raise ImageNotFound(_api_message(e)) from None
        except docker.errors.NotFound as e:
            raise not_found(_api_message(e)) from None
        except docker.errors.APIError as e:
            raise RuntimeFailure(_api_message(e)) from None
        except requests.exceptions.ConnectionError as e:
            if isinstance(e, requests.exceptions.ConnectTimeout):
                raise EngineUnavailable(
                    f"Docker engine at {self.base_url} did not accept a connection within {self.timeout}s") from None
            raise EngineUnavailable(f"cannot reach the Docker engine at {self.base_url}: {_root_cause(e)}") from None
        except requests.exceptions.Timeout:
            raise EngineUnavailable(f"Docker engine at {self.base_url} did not answer in time") from None
        except requests.exceptions.RequestException as e:
            raise RuntimeFailure(f"request to the Docker engine at {self.base_url} failed: {_root_cause(e)}") from None
        except docker.errors.DockerException as e:
            raise RuntimeFailure(str(e)) from None

    # -- Runtime -----------------------------------------------------------------------------------

    def ping(self) -> dict:
        client = self._client()
        with self._errors():
            return client.version(api_version=False)

    def has_image(self, image: str) -> bool:
        client = self._client()
        try:
            with self._errors(not_found=ImageNotFound):
                client.inspect_image(image)
        except ImageNotFound:
            return False
        return True

    def create(self, spec: ContainerSpec) -> str:
        client = self._client()
        with self._errors(not_found=ImageNotFound):
            host_config = client.create_host_config(
                network_mode=spec.network_mode,
                nano_cpus=int(round(spec.cpu_limit * 1e9)) if spec.cpu_limit else None,
                mem_limit=int(spec.memory_limit) if spec.memory_limit else None,
                dns=list(spec.dns) if spec.dns else None,
                binds={host: {"bind": target, "mode": "ro"} for host, target in spec.mounts} or None,
                dns_search=list(spec.dns_search) if spec.dns_search else None,
                log_config=log_config(spec),
                **host_options(spec),
            )
            environment = [f"{k}={v}" for k, v in spec.env.items()]
            proxies = getattr(client, "_proxy_configs", None)  # what create_container adds (use_config_proxy)
            if proxies is not None:
                environment = proxies.inject_proxy_environment(environment) or None
            config = client.create_container_config(
                image=spec.image,
                entrypoint=list(spec.command) if spec.command is not None else None,
                command=list(spec.args) if spec.args is not None else None,
                environment=environment,
                labels=dict(spec.labels),
                hostname=spec.hostname or None,
                user=spec.user or None,
                working_dir=spec.working_dir or None,
                host_config=host_config,
                detach=True,
                tty=bool(spec.tty),
                stop_signal=spec.stop_signal or None,
            )
            healthcheck = healthcheck_config(spec.healthcheck)
            if healthcheck is not None:  # set here, as the SDK's Healthcheck type would drop StartInterval
                config["Healthcheck"] = healthcheck
            res = client.create_container_from_config(config, name=spec.name)
        return res["Id"]

    def start(self, container_id: str) -> None:
        client = self._client()
        with self._errors():
            client.start(container_id)

    def stop(self, container_id: str, timeout: float = 10) -> None:
        client = self._client()
        with self._errors():
            client.stop(container_id, timeout=max(0, math.ceil(timeout)))

    def remove(self, container_id: str, force: bool = True) -> None:
        client = self._client()
        try:
            with self._errors():
                client.remove_container(container_id, v=True, force=force)
        except ContainerNotFound:
            return
        except RuntimeFailure as e:
            if "already in progress" in str(e):  # a concurrent removal: it is going away
                return
            raise

    def inspect(self, container_id: str) -> ContainerState | None:
        client = self._client()
        try:
            with self._errors():
                return _state(client.inspect_container(container_id))
        except ContainerNotFound:
            return None

    def list(self, labels: dict[str, str]) -> list[ContainerState]:
        client = self._client()
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]} if labels else None
        with self._errors():
            summaries = client.containers(all=True, filters=filters)
        out = []
        for s in summaries:
            if s.get("State") in ("running", "created", "restarting", "paused", "removing"):
                out.append(_summary_state(s))  # the list answer says enough; no request per container
                continue
            st = self.inspect(s["Id"])  # ended: the exit code and error need an inspect
            if st is not None:  # None: removed meanwhile
                out.append(st)
        return out

    def logs(self, container_id: str, tail: int | None = None) -> list[str]:
        client = self._client()
        with self._errors():
            data = client.logs(container_id, stdout=True, stderr=True, stream=False, timestamps=False,
                               tail=max(0, int(tail)) if tail is not None else "all")
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        return data.splitlines()

    def log_entries(self, container_id: str, tail: int | None = None,
                    since: float | None = None) -> list[tuple[int, str]]:
        client = self._client()
        with self._errors():
            data = client.logs(container_id, stdout=True, stderr=True, stream=False, timestamps=True,
                               tail=max(0, int(tail)) if tail is not None else "all",
                               since=float(since) if since else None)
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        out = []
        for raw in data.splitlines():
            stamp, _, line = raw.partition(" ")
            try:
                out.append((parse_log_timestamp(stamp), line))
            except ValueError:  # a line the engine wrote without its timestamp: keep it, with the last one's
                out.append((out[-1][0] if out else 0, raw))
        return out

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients = [c for _, c in self._clients.values()]
            self._clients.clear()
        for c in clients:
            with contextlib.suppress(Exception):
                c.close()

    def __repr__(self) -> str:
        return f"DockerRuntime({self.base_url!r})"


def engine_mount(mount: dict) -> docker.types.Mount:
    """A task spec mount (services.container_options checked it) as the SDK's Mount (HostConfig.Mounts)."""
    driver = mount.get("driver_config")
    return docker.types.Mount(
        target=mount["target"], source=mount.get("source") or ("" if mount["type"] != "volume" else None),
        type=mount["type"], read_only=bool(mount.get("readonly")), propagation=mount.get("propagation"),
        no_copy=bool(mount.get("no_copy")), labels=mount.get("labels") or None,
        driver_config=docker.types.DriverConfig(driver["name"], driver.get("options") or None) if driver else None,
        tmpfs_size=mount.get("tmpfs_size"), tmpfs_mode=mount.get("tmpfs_mode"))


def host_options(spec: ContainerSpec) -> dict:
    """The create_host_config arguments of the task's container options; what a task leaves out is left out
    (the engine's default)."""
    out: dict = {}
    if spec.volumes:
        out["mounts"] = [engine_mount(m) for m in spec.volumes]
    for key in ("read_only", "init"):
        if getattr(spec, key) is not None:
            out[key] = bool(getattr(spec, key))
    if spec.cap_add:
        out["cap_add"] = list(spec.cap_add)
    if spec.cap_drop:
        out["cap_drop"] = list(spec.cap_drop)
    if spec.sysctls:
        out["sysctls"] = dict(spec.sysctls)
    if spec.ulimits:
        out["ulimits"] = [docker.types.Ulimit(name=u["name"], soft=u["soft"], hard=u["hard"]) for u in spec.ulimits]
    if spec.dns_options:
        out["dns_opt"] = list(spec.dns_options)
    if spec.hosts:
        out["extra_hosts"] = [f"{host}:{ip}" for host, ip in spec.hosts.items()]
    if spec.groups:
        out["group_add"] = list(spec.groups)
    return out


def log_config(spec: ContainerSpec) -> dict:
    """The container's LogConfig: the task's driver and options, else json-file rotated at LOG_DEFAULTS."""
    driver = spec.log_driver or "json-file"
    options = dict(spec.log_options or {})
    if driver in ("json-file", "local"):
        for key, value in LOG_DEFAULTS.items():
            options.setdefault(key, value)
    return {"Type": driver, "Config": options}
