"""Placement strategies, with classic Docker Swarm's semantics.

Spread and binpack are orderings: the node with the smallest key wins. The grouped planner keeps a group's
candidates in a heap by that key (`key`); the single-task functions below pick with the same key."""

from __future__ import annotations

import random
from typing import Callable

from swarmctl.manager.scheduler.nodeinfo import NodeInfo


def spread_key(service_id: str) -> Callable[[NodeInfo], tuple]:
    """The least loaded node: reserved share, then this service's tasks, then all tasks, then id."""
    def key(n: NodeInfo) -> tuple:
        return n.rounded_share(), n.service_tasks.get(service_id, 0), n.tasks, n.record["id"]
    return key


def binpack_key(_service_id: str) -> Callable[[NodeInfo], tuple]:
    """The most loaded node that still fits, so nodes fill up one after another."""
    def key(n: NodeInfo) -> tuple:
        return -n.rounded_share(), -n.tasks, n.record["id"]
    return key


KEYS = {"spread": spread_key, "binpack": binpack_key}


def spread(task: dict, nodes: list[NodeInfo]) -> NodeInfo:
    return min(nodes, key=spread_key(task["service_id"]))


def binpack(task: dict, nodes: list[NodeInfo]) -> NodeInfo:
    return min(nodes, key=binpack_key(task["service_id"]))


def random_choice(task: dict, nodes: list[NodeInfo]) -> NodeInfo:
    return random.choice(nodes)


STRATEGIES = {"spread": spread, "binpack": binpack, "random": random_choice}
