"""The swarm's Raft and dispatcher settings (Docker's `Raft` and `Dispatcher` of the swarm spec), as pysyncobj
settings. They live in the cluster record's spec (written through Raft by `swarm init` / `swarm update`); every
manager's RaftStore applies them to its running replica within a second (pysyncobj reads these attributes of
its conf at every use, so no restart is needed).

Units (Docker's names, swarmctl's lengths):
* a tick is TICK seconds (50 ms; swarmkit's tick is 1 s, so Docker's defaults 10/1 mean 0.5 s and 50 ms here).
* heartbeat_tick: ticks between the leader's append-entries (heartbeat) messages -> appendEntriesPeriod.
* election_tick: ticks without a leader before a follower stands for election -> raftMinTimeout; each election
  deadline is drawn between that and ELECTION_SPREAD times it (raftMaxTimeout). Unset, the timeouts follow the
  cluster's size (state/raft.py ELECTION_TIMEOUTS: 5 ticks, 12 from 200 nodes on).
* snapshot_interval: log entries between two compactions (snapshots) -> logCompactionMinEntries
  (a replica also compacts every logCompactionMinTime, 10 minutes, if anything was appended).
* keep_old_snapshots and log_entries_for_slow_followers: pysyncobj keeps exactly one snapshot and drops the log up
  to it when it compacts (a follower behind it is sent the snapshot), so only 0 describes it; other values are
  refused rather than stored without effect.
* dispatcher_heartbeat_period (seconds): how often every node heartbeats; unset, each daemon's own
  `--heartbeat-period` (default 5 s). The leader tells the nodes in its heartbeat answers.
"""

from __future__ import annotations

TICK = 0.05  # seconds; the default appendEntriesPeriod
DEFAULT_ELECTION_TICK = 5  # raftMinTimeout 0.25 s of a small cluster
ELECTION_SPREAD = 2.4  # raftMaxTimeout / raftMinTimeout (0.25/0.6 by default)

# key: (lowest, highest, kind) -- the spec's keys, the API's names
RANGES = {
    "heartbeat_tick": (1, 20, int),             # 50 ms .. 1 s
    "election_tick": (2, 400, int),             # 100 ms .. 20 s
    "snapshot_interval": (100, 10_000_000, int),
    "keep_old_snapshots": (0, 0, int),
    "log_entries_for_slow_followers": (0, 0, int),
    "dispatcher_heartbeat_period": (0.5, 3600, float),
}
RAFT_KEYS = ("election_tick", "heartbeat_tick", "snapshot_interval", "keep_old_snapshots",
             "log_entries_for_slow_followers")
KEYS = RAFT_KEYS + ("dispatcher_heartbeat_period",)

NOT_SUPPORTED = {
    "keep_old_snapshots": "swarmctl keeps only the latest Raft snapshot (pysyncobj writes one file)",
    "log_entries_for_slow_followers": "pysyncobj drops the whole log up to a new snapshot and sends a follower "
                                      "that is behind it the snapshot",
}


class SettingError(ValueError):
    """A one-line message naming the setting and its range."""


def check(settings: dict, current: dict | None = None, cross: bool = True) -> dict:
    """The settings given (keys of KEYS, values not None), checked; `current` (the cluster's spec) supplies the
    tick that is not given for the election_tick > heartbeat_tick rule (cross=False: a client that does not know
    the swarm's leaves that rule to the server). Raises SettingError."""
    out = {}
    for key, value in settings.items():
        if value is None:
            continue
        if key not in RANGES:
            raise SettingError(f"unknown swarm setting {key!r}")
        low, high, kind = RANGES[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise SettingError(f"invalid {key} {value!r}: expected a {'whole ' if kind is int else ''}number")
        if low == high and value != low:
            raise SettingError(f"invalid {key} {value!r}: only {low} is supported: {NOT_SUPPORTED[key]}")
        if not low <= value <= high:
            raise SettingError(f"invalid {key} {value!r}: it must be between {low} and {high}")
        out[key] = kind(value)
    merged = dict((current or {}), **out)
    election, heartbeat = merged.get("election_tick"), merged.get("heartbeat_tick") or 1
    if cross and ("election_tick" in out or "heartbeat_tick" in out) and (election or DEFAULT_ELECTION_TICK) <= heartbeat:
        if "election_tick" in out:
            raise SettingError(f"invalid election_tick {election}: it must be greater than heartbeat_tick "
                               f"({heartbeat})")
        unset = " (unset: %d); set election_tick too" % DEFAULT_ELECTION_TICK if election is None else ""
        raise SettingError(f"invalid heartbeat_tick {heartbeat}: it must be less than election_tick "
                           f"({election or DEFAULT_ELECTION_TICK}){unset}")
    return out


def conf_values(spec: dict, scaled: tuple[float, float], default_period: float = TICK) -> dict:
    """The pysyncobj conf attributes the spec asks for: raftMinTimeout, raftMaxTimeout, appendEntriesPeriod and,
    when set, logCompactionMinEntries. `scaled` is the (min, max) election timeouts for the cluster's size,
    used while election_tick is unset."""
    spec = spec or {}
    values = {}
    if spec.get("election_tick"):
        low = round(spec["election_tick"] * TICK, 6)
        values["raftMinTimeout"], values["raftMaxTimeout"] = low, round(low * ELECTION_SPREAD, 6)
    else:
        values["raftMinTimeout"], values["raftMaxTimeout"] = scaled
    values["appendEntriesPeriod"] = (round(spec["heartbeat_tick"] * TICK, 6) if spec.get("heartbeat_tick")
                                     else default_period)
    if spec.get("snapshot_interval"):
        values["logCompactionMinEntries"] = int(spec["snapshot_interval"])
    return values


def effective(conf) -> dict:
    """What a running replica uses, in the settings' own terms and pysyncobj's (for `info`)."""
    return {"tick": TICK, "election_timeout": [conf.raftMinTimeout, conf.raftMaxTimeout],
            "heartbeat_period": conf.appendEntriesPeriod, "snapshot_interval": conf.logCompactionMinEntries,
            "snapshot_min_time": conf.logCompactionMinTime,
            "election_tick": round(conf.raftMinTimeout / TICK, 3),
            "heartbeat_tick": round(conf.appendEntriesPeriod / TICK, 3)}
