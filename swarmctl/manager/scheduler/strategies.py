"""Placement strategies, with classic Docker Swarm's semantics."""

from __future__ import annotations

import random

from swarmctl.manager.scheduler.nodeinfo import NodeInfo


def spread(task: dict, nodes: list[NodeInfo]) -> NodeInfo:
    """The least loaded node: reserved share, then this service's tasks, then all tasks."""
    sid = task["service_id"]
    return min(nodes, key=lambda n: (round(n.share(), 6), n.service_tasks.get(sid, 0), n.tasks, n.id))


def binpack(task: dict, nodes: list[NodeInfo]) -> NodeInfo:
    """The most loaded node that still fits, so nodes fill up one after another."""
    return min(nodes, key=lambda n: (-round(n.share(), 6), -n.tasks, n.id))


def random_choice(task: dict, nodes: list[NodeInfo]) -> NodeInfo:
    return random.choice(nodes)


STRATEGIES = {"spread": spread, "binpack": binpack, "random": random_choice}
