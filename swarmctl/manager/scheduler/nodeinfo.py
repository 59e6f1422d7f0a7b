"""What the scheduler knows about a node: its record plus what its tasks already reserve."""

from __future__ import annotations

from dataclasses import dataclass, field

from swarmctl.state.records import is_terminal


@dataclass(slots=True)
class NodeInfo:
    record: dict
    reserved: dict = field(default_factory=lambda: {"cpus": 0.0, "memory": 0.0})
    tasks: int = 0
    service_tasks: dict = field(default_factory=dict)
    # What the node offers, read once from its record (the grouped planner asks for it on every placement).
    total_cpus: float = field(init=False, repr=False, default=0.0)
    total_memory: float = field(init=False, repr=False, default=0.0)
    _rounded: float | None = field(init=False, repr=False, default=None, compare=False)

    def __post_init__(self) -> None:
        resources = self.record["description"].get("resources", {})
        self.total_cpus = float(resources.get("cpus") or 0)
        self.total_memory = float(resources.get("memory") or 0)

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def ready(self) -> bool:
        return self.record["status"]["state"] == "ready"

    @property
    def availability(self) -> str:
        return self.record["spec"]["availability"]

    def total(self, kind: str) -> float:
        return self.total_cpus if kind == "cpus" else self.total_memory

    def available(self, kind: str) -> float:
        return self.total(kind) - self.reserved[kind]

    def share(self) -> float:
        """Reserved share of the node, cpu and memory averaged (classic Swarm's load measure).

        The same float operations as sum(parts) / len(parts), so placements do not depend on how it is
        computed."""
        if self.total_cpus > 0:
            if self.total_memory > 0:
                return (self.reserved["cpus"] / self.total_cpus + self.reserved["memory"] / self.total_memory) / 2
            return self.reserved["cpus"] / self.total_cpus
        if self.total_memory > 0:
            return self.reserved["memory"] / self.total_memory
        return 0.0

    def rounded_share(self) -> float:
        """round(share(), 6), what the strategies order by; kept until the reservations change."""
        if self._rounded is None:
            self._rounded = round(self.share(), 6)
        return self._rounded

    def add(self, task: dict) -> None:
        reservations = task["spec"]["resources"]["reservations"]
        self.place(task["service_id"], reservations.get("cpus") or 0, reservations.get("memory") or 0,
                   host_keys(task))

    def place(self, service_id: str, cpus: float, memory: float, keys: tuple = ()) -> None:
        """Count one more task of a service that reserves cpus and memory (and binds these host ports)."""
        if cpus or memory:
            self.reserved["cpus"] += cpus
            self.reserved["memory"] += memory
            self._rounded = None
        self.tasks += 1
        self.service_tasks[service_id] = self.service_tasks.get(service_id, 0) + 1
        for key in keys:
            self.service_tasks[key] = self.service_tasks.get(key, 0) + 1

    def host_port_free(self, keys: tuple) -> bool:
        return not any(self.service_tasks.get(key) for key in keys)

    def copy(self) -> "NodeInfo":
        """An independent copy a planner may count placements on."""
        return NodeInfo(self.record, dict(self.reserved), self.tasks, dict(self.service_tasks))


def host_keys(task: dict) -> tuple:
    """The host-mode ports a task binds on its node, as keys counted beside the service ids in
    NodeInfo.service_tasks ("host:80/tcp"): two tasks binding one port cannot share a node."""
    ports = task.get("ports")
    if not ports:
        return ()
    return tuple(f"host:{p['port']}/{p['protocol']}" for p in ports if p["mode"] == "host")


def holds_resources(task: dict) -> bool:
    """A task placed on a node that still counts against it: desired running, assigned or later, not ended."""
    state = task["status"]["state"]
    return bool(task.get("node_id")) and task["desired_state"] == "running" and state != "pending" \
        and not is_terminal(state)


def build(nodes: list[dict], tasks: list[dict]) -> dict[str, NodeInfo]:
    """NodeInfo for every node, loaded with the tasks placed on it that still hold resources."""
    infos = {n["id"]: NodeInfo(n) for n in nodes}
    for task in tasks:
        info = infos.get(task.get("node_id") or "")
        if info is not None and task["desired_state"] == "running" and not is_terminal(task["status"]["state"]) \
                and task["status"]["state"] != "pending":
            info.add(task)
    return infos
