"""Docker's placeholders in `--env` and `--hostname` values: {{.Service.Name}}, {{.Service.ID}}, {{.Task.Name}},
{{.Task.Slot}}, {{.Task.ID}}, {{.Node.ID}} and {{.Node.Hostname}} (Docker also has {{.Service.Labels}} and
{{.Node.Platform...}}; those are not supported and are refused at create).

Docker evaluates these as Go templates. Only field references are allowed in these values, so a small
substitution is all there is to it; a template engine would accept (and run) far more than Docker does.
"""

from __future__ import annotations

import re

_PLACEHOLDER = re.compile(r"\{\{\s*\.([A-Za-z]+)\.([A-Za-z]+)\s*\}\}")
FIELDS = {("Service", "Name"), ("Service", "ID"), ("Task", "Name"), ("Task", "Slot"), ("Task", "ID"),
          ("Node", "ID"), ("Node", "Hostname")}


class TemplateError(ValueError):
    pass


def check(text) -> None:
    """Refuse placeholders that cannot be expanded, with the name of the first one."""
    if not isinstance(text, str) or "{{" not in text:
        return
    for match in _PLACEHOLDER.finditer(text):
        if (match.group(1), match.group(2)) not in FIELDS:
            raise TemplateError(f"template: unknown placeholder {match.group(0)}; use one of "
                                + ", ".join("{{.%s.%s}}" % f for f in sorted(FIELDS)))
    rest = _PLACEHOLDER.sub("", text)
    if "{{" in rest:
        raise TemplateError(f"template: cannot parse {text!r}")


def context(task: dict, node_id: str, node_hostname: str) -> dict:
    suffix = task["slot"] if task.get("slot") is not None else task.get("node_id")
    return {("Service", "Name"): task["service_name"], ("Service", "ID"): task["service_id"],
            ("Task", "Name"): f"{task['service_name']}.{suffix}.{task['id']}",
            ("Task", "Slot"): "" if task.get("slot") is None else str(task["slot"]),
            ("Task", "ID"): task["id"], ("Node", "ID"): node_id, ("Node", "Hostname"): node_hostname}


def expand(text: str, values: dict) -> str:
    if not isinstance(text, str) or "{{" not in text:
        return text
    return _PLACEHOLDER.sub(lambda m: values.get((m.group(1), m.group(2)), m.group(0)), text)
