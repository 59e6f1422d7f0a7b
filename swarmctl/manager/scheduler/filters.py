"""Scheduler filters, in Swarm's order. Each has check (may this node take the task?) and explain
(why n nodes could not), so an unschedulable task says which filter failed on how many nodes."""

from __future__ import annotations

from swarmctl.manager.scheduler import constraints
from swarmctl.manager.scheduler.nodeinfo import NodeInfo, host_keys


def _nodes(n: int) -> str:
    return f"{n} node" if n == 1 else f"{n} nodes"


class ReadyFilter:
    def enabled(self, task: dict) -> bool:
        return True

    def check(self, task: dict, node: NodeInfo) -> bool:
        return node.ready and node.availability == "active"

    def explain(self, n: int) -> str:
        return f"{_nodes(n)} not available for new tasks"


class ResourceFilter:
    """Reservations must fit what the node offers minus what its other tasks reserved."""

    def __init__(self, kind: str):
        self.kind = kind

    def enabled(self, task: dict) -> bool:
        return bool(task["spec"]["resources"]["reservations"].get(self.kind))

    def check(self, task: dict, node: NodeInfo) -> bool:
        want = task["spec"]["resources"]["reservations"].get(self.kind) or 0
        return node.available(self.kind) + 1e-9 >= want

    def explain(self, n: int) -> str:
        return f"insufficient {'memory' if self.kind == 'memory' else 'cpu'} on {_nodes(n)}"


class ConstraintFilter:
    def __init__(self):
        self._cache: dict[tuple, list] = {}

    def _parsed(self, task: dict):
        exprs = tuple(task["spec"]["placement"].get("constraints") or ())
        if exprs not in self._cache:
            self._cache[exprs] = constraints.parse_all(list(exprs))
        return self._cache[exprs]

    def enabled(self, task: dict) -> bool:
        return bool(task["spec"]["placement"].get("constraints"))

    def check(self, task: dict, node: NodeInfo) -> bool:
        return all(c.matches(node.record) for c in self._parsed(task))

    def explain(self, n: int) -> str:
        return f"constraint not satisfied on {_nodes(n)}"


class MaxReplicasFilter:
    def enabled(self, task: dict) -> bool:
        return bool(task["spec"]["placement"].get("max_replicas_per_node"))

    def check(self, task: dict, node: NodeInfo) -> bool:
        return node.service_tasks.get(task["service_id"], 0) < task["spec"]["placement"]["max_replicas_per_node"]

    def explain(self, n: int) -> str:
        return f"max replicas per node limit exceeded on {_nodes(n)}"


class HostPortFilter:
    """swarmkit's HostPortFilter: a host-mode published port can be bound by one task per node."""

    def enabled(self, task: dict) -> bool:
        return bool(host_keys(task))

    def check(self, task: dict, node: NodeInfo) -> bool:
        return node.host_port_free(host_keys(task))

    def explain(self, n: int) -> str:
        return f"host-mode port already in use on {_nodes(n)}"


class Pipeline:
    """Runs the filters in order; remembers how many nodes each one turned away."""

    def __init__(self):
        self.filters = [ReadyFilter(), ResourceFilter("memory"), ResourceFilter("cpus"), ConstraintFilter(),
                        MaxReplicasFilter(), HostPortFilter()]

    def eligible(self, task: dict, nodes: list[NodeInfo]) -> tuple[list[NodeInfo], str]:
        """Nodes that pass every filter, and the reason when there are none."""
        failures: dict[int, int] = {}
        active = [f for f in self.filters if f.enabled(task)]
        result = []
        for node in nodes:
            for i, f in enumerate(active):
                if not f.check(task, node):
                    failures[i] = failures.get(i, 0) + 1
                    break
            else:
                result.append(node)
        if result:
            return result, ""
        if not nodes:
            return [], "no suitable node (no nodes in the swarm can run tasks)"
        reasons = "; ".join(active[i].explain(n) for i, n in sorted(failures.items()))
        return [], f"no suitable node ({reasons})"
