"""Faults for the fault suite: kill -9 and restart, SIGSTOP and SIGCONT, network partitions with nftables.

Every wait here is bounded. Signals go to the daemons the harness started, by pid, and to no other process.
Network faults live in an nftables table of their own (`inet swarmctl_faults_<pid>`). Its rules match only
the given 127.0.0.x addresses and the daemons' ports. The table is deleted by heal(), by the fixture's
finally, and by an atexit handler. No other table is touched, and the ruleset is never flushed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

from tests.faults.load import info, request, NotSent, Lost


@dataclass
class Event:
    kind: str          # kill, restart, pause, resume, partition, heal
    node: str
    at: float          # time.monotonic()
    detail: dict = field(default_factory=dict)


def raft_addr(daemon) -> str:
    return f"{daemon.ip}:{daemon.port + 1}"


def leader_of(managers: list, timeout: float = 10.0, exclude: tuple = ()) -> object:
    """The leader of these managers, asked through /v1/info, within timeout.

    Accepted only when a majority of them answer, exactly one says raft.is_leader, and every other one
    that answers names it as its leader. So an old leader that has just continued after SIGSTOP, and
    still believes it leads, is not taken for the leader."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        answers = {}
        for d in managers:
            if d.running and d.name not in exclude:
                answer = info(d, timeout=1.0)
                if answer and answer.get("raft"):
                    answers[d.name] = answer["raft"]
        claims = [d for d in managers if answers.get(d.name, {}).get("is_leader")]
        if len(claims) == 1 and len(answers) > len(managers) // 2:
            leader = claims[0]
            if all(a.get("leader") == raft_addr(leader) for a in answers.values()):
                return leader
        last = {name: (a.get("is_leader"), a.get("leader")) for name, a in answers.items()}
        time.sleep(0.05)
    raise AssertionError(f"no leader that all of {[d.name for d in managers]} agree on within {timeout}s "
                         f"(last answers, name: (is_leader, leader): {last})")


def wait_following(daemon, managers: list, timeout: float = 20.0) -> float:
    """Wait until `daemon` answers and follows the same leader as the others, and that leader sees it
    as reachable; returns the seconds it took."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        mine = info(daemon, timeout=1.0)
        leader_addr = ((mine or {}).get("raft") or {}).get("leader")
        if leader_addr:
            leader = next((d for d in managers if d.running and raft_addr(d) == leader_addr), None)
            if leader is not None and _reachable_from(leader, daemon):
                return time.monotonic() - start
        last = mine
        time.sleep(0.05)
    raise AssertionError(f"{daemon.name} did not rejoin within {timeout}s (its last info: {last})\n{daemon.tail()}")


def _reachable_from(leader, daemon) -> bool:
    try:
        status, nodes = request(leader.socket, "GET", "/v1/nodes", timeout=2.0)
    except (NotSent, Lost):
        return False
    if status != 200:
        return False
    for n in nodes:
        if n["description"]["hostname"] == daemon.name:
            return ((n.get("manager_status") or {}).get("reachability")) == "reachable"
    return False


class Nemesis:
    """Faults on a set of manager daemons, with a log of what was done when."""

    def __init__(self, managers: list, load=None):
        self.managers = managers
        self.load = load
        self.events: list[Event] = []

    def _log(self, kind: str, daemon, **detail) -> Event:
        event = Event(kind, daemon.name, time.monotonic(), detail)
        self.events.append(event)
        return event

    def _mark(self, daemon, faulty: bool) -> None:
        if self.load is not None:
            (self.load.faulty.add if faulty else self.load.faulty.discard)(daemon.name)

    def leader(self, timeout: float = 10.0):
        return leader_of(self.managers, timeout)

    # ---- kill -9 and restart -----------------------------------------------------------------
    def kill(self, daemon) -> Event:
        self._mark(daemon, True)
        event = self._log("kill", daemon)
        daemon.kill()  # SIGKILL to the harness's own child, then wait for it
        return event

    def restart(self, daemon, timeout: float = 20.0) -> Event:
        daemon.start(wait=False)
        started = time.monotonic()
        took = wait_following(daemon, self.managers, timeout)
        self._mark(daemon, False)
        return self._log("restart", daemon, rejoin_s=round(time.monotonic() - started, 3), follow_s=round(took, 3))

    # ---- SIGSTOP, SIGCONT --------------------------------------------------------------------
    def pause(self, daemon, seconds: float) -> Event:
        """SIGSTOP the daemon for `seconds`, then SIGCONT; always continued, even if interrupted."""
        self._mark(daemon, True)
        event = self._log("pause", daemon, seconds=seconds)
        daemon.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            daemon.proc.send_signal(signal.SIGCONT)
            self._log("resume", daemon)
            self._mark(daemon, False)
        return event


def nft_available() -> str | None:
    """Why nftables cannot be used here, or None."""
    if shutil.which("nft") is None:
        return "nft is not installed (apt-get install nftables)"
    if os.geteuid() != 0:
        return "nftables rules need root (CAP_NET_ADMIN)"
    return None


class Network:
    """Network faults between daemons on loopback, in an nftables table of the test's own.

    On loopback every connection leaves from 127.0.0.1, whatever address the daemon advertises, so a
    rule cannot tell by address who sends. Each daemon therefore runs with a gid of its own (the
    harness's Daemon.group), and the table's `source` chain rewrites the source of that daemon's
    connections to the daemons' ports into its own address (SNAT), as if each daemon sat on a machine of
    its own. The `cut` chain then drops, on the input hook, every packet of a connection between
    daemons of different groups, both ways, so nothing gets through: connect() hangs and open
    connections go quiet, as on a cut link. Both chains match only these daemons' gids, addresses and ports.

    Create the Network before the daemons start: connections that were open before the table existed
    are not rewritten."""

    def __init__(self, daemons: list, ports: list[int], table: str | None = None):
        reason = nft_available()
        if reason:
            raise RuntimeError(reason)
        self.daemons = list(daemons)
        self.ports = sorted(set(ports))
        self.table = table or f"swarmctl_faults_{os.getpid()}"
        for d in self.daemons:
            assert d.group is not None, f"{d.name} needs a gid of its own (Daemon.group)"
            _check_loopback(d.ip)
        self.cut_groups: list[list[str]] | None = None
        atexit.register(self.close)
        self.close()
        self._nft("-f", "-", stdin=self._table())

    def _nft(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["nft", *args], input=stdin, capture_output=True, text=True, timeout=10)
        if check and proc.returncode != 0:
            raise RuntimeError(f"nft {' '.join(args)} failed: {proc.stderr.strip()}\n{stdin or ''}")
        return proc

    def _set(self, items) -> str:
        return "{ " + ", ".join(str(i) for i in items) + " }"

    def _table(self) -> str:
        ips, ports = self._set(d.ip for d in self.daemons), self._set(self.ports)
        source = "\n".join(f"    meta skgid {d.group} ip daddr {ips} tcp dport {ports} snat ip to {d.ip}"
                           for d in self.daemons)
        return (f"table inet {self.table} {{\n"
                f"  chain source {{\n    type nat hook postrouting priority srcnat; policy accept;\n{source}\n  }}\n"
                f"  chain cut {{\n    type filter hook input priority filter; policy accept;\n  }}\n}}\n")

    def cut_rules(self, groups: list[list[str]]) -> str:
        """Rules that drop every packet of a connection between addresses of different groups.

        They match the connection (conntrack), not the packet: the initiator is the reply tuple's
        destination (its source after SNAT), the responder the original destination. So data flowing
        either way on a connection that either side opened is dropped."""
        ports = self._set(self.ports)
        lines = []
        for a, ga in enumerate(groups):
            for b, gb in enumerate(groups):
                if a != b:
                    lines.append(f"add rule inet {self.table} cut ct reply ip daddr {self._set(ga)} "
                                 f"ct original ip daddr {self._set(gb)} meta l4proto tcp ct original proto-dst {ports} counter drop")
        return "\n".join(lines) + "\n"

    def split(self, *groups) -> float:
        """Cut the links between groups of daemons (or of 127.0.0.x addresses); returns the monotonic time."""
        groups = [[g if isinstance(g, str) else g.ip for g in group] for group in groups]
        for ip in (ip for g in groups for ip in g):
            _check_loopback(ip)
        self._nft("flush", "chain", "inet", self.table, "cut")
        self._nft("-f", "-", stdin=self.cut_rules(groups))
        self.cut_groups = groups
        return time.monotonic()

    def heal(self) -> float:
        if self.exists():
            self._nft("flush", "chain", "inet", self.table, "cut")
        self.cut_groups = None
        return time.monotonic()

    def exists(self) -> bool:
        return self._nft("list", "table", "inet", self.table, check=False).returncode == 0

    def close(self) -> None:
        """Delete the table (idempotent; also run at exit)."""
        if self.exists():
            self._nft("delete", "table", "inet", self.table)
        self.cut_groups = None


def _check_loopback(ip: str) -> None:
    parts = ip.split(".")
    assert len(parts) == 4 and parts[0] == "127" and all(p.isdigit() for p in parts), f"not a loopback address: {ip}"
