"""What the scheduler knows about a node: its record plus what its tasks already reserve."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class NodeInfo:
    record: dict
    reserved: dict = field(default_factory=lambda: {"cpus": 0.0, "memory": 0.0})
    tasks: int = 0
    service_tasks: dict = field(default_factory=dict)

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
        return float(self.record["description"].get("resources", {}).get(kind) or 0)

    def available(self, kind: str) -> float:
        return self.total(kind) - self.reserved[kind]

    def share(self) -> float:
        """Reserved share of the node, cpu and memory averaged (classic Swarm's load measure)."""
        parts = [self.reserved[k] / self.total(k) for k in ("cpus", "memory") if self.total(k) > 0]
        return sum(parts) / len(parts) if parts else 0.0

    def add(self, task: dict) -> None:
        reservations = task["spec"]["resources"]["reservations"]
        self.reserved["cpus"] += reservations.get("cpus") or 0
        self.reserved["memory"] += reservations.get("memory") or 0
        self.tasks += 1
        self.service_tasks[task["service_id"]] = self.service_tasks.get(task["service_id"], 0) + 1


def build(nodes: list[dict], tasks: list[dict]) -> dict[str, NodeInfo]:
    """NodeInfo for every node, loaded with the tasks placed on it that still hold resources."""
    from swarmctl.state.records import is_terminal
    infos = {n["id"]: NodeInfo(n) for n in nodes}
    for task in tasks:
        info = infos.get(task.get("node_id") or "")
        if info is not None and task["desired_state"] == "running" and not is_terminal(task["status"]["state"]) \
                and task["status"]["state"] != "pending":
            info.add(task)
    return infos
