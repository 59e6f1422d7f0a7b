"""Placement preferences, swarmkit's semantics: `spread` over the values of a node or engine label.

A spec lists them as [{"spread": "node.labels.zone"}, {"spread": "node.labels.rack"}], the first the top
level. The planner builds a tree of groups from every node of the swarm: one level per preference, one branch
per label value (a node without the label, or with an empty value, is in the branch of the empty value), the
nodes at the leaves. Each branch counts the service's tasks on its nodes. A task goes down the tree to the
branch with the fewest tasks, ties broken by label value, skipping branches that no longer have a node that can
take it; in the leaf the service's strategy picks the node. This is what swarmkit's scheduleNTasksOnSubtree
converges on, one task at a time.
"""

from __future__ import annotations

import heapq
import random
from typing import Callable, Optional

from swarmctl.manager.scheduler.nodeinfo import NodeInfo

NODE_LABELS = "node.labels."
ENGINE_LABELS = "engine.labels."


class PreferenceError(ValueError):
    pass


def _text(pref) -> str:
    if isinstance(pref, dict) and len(pref) == 1:
        ((strategy, arg),) = pref.items()
        return f"{strategy}={arg}"
    return str(pref)


def parse(pref) -> tuple[bool, str]:
    """(engine?, label key) of one preference {"spread": "node.labels.KEY"}; PreferenceError says what is wrong."""
    if not isinstance(pref, dict) or len(pref) != 1:
        raise PreferenceError(f"invalid placement preference {_text(pref)!r}: expected one strategy and its "
                              "argument, e.g. {\"spread\": \"node.labels.zone\"}")
    ((strategy, descriptor),) = pref.items()
    if strategy != "spread":
        raise PreferenceError(f"unsupported placement preference {strategy} (only spread is supported)")
    if not isinstance(descriptor, str):
        raise PreferenceError(f"invalid placement preference {_text(pref)!r}: the spread descriptor must be a string")
    for prefix, engine in ((NODE_LABELS, False), (ENGINE_LABELS, True)):
        if descriptor[:len(prefix)].lower() == prefix:  # swarmkit compares the prefix case-insensitively
            key = descriptor[len(prefix):]
            if not key:
                raise PreferenceError(f"invalid placement preference {_text(pref)!r}: missing label name")
            return engine, key
    raise PreferenceError(f"invalid placement preference {_text(pref)!r}: spread over node.labels.KEY or "
                          "engine.labels.KEY")


def parse_all(prefs) -> list[tuple[bool, str]]:
    return [parse(p) for p in prefs or ()]


def value(record: dict, engine: bool, key: str) -> str:
    """The label's value on a node record; "" when the node does not have it."""
    labels = (record["description"].get("engine_labels") if engine else record["spec"].get("labels")) or {}
    return labels.get(key) or ""


class Leaf:
    """The nodes of one group that can take the service's tasks, picked by the strategy."""

    __slots__ = ("tasks", "nodes", "pick")

    def __init__(self):
        self.tasks = 0
        self.nodes: list[NodeInfo] = []
        self.pick: Optional[Callable[[], Optional[NodeInfo]]] = None


class Branch:
    """An inner group: its children as a heap of (service tasks, order, child)."""

    __slots__ = ("tasks", "children", "heap")

    def __init__(self):
        self.tasks = 0
        self.children: dict[str, "Branch | Leaf"] = {}
        self.heap: list = []


def build(infos, parsed: list[tuple[bool, str]], service_id: str, eligible: list[NodeInfo]) -> Branch:
    """The tree of groups over every node in `infos`; only the `eligible` nodes sit in the leaves."""
    root = Branch()
    allowed = {id(n) for n in eligible}
    depth = len(parsed)
    for info in infos:
        count = info.service_tasks.get(service_id, 0)
        group = root
        for level, (engine, key) in enumerate(parsed):
            group.tasks += count
            label = value(info.record, engine, key)
            child = group.children.get(label)
            if child is None:
                child = group.children[label] = Leaf() if level == depth - 1 else Branch()
            group = child
        group.tasks += count
        if id(info) in allowed:
            group.nodes.append(info)
    return root


def _order(branch: Branch) -> None:
    """Fill the heaps: (the service's tasks in the child, its label's rank, child)."""
    for order, label in enumerate(sorted(branch.children)):
        child = branch.children[label]
        if isinstance(child, Branch):
            _order(child)
        branch.heap.append((child.tasks, order, child))
    heapq.heapify(branch.heap)


class Tree:
    """take() places one task: down the branches with the fewest tasks, then the leaf's strategy."""

    def __init__(self, root: Branch, strategy: str, strategy_key, fits, place):
        self.root = root
        self._strategy = strategy
        self._key = strategy_key
        self._fits = fits
        self._place = place

    def take(self) -> Optional[NodeInfo]:
        return self._take(self.root)

    def _take(self, branch: Branch) -> Optional[NodeInfo]:
        heap = branch.heap
        while heap:
            count, order, child = heap[0]
            node = self._take(child) if isinstance(child, Branch) else self._take_leaf(child)
            if node is None:
                heapq.heappop(heap)  # this group has no node left for the service
                continue
            heapq.heapreplace(heap, (count + 1, order, child))
            return node
        return None

    def _take_leaf(self, leaf: Leaf) -> Optional[NodeInfo]:
        if leaf.pick is None:
            leaf.pick = self._random_pick(leaf.nodes) if self._strategy == "random" else self._heap_pick(leaf.nodes)
        return leaf.pick()

    def _heap_pick(self, nodes: list[NodeInfo]):
        key, fits, place = self._key, self._fits, self._place
        heap = [(key(n), n) for n in nodes]  # ids are unique: the node itself is never compared
        heapq.heapify(heap)

        def pick() -> Optional[NodeInfo]:
            if not heap:
                return None
            node = heapq.heappop(heap)[1]
            place(node)
            if fits(node):
                heapq.heappush(heap, (key(node), node))
            return node
        return pick

    def _random_pick(self, nodes: list[NodeInfo]):
        pool, fits, place = list(nodes), self._fits, self._place

        def pick() -> Optional[NodeInfo]:
            if not pool:
                return None
            k = random.randrange(len(pool))
            node = pool[k]
            place(node)
            if not fits(node):
                pool[k] = pool[-1]
                pool.pop()
            return node
        return pick


def tree(infos, prefs: list, service_id: str, eligible: list[NodeInfo], strategy: str, strategy_key, fits,
         place) -> Tree:
    """The planner's tree for one group of tasks (see the module docstring)."""
    root = build(infos, parse_all(prefs), service_id, eligible)
    _order(root)
    return Tree(root, strategy, strategy_key, fits, place)
