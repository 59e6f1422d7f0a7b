"""The worker: makes the node's containers match the tasks a manager assigned to it.

It long-polls its assignments, compares them with what the runtime runs (containers carry
the node, service, task and slot ids as labels), starts what is missing, stops what should
stop, removes containers no task claims, and reports state changes back in batches. After a
restart it adopts the containers it already runs instead of starting them again. Nothing here
knows Docker: only the runtime interface.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable

from swarmctl.agent import templates
from swarmctl.agent.taskfiles import FilesUnavailable, TaskFiles, container_path
from swarmctl.asyncutil import cancel, wait_event
from swarmctl.manager.sessions import apply_delta
from swarmctl.runtime.base import ContainerSpec, ContainerState, ImageNotFound, Runtime, RuntimeFailure
from swarmctl.state.records import can_move, is_terminal, state_index, task_name

log = logging.getLogger(__name__)

LABEL_NODE = "swarmctl.node.id"
LABEL_SERVICE = "swarmctl.service.id"
LABEL_SERVICE_NAME = "swarmctl.service.name"
LABEL_TASK = "swarmctl.task.id"
LABEL_SLOT = "swarmctl.task.slot"

Call = Callable[..., Awaitable[dict]]


# A task leaving the load-balancing pool keeps running this long before it is told to stop, so that every
# node's mesh has dropped it and no new connection reaches a stopping task (moby's defaultGossipConvergeDelay).
ENDPOINT_DRAIN = 2.0


def port_env(task: dict, node_addr: str | None) -> dict[str, str]:
    """The host ports the leader gave the task: PORT (the first), SWARMCTL_PORT_<TARGET> and SWARMCTL_ADDR_<TARGET>
    (ip:port); a udp port is SWARMCTL_PORT_<TARGET>_UDP when it differs from the tcp one or has none."""
    env: dict[str, str] = {}
    ports = task.get("ports") or []
    if ports:
        env["PORT"] = str(ports[0]["port"])
    tcp_targets = {p["target"] for p in ports if p["protocol"] == "tcp"}
    for port in ports:
        suffix = str(port["target"])
        if port["protocol"] == "udp" and port["target"] in tcp_targets:
            suffix += "_UDP"
        env[f"SWARMCTL_PORT_{suffix}"] = str(port["port"])
        if node_addr:
            env[f"SWARMCTL_ADDR_{suffix}"] = f"{node_addr}:{port['port']}"
    if node_addr:
        env["SWARMCTL_IP"] = node_addr
    return env


def container_spec(task: dict, node_id: str, node_addr: str | None = None, node_hostname: str = "",
                   dns: list[str] | None = None) -> ContainerSpec:
    spec = task["spec"]
    limits = spec["resources"]["limits"]
    labels = {**(spec.get("labels") or {}), LABEL_NODE: node_id, LABEL_SERVICE: task["service_id"], LABEL_SERVICE_NAME: task["service_name"],
              LABEL_TASK: task["id"], LABEL_SLOT: str(task["slot"] if task["slot"] is not None else "")}
    values = templates.context(task, node_id, node_hostname)
    env = {key: templates.expand(value, values) for key, value in (spec.get("env") or {}).items()}
    env.update(port_env(task, node_addr))
    hostname = templates.expand(spec["hostname"], values) if spec.get("hostname") else None
    servers = list(dns or [])  # the node's mesh DNS first, then the task's own nameservers
    servers += [s for s in spec.get("dns") or [] if s not in servers]
    log_driver = spec.get("log_driver") or {}

    def listed(key):
        return list(spec[key]) if spec.get(key) else None

    return ContainerSpec(name=f"{task_name(task)}.{task['id']}", image=spec["image"], command=spec.get("command"),
                         args=spec.get("args"), env=env, labels=labels,
                         cpu_limit=limits.get("cpus") or None, memory_limit=int(limits.get("memory") or 0) or None,
                         network_mode=spec.get("network_mode") or "host", hostname=hostname,
                         dns=servers or None, healthcheck=spec.get("healthcheck"),
                         dns_search=list(spec.get("dns_search") or []) or None, user=spec.get("user") or None,
                         working_dir=spec.get("working_dir") or None,
                         log_driver=log_driver.get("name") or None,
                         log_options=dict(log_driver.get("options") or {}) if log_driver else None,
                         volumes=[dict(m) for m in spec.get("mounts") or []],
                         read_only=spec.get("read_only"), init=spec.get("init"), tty=spec.get("tty"),
                         cap_add=listed("cap_add"), cap_drop=listed("cap_drop"),
                         sysctls=dict(spec["sysctls"]) if spec.get("sysctls") else None,
                         ulimits=[dict(u) for u in spec["ulimits"]] if spec.get("ulimits") else None,
                         dns_options=listed("dns_options"),
                         hosts=dict(spec["hosts"]) if spec.get("hosts") else None,
                         stop_signal=spec.get("stop_signal") or None, groups=listed("groups"))


class Worker:
    def __init__(self, node_id: str, runtime_factory: Callable[[], Runtime], call: Call, poll_wait: float = 10.0,
                 node_addr: str | None = None, node_hostname: str = "", dns: list[str] | None = None,
                 endpoint_drain: float = ENDPOINT_DRAIN, files: TaskFiles | None = None):
        self.node_id = node_id
        self.node_addr = node_addr
        self.node_hostname = node_hostname
        self.dns = dns
        self.endpoint_drain = endpoint_drain
        self.files = files  # where tasks' secrets and configs are written (None: not delivered, as in hollow nodes)
        self._runtime_factory = runtime_factory
        self._runtime: Runtime | None = None
        self._call = call
        self._poll_wait = poll_wait
        self._report_window = 0.02
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="runtime")
        self.assigned: dict[str, dict] = {}
        self._have_assignments = False
        self.full_lists = 0  # full assignment lists received (the rest were deltas)
        self._reported: dict[str, str] = {}
        self._health: dict[str, str] = {}  # task id -> the container health last reported
        self._outbox: dict[str, dict] = {}
        self._busy: set[str] = set()
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._last_failure = ""

    # ---- life --------------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._warm_up(), name="runtime-warm-up"),
                       asyncio.create_task(self._poll_loop(), name="assignments"),
                       asyncio.create_task(self._reconcile_loop(), name="reconcile"),
                       asyncio.create_task(self._report_loop(), name="reports")]

    async def stop(self) -> None:
        await cancel(*self._tasks)
        self._tasks = []
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._runtime is not None:
            self._runtime.close()
        if self.files is not None:
            try:
                self.files.close()  # every task's files go, and the tmpfs is unmounted
            except Exception:
                log.exception("removing the task files failed")

    async def _warm_up(self) -> None:
        """Load the runtime and reach the engine now, so the first task does not wait for it."""
        try:
            await self._run(lambda: self.runtime.ping())
        except RuntimeFailure as exc:
            log.warning("container engine not reachable yet: %s", exc)

    async def _run(self, fn, *args):
        if self._runtime is None:
            self._runtime = self._runtime_factory()
        call_async = getattr(self._runtime, "call_async", None)
        if call_async is not None:  # a runtime that runs on the event loop (runtime/simulated.py)
            return await call_async(fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = self._runtime_factory()
        return self._runtime

    # ---- assignments -------------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        since = None
        while True:
            try:
                answer = await self._call("POST", "/v1/session/assignments",
                                          {"since": since, "wait": self._poll_wait, "deltas": True},
                                          timeout=self._poll_wait + 8)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("fetching assignments failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            since = answer["version"]
            window = answer.get("report_window")
            if isinstance(window, (int, float)) and 0 <= window <= 5:
                self._report_window = float(window)
            # a full list, or (from a leader that knows our last sequence) the changes since it
            self.assigned = apply_delta(self.assigned, answer)
            self.full_lists += 1 if answer.get("full", True) else 0
            self._have_assignments = True
            self._wake.set()

    # ---- reconciliation ----------------------------------------------------------------------
    async def _reconcile_loop(self) -> None:
        while True:
            await wait_event(self._wake, 1.0)
            self._wake.clear()
            if not self._have_assignments:
                continue
            try:
                await self.reconcile()
                if self._last_failure:
                    log.info("container runtime reachable again")
                    self._last_failure = ""
            except asyncio.CancelledError:
                raise
            except RuntimeFailure as exc:
                # said once per distinct failure: a node without an engine (a drained manager) retries every
                # second and would otherwise fill its log
                (log.debug if str(exc) == self._last_failure else log.warning)("container runtime: %s", exc)
                self._last_failure = str(exc)
                for task in self.assigned.values():
                    if task["desired_state"] == "running" and state_index(self._state(task)) < state_index("running"):
                        self._report(task, "rejected", err=str(exc), message="container runtime unavailable")
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("reconcile failed")
                await asyncio.sleep(1.0)

    def _state(self, task: dict) -> str:
        reported = self._reported.get(task["id"])
        current = task["status"]["state"]
        if reported and state_index(reported) > state_index(current):
            return reported
        return current

    async def reconcile(self) -> None:
        # tasks with an action under way while the list is taken may be missing from it or stale
        in_flight = set(self._busy)
        containers = await self._run(self.runtime.list, {LABEL_NODE: self.node_id})
        in_flight |= self._busy
        by_task: dict[str, ContainerState] = {}
        for c in containers:
            by_task.setdefault(c.labels.get(LABEL_TASK, ""), c)
        for task in list(self.assigned.values()):
            if task["id"] not in in_flight:
                self._reconcile_task(task, by_task.get(task["id"]))
        for task_id, container in by_task.items():
            if task_id not in self.assigned and task_id not in in_flight:
                self._spawn(task_id, self._remove(container))
        if self.files is not None:
            for task_id in self.files.tasks():  # files of tasks that ended, or that this node no longer runs
                task = self.assigned.get(task_id)
                if task_id not in in_flight and (task is None or is_terminal(self._state(task))
                                                 or task["desired_state"] != "running"):
                    self.files.remove(task_id)
        for task_id in list(self._reported):
            if task_id not in self.assigned and task_id not in by_task:
                self._reported.pop(task_id, None)
                self._health.pop(task_id, None)

    def _reconcile_task(self, task: dict, container: ContainerState | None) -> None:
        state = self._state(task)
        if task["desired_state"] != "running":
            if not is_terminal(state):
                self._spawn(task["id"], self._shutdown(task, container))
            return
        if is_terminal(state):
            return
        if container is None:
            if state_index(state) >= state_index("running"):
                self._report(task, "failed", err="container disappeared", message="container disappeared")
            else:
                self._spawn(task["id"], self._start(task))
            return
        if container.running:
            if container.health == "unhealthy":
                self._spawn(task["id"], self._unhealthy(task, container))
            elif container.health == "starting":
                if state_index(state) < state_index("starting"):  # adopted after a restart of the agent
                    self._report(task, "starting", container_id=container.id, message="starting", health="starting")
                    self._health[task["id"]] = "starting"
                elif state == "starting" and self._health.get(task["id"]) != "starting":
                    self._report_health(task, "starting")
            elif state_index(state) < state_index("running"):
                if container.health == "healthy":
                    self._spawn(task["id"], self._healthy(task, container))
                else:
                    self._report(task, "running", container_id=container.id, message="started")
        elif container.status in ("exited", "dead"):
            self._report_exit(task, container)
        elif container.status == "created":
            self._spawn(task["id"], self._start(task, container.id))

    def _report_exit(self, task: dict, container: ContainerState) -> None:
        if container.exit_code == 0:
            self._report(task, "complete", exit_code=0, container_id=container.id, message="finished")
        else:
            err = container.error or f"task: non-zero exit ({container.exit_code})"
            self._report(task, "failed", exit_code=container.exit_code, err=err, container_id=container.id,
                         message="failed")

    def _spawn(self, task_id: str, coro) -> None:
        self._busy.add(task_id)

        async def run():
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task %s: runtime action failed", task_id)
            finally:
                self._busy.discard(task_id)
        asyncio.create_task(run())

    async def _start(self, task: dict, container_id: str | None = None) -> None:
        self._report(task, "preparing", message="preparing")
        try:
            # the files first, also for a container created before a restart of the agent: its bind mounts name
            # the same paths (the task's directory, one file per position), which the agent's stop removed
            try:
                mounts = await self._task_files(task)
            except (FilesUnavailable, OSError, ValueError, KeyError) as exc:
                self._report(task, "rejected", err=f"secrets and configs: {exc}", message="task files unavailable")
                return
            except Exception as exc:  # the manager refused or could not be reached: a new task tries again
                self._report(task, "rejected", err=f"fetching secrets and configs failed: {exc}",
                             message="task files unavailable")
                return
            if container_id is None:
                spec = container_spec(task, self.node_id, self.node_addr, self.node_hostname, self.dns)
                spec.mounts = mounts
                container_id = await self._run(self.runtime.create, spec)
            self._report(task, "starting", container_id=container_id, message="starting")
            await self._run(self.runtime.start, container_id)
        except ImageNotFound as exc:
            self._report(task, "rejected", err=str(exc), message="image not found")
            return
        except RuntimeFailure as exc:
            self._report(task, "failed", err=str(exc), message="starting the container failed")
            return
        try:
            started = await self._run(self.runtime.inspect, container_id)
        except RuntimeFailure:
            started = None  # the next reconcile reads its state from the container list
        current = self.assigned.get(task["id"], task)
        if current["desired_state"] == "running" and started is not None:
            if started.health is None:
                self._report(task, "running", container_id=container_id, message="started")
            elif started.health == "starting":  # a healthcheck runs: running once it says healthy (reconcile)
                self._report_health(task, "starting", started.health_output)
        self._wake.set()

    async def _task_files(self, task: dict) -> list[tuple[str, str]]:
        """Fetch the data of the task's secrets and configs from the leader (its dispatcher answers only for a
        task assigned to this node), write them into the tmpfs and return the read-only bind mounts."""
        spec = task["spec"]
        refs = [("secret", r) for r in spec.get("secrets") or ()] + [("config", r) for r in spec.get("configs") or ()]
        if not refs or self.files is None:
            return []
        answer = await self._call("POST", "/v1/session/files", {"task_id": task["id"]}, timeout=10)
        data = {(kind, item["id"]): base64.b64decode(item["data"])
                for kind in ("secret", "config") for item in answer.get(f"{kind}s") or ()}
        files = []
        for index, (kind, ref) in enumerate(refs):
            files.append({"name": f"{kind}-{index}", "data": data[(kind, ref[f"{kind}_id"])], "uid": ref["uid"],
                          "gid": ref["gid"], "mode": ref["mode"], "path": container_path(kind, ref["target"])})
        return self.files.write(task["id"], files)  # a few small files on a tmpfs: no need for a thread

    async def _health_output(self, container: ContainerState) -> str:
        """The last check's output: only an inspect has it (the container list gives just the health)."""
        try:
            state = await self._run(self.runtime.inspect, container.id)
        except RuntimeFailure:
            return ""
        return state.health_output if state is not None else ""

    async def _healthy(self, task: dict, container: ContainerState) -> None:
        output = await self._health_output(container)
        self._report(task, "running", container_id=container.id, message="started", health="healthy",
                     health_output=output)
        self._health[task["id"]] = "healthy"

    async def _unhealthy(self, task: dict, container: ContainerState) -> None:
        """Docker's rule for a service task: a container its healthcheck calls unhealthy is stopped and the
        task fails, so the restart policy replaces it."""
        output = await self._health_output(container)
        grace = float(task["spec"].get("stop_grace_period") or 0)
        try:
            await self._run(self.runtime.stop, container.id, grace)
        except RuntimeFailure as exc:
            log.warning("task %s: stopping its unhealthy container failed: %s", task["id"], exc)
        self._report(task, "failed", err="unhealthy container", message="unhealthy container",
                     container_id=container.id, health="unhealthy", health_output=output)
        self._health[task["id"]] = "unhealthy"

    async def _shutdown(self, task: dict, container: ContainerState | None) -> None:
        if container is not None:
            grace = float(task["spec"].get("stop_grace_period") or 0)
            if container.running and any(p["mode"] == "ingress" for p in task.get("ports") or ()):
                # out of the pool since its desired state changed: let every mesh drop it before SIGTERM
                await asyncio.sleep(self.endpoint_drain)
            try:
                if container.running and grace > 0:
                    await self._run(self.runtime.stop, container.id, grace)
                await self._run(self.runtime.remove, container.id, True)  # with no grace: one forced remove
            except RuntimeFailure as exc:
                log.warning("task %s: stopping its container failed: %s", task["id"], exc)
        if self.files is not None:
            self.files.remove(task["id"])
        self._report(task, "shutdown", message="shutdown")

    async def _remove(self, container: ContainerState) -> None:
        try:
            await self._run(self.runtime.remove, container.id, True)
        except RuntimeFailure as exc:
            log.warning("removing container %s failed: %s", container.id, exc)

    async def has_image(self, image: str) -> bool:
        return bool(image) and await self._run(self.runtime.has_image, image)

    async def logs(self, task_id: str, tail: int | None = None) -> list[str]:
        containers = await self._run(self.runtime.list, {LABEL_NODE: self.node_id, LABEL_TASK: task_id})
        if not containers:
            return []
        return await self._run(self.runtime.logs, containers[0].id, tail)

    async def log_entries(self, task_id: str, tail: int | None = None,
                          since: float | None = None) -> list[tuple[int, str]]:
        """The task's container output with the engine's timestamps (ns), oldest first."""
        containers = await self._run(self.runtime.list, {LABEL_NODE: self.node_id, LABEL_TASK: task_id})
        if not containers:
            return []
        return await self._run(self.runtime.log_entries, containers[0].id, tail, since)

    # ---- reports -----------------------------------------------------------------------------
    def _report(self, task: dict, state: str, **fields) -> None:
        if not can_move(self._state(task), state):
            return
        self._reported[task["id"]] = state
        self._outbox[task["id"]] = {"task_id": task["id"], "state": state, **fields}
        self._flush.set()

    def _report_health(self, task: dict, health: str, output: str = "") -> None:
        """A new container health for a task that stays in its state (a starting container whose healthcheck
        runs): the dispatcher takes a report of the same state only for this."""
        state = self._state(task)
        if is_terminal(state):
            return
        update = self._outbox.get(task["id"])
        if update is None or update["state"] != state:
            update = self._outbox[task["id"]] = {"task_id": task["id"], "state": state}
        update.update(health=health, health_output=output)
        self._health[task["id"]] = health
        self._flush.set()

    async def _report_loop(self) -> None:
        while True:
            await self._flush.wait()
            await asyncio.sleep(self._report_window)  # gather a burst of state changes into one report (the
            # dispatcher says how long: longer in a large cluster, Dispatcher.report_window)
            self._flush.clear()
            batch, self._outbox = self._outbox, {}
            if not batch:
                continue
            try:
                await self._call("POST", "/v1/session/status", {"updates": list(batch.values())}, timeout=10)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("reporting task states failed (will retry): %s", exc)
                for task_id, update in batch.items():
                    self._outbox.setdefault(task_id, update)
                await asyncio.sleep(0.5)
                self._flush.set()
