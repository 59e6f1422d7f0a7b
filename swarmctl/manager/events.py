"""Docker-shaped events from the store's applied changes, in Raft order (`swarmctl events`, GET /v1/events).

The state machine tells its watchers each applied change with the new record (the old one for a removal). The
hub keeps a shadow of the previous version of every record (references only: records are immutable values, so
this costs one dict entry per record), which gives the `.old` half of Docker's attributes without touching the
state machine. Seeding the shadow and registering the watch happen under the machine's lock, so no change is
missed or seen twice. A bounded history (HISTORY events, and at most HISTORY_SECONDS old) answers `--since`.

Event shape, as Docker's (moby api/types/events.Message): {"Type", "Action", "Actor": {"ID", "Attributes"},
"scope": "swarm", "time", "timeNano"}, plus swarmctl's "index" (the Raft index that applied it).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time

HISTORY = 10000          # events kept for --since
HISTORY_SECONDS = 900.0  # and no older than this
QUEUE_LIMIT = 20000      # a subscriber this far behind is cut off (its stream ends with an error line)

TYPES = ("service", "node", "task", "secret", "config", "cluster")
ACTIONS = ("create", "update", "remove")
FILTERS = ("type", "event", "service", "node", "secret", "config", "scope")


def _get(record, *path):
    node = record
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _pair(attrs: dict, name: str, old, new, action: str) -> None:
    """name.old / name.new when the value changed (Docker's rule); on create only name.new."""
    if action == "create":
        if new is not None:
            attrs[f"{name}.new"] = str(new)
        return
    if action == "update" and old != new:
        if old is not None:
            attrs[f"{name}.old"] = str(old)
        if new is not None:
            attrs[f"{name}.new"] = str(new)


def describe(action: str, kind: str, record_id: str, old: dict | None, new: dict | None) -> dict:
    """The attributes of one change (action create|update|remove; new is None for a removal)."""
    current = new if new is not None else old or {}
    attrs: dict[str, str] = {}
    if kind == "service":
        attrs["name"] = str(_get(current, "spec", "name") or "")
        _pair(attrs, "image", _get(old, "spec", "task", "image"), _get(new, "spec", "task", "image"), action)
        _pair(attrs, "replicas", _get(old, "spec", "replicas"), _get(new, "spec", "replicas"), action)
        _pair(attrs, "updatestate", _get(old, "update_status", "state"), _get(new, "update_status", "state"),
              action)
    elif kind == "node":
        attrs["name"] = str(_get(current, "description", "hostname") or "")
        _pair(attrs, "state", _get(old, "status", "state"), _get(new, "status", "state"), action)
        _pair(attrs, "availability", _get(old, "spec", "availability"), _get(new, "spec", "availability"), action)
        _pair(attrs, "role", _get(old, "spec", "role"), _get(new, "spec", "role"), action)
    elif kind == "task":
        slot = current.get("slot")
        attrs["name"] = f"{current.get('service_name')}.{slot if slot is not None else current.get('node_id')}"
        attrs["service.name"] = str(current.get("service_name") or "")
        attrs["service.id"] = str(current.get("service_id") or "")
        if current.get("node_id"):
            attrs["node.id"] = str(current["node_id"])
        _pair(attrs, "state", _get(old, "status", "state"), _get(new, "status", "state"), action)
        _pair(attrs, "desiredstate", _get(old, "desired_state"), _get(new, "desired_state"), action)
    elif kind in ("secret", "config"):
        attrs["name"] = str(_get(current, "spec", "name") or current.get("name") or "")
    elif kind == "cluster":
        attrs["name"] = str(_get(current, "spec", "name") or "")
    return attrs


def make_event(index: int, action: str, kind: str, record_id: str, old, new, now: float | None = None) -> dict:
    if action == "remove" or new is None:
        stamp = now if now is not None else time.time()
    else:
        stamp = new.get("updated_at") or (now if now is not None else time.time())
    nano = int(stamp * 1e9)
    return {"Type": kind, "Action": action, "Actor": {"ID": record_id, "Attributes": describe(
        action, kind, record_id, old, new)}, "scope": "swarm", "time": nano // 1_000_000_000, "timeNano": nano,
            "index": index}


def parse_filters(pairs: dict[str, list[str]]) -> dict[str, set[str]]:
    """Check filter names and values; ValueError with Docker's message on a bad one."""
    out: dict[str, set[str]] = {}
    for key, values in pairs.items():
        if key not in FILTERS:
            raise ValueError(f"invalid filter '{key}'")
        values = {str(v) for v in values}
        if key == "type":
            bad = values - set(TYPES)
            if bad:
                raise ValueError(f"invalid filter 'type={sorted(bad)[0]}': expected one of {', '.join(TYPES)}")
        if key == "event":
            bad = values - set(ACTIONS)
            if bad:
                raise ValueError(f"invalid filter 'event={sorted(bad)[0]}': expected one of {', '.join(ACTIONS)}")
        out[key] = values
    return out


def matches(event: dict, filters: dict[str, set[str]], names: dict | None = None) -> bool:
    """Docker's rules: values of one key are OR'ed, keys AND'ed. `service` matches the service's events and its
    tasks' (by name or id); `node` a node's events and the tasks on it (by hostname or id; `names` maps node ids
    to hostnames for tasks)."""
    kind, attrs, actor = event["Type"], event["Actor"]["Attributes"], event["Actor"]["ID"]
    if "type" in filters and kind not in filters["type"]:
        return False
    if "event" in filters and event["Action"] not in filters["event"]:
        return False
    if "scope" in filters and event.get("scope") not in filters["scope"]:
        return False
    for key in ("secret", "config"):
        if key in filters and not (kind == key and (actor in filters[key] or attrs.get("name") in filters[key])):
            return False
    if "service" in filters:
        wanted = filters["service"]
        if kind == "service":
            ok = actor in wanted or attrs.get("name") in wanted
        elif kind == "task":
            ok = attrs.get("service.name") in wanted or attrs.get("service.id") in wanted
        else:
            ok = False
        if not ok:
            return False
    if "node" in filters:
        wanted = filters["node"]
        if kind == "node":
            ok = actor in wanted or attrs.get("name") in wanted
        elif kind == "task":
            node_id = attrs.get("node.id")
            ok = node_id in wanted or (names or {}).get(node_id) in wanted
        else:
            ok = False
        if not ok:
            return False
    return True


class Change:
    """One applied change as the apply thread saw it: kept as is (a few references), and turned into Docker's
    event shape only when someone reads it, so the apply thread pays about a microsecond per change."""

    __slots__ = ("stamp", "index", "action", "kind", "id", "old", "new", "_event")

    def __init__(self, stamp, index, action, kind, record_id, old, new):
        self.stamp, self.index, self.action, self.kind, self.id = stamp, index, action, kind, record_id
        self.old, self.new = old, new
        self._event = None

    def event(self) -> dict:
        if self._event is None:
            self._event = make_event(self.index, self.action, self.kind, self.id, self.old, self.new, self.stamp)
        return self._event


class EventHub:
    """Turns the store's changes into events, keeps the history, and feeds subscribers on the event loop."""

    def __init__(self, store, history: int = HISTORY, history_seconds: float = HISTORY_SECONDS):
        self.store = store
        self.history: collections.deque = collections.deque(maxlen=history)
        self.history_seconds = history_seconds
        self.metrics = None  # swarmctl.node.metrics.Metrics: task scheduling delays
        self._lock = threading.Lock()
        self._shadow: dict[tuple[str, str], dict] = {}
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self._cancel = None

    def start(self) -> None:
        self._shadow, self._cancel = self.store.watch_with_records(self._on_events)  # seed and watch: one step

    def stop(self) -> None:
        cancel, self._cancel = self._cancel, None
        if cancel is not None:
            cancel()
        with self._lock:
            for loop, queue in self._subscribers:
                loop.call_soon_threadsafe(queue.put_nowait, None)
            self._subscribers = []

    def _on_events(self, index: int, events) -> None:
        """On the apply thread, under the machine's lock."""
        if events and events[0][0] == "reset":
            self._shadow = self.store.records()
            return
        out = []
        now = time.time()
        for action, kind, record_id, record in events:
            key = (kind, record_id)
            if action == "delete":
                old = self._shadow.pop(key, record)
                out.append(Change(now, index, "remove", kind, record_id, old, None))
                continue
            old = self._shadow.get(key)
            self._shadow[key] = record
            out.append(Change(record.get("updated_at") or now, index, action, kind, record_id, old, record))
            if kind == "task" and self.metrics is not None:
                try:
                    self.metrics.task_changed(old, record)
                except Exception:
                    pass
        if out:
            self._publish(out)

    def _publish(self, batch: list[dict]) -> None:
        with self._lock:
            self.history.extend(batch)
            horizon = time.time() - self.history_seconds
            while self.history and self.history[0].stamp < horizon:
                self.history.popleft()
            for loop, queue in self._subscribers:
                try:
                    loop.call_soon_threadsafe(_offer, queue, batch)
                except RuntimeError:  # that loop is closed
                    pass

    def subscribe(self, since: float | None) -> tuple[list[Change], asyncio.Queue]:
        """The history since a time (None: none) and a queue of the batches (lists of Change) applied after it,
        atomically."""
        queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        with self._lock:
            past = [] if since is None else [c for c in self.history if c.stamp >= since]
            self._subscribers.append((loop, queue))
        return past, queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers = [(lp, q) for lp, q in self._subscribers if q is not queue]


def _offer(queue: asyncio.Queue, batch) -> None:
    if queue.qsize() >= QUEUE_LIMIT:
        queue.put_nowait(OVERFLOW)
    else:
        queue.put_nowait(batch)


OVERFLOW = "overflow"
