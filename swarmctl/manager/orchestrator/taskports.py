"""Task host ports: every task of a service with published ports gets, per published target, a host port
unique across the cluster (all tasks share the host's network: there are no bridge or overlay networks), from
the cluster's `task_port_range` (default 20000-29999, `swarm update --task-port-range`). Host-mode ports are
the target port itself; the scheduler's HostPortFilter keeps two such tasks off one node.

A task's ports are written into its record when the orchestrator creates it: task["ports"] is a list of
{"target": 80, "protocol": "tcp", "port": 20001, "mode": "ingress", "published": 8080}. The same target over
tcp and udp gets the same host port (a DNS server listens on both). A port is free again once its task has
ended; the allocator goes round the range from where it last stopped, so a port just freed is not handed out
again at once (a late client of the old task must not reach the new one).
"""

from __future__ import annotations

import logging

from swarmctl.mesh.ports import DEFAULT_TASK_PORTS
from swarmctl.state.records import is_terminal

log = logging.getLogger(__name__)


def port_range(cluster: dict | None) -> tuple[int, int]:
    value = ((cluster or {}).get("spec") or {}).get("task_port_range")
    return (int(value[0]), int(value[1])) if value else DEFAULT_TASK_PORTS


def endpoint_ports(service: dict) -> list[dict]:
    return ((service.get("spec") or {}).get("endpoint") or {}).get("ports") or []


def used_ports(tasks) -> set[int]:
    """Host ports held by tasks that have not ended (a task shutting down still listens)."""
    used = set()
    for task in tasks:
        if task.get("ports") and not is_terminal(task["status"]["state"]):
            used.update(p["port"] for p in task["ports"] if p["mode"] == "ingress")
    return used


class TaskPortAllocator:
    def __init__(self):
        self.cursor: int | None = None

    def assign(self, ops: list[dict], services: dict[str, dict], all_tasks, cluster: dict | None) -> int:
        """Give the tasks these ops create their host ports; `all_tasks()` lists every task (read only when
        some new task needs a port). Returns how many tasks got none because the range is full."""
        creates = [op["record"] for op in ops if op["op"] == "create" and op["kind"] == "task"
                   and endpoint_ports(services.get(op["record"]["service_id"]) or {})]
        if not creates:
            return 0
        low, high = port_range(cluster)
        used = used_ports(all_tasks())
        size = high - low + 1
        cursor = self.cursor if self.cursor is not None and low <= self.cursor <= high else low
        starved = 0
        for task in creates:
            chosen: dict[int, int] = {}  # target -> host port
            ports = []
            for port in endpoint_ports(services[task["service_id"]]):
                target = port["target_port"]
                if port["publish_mode"] == "host":
                    host = target
                elif target in chosen:
                    host = chosen[target]
                else:
                    host = None
                    for _ in range(size):
                        candidate, cursor = cursor, (cursor + 1 - low) % size + low
                        if candidate not in used:
                            host = candidate
                            break
                    if host is None:
                        starved += 1
                        log.error("no free task port in %d-%d for %s", low, high, task["service_name"])
                        continue
                    used.add(host)
                    chosen[target] = host
                ports.append({"target": target, "protocol": port["protocol"], "port": host,
                              "mode": port["publish_mode"], "published": port.get("published_port")})
            task["ports"] = ports
        self.cursor = cursor
        return starved
