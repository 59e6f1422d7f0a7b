"""Placement constraints, Swarm's syntax: node.id, node.hostname, node.role, node.labels.KEY,
engine.labels.KEY, compared with == or !=."""

from __future__ import annotations

import re
from dataclasses import dataclass

_EXPR = re.compile(r"^\s*([A-Za-z0-9_.\-/]+)\s*(==|!=)\s*(.*?)\s*$")
_FIELDS = ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")


class ConstraintError(ValueError):
    pass


@dataclass(frozen=True)
class Constraint:
    key: str
    equal: bool
    value: str

    def matches(self, node: dict) -> bool:
        actual = _node_value(node, self.key)
        return (actual == self.value) if self.equal else (actual != self.value)


def parse(expr: str) -> Constraint:
    match = _EXPR.match(expr or "")
    if not match:
        raise ConstraintError(f"invalid constraint {expr!r}: expected KEY==VALUE or KEY!=VALUE")
    key, op, value = match.groups()
    if not value:
        raise ConstraintError(f"invalid constraint {expr!r}: missing value")
    if key not in _FIELDS and not (key.startswith("node.labels.") or key.startswith("engine.labels.")):
        raise ConstraintError(f"invalid constraint {expr!r}: unknown key {key!r} (use node.id, node.hostname, "
                              "node.role, node.labels.KEY or engine.labels.KEY)")
    if key.endswith(".labels."):
        raise ConstraintError(f"invalid constraint {expr!r}: missing label name")
    return Constraint(key, op == "==", value)


def parse_all(exprs: list[str]) -> list[Constraint]:
    return [parse(e) for e in exprs or ()]


def _node_value(node: dict, key: str) -> str | None:
    if key == "node.id":
        return node["id"]
    if key == "node.hostname":
        return node["description"]["hostname"]
    if key == "node.role":
        return node["spec"]["role"]
    if key == "node.platform.os":
        return "linux"
    if key == "node.platform.arch":
        return node["description"].get("arch", "x86_64")
    if key.startswith("node.labels."):
        return node["spec"]["labels"].get(key[len("node.labels."):])
    return node["description"].get("engine_labels", {}).get(key[len("engine.labels."):])
