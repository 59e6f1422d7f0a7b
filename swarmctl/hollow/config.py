"""Settings of `swarmctl hollow` and the parsing of its flags; every error is one HollowConfigError line."""

from __future__ import annotations

import math
import re
import socket
from dataclasses import dataclass, field

from swarmctl.cli import units
from swarmctl.node.config import ConfigError, parse_host_port, parse_ip
from swarmctl.security.tokens import TokenError, parse_token

MAX_COUNT = 10_000
DEFAULT_RESOURCES = "cpus=4,memory=8G"
_PREFIX = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,40}[A-Za-z0-9])?$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)([kmgt]?)i?b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


class HollowConfigError(ValueError):
    """A flag of `swarmctl hollow` is invalid; the message names it."""


def parse_count(text: str) -> int:
    value = str(text).strip()
    if not re.fullmatch(r"[+-]?\d+", value) or not 1 <= int(value) <= MAX_COUNT:
        raise HollowConfigError(f"invalid --count {text!r}: expected a whole number from 1 to {MAX_COUNT:,}")
    return int(value)


def parse_duration(text: str, what: str = "--start-latency") -> float:
    """Go-style durations ("200ms", "0.2s", "1m"); a bare number is seconds (cli/units.py's grammar)."""
    try:
        return units.parse_duration(str(text), what)
    except units.UnitError:
        raise HollowConfigError(f"invalid {what} {text!r}: expected a duration such as 0.2s, 200ms or 1m") from None


def parse_fail_rate(text: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise HollowConfigError(f"invalid --fail-rate {text!r}: expected a number from 0 to 1, e.g. 0.05")
    return value


def parse_resources(text: str) -> dict:
    """"cpus=4,memory=8G" -> {"cpus": 4.0, "memory": 8589934592.0}; both keys may be given, each at most once."""
    out: dict[str, float] = {}
    usage = f"invalid --resources {text!r}: expected cpus=N,memory=SIZE (e.g. cpus=4,memory=8G)"
    for part in str(text).split(","):
        key, sep, value = part.strip().partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in ("cpus", "memory") or key in out or not value:
            raise HollowConfigError(usage)
        if key == "cpus":
            try:
                number = float(value)
            except ValueError:
                raise HollowConfigError(usage) from None
        else:
            match = _SIZE.match(value)
            if not match:
                raise HollowConfigError(usage)
            number = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
        if not math.isfinite(number) or number < 0:
            raise HollowConfigError(f"invalid --resources {text!r}: {key} must be a finite number >= 0")
        out[key] = number
    return out


def parse_join(text: str) -> str:
    try:
        host, port = parse_host_port(str(text), "--join address")
        host = parse_ip(host, "--join address")
    except ConfigError as exc:
        raise HollowConfigError(str(exc)) from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_token_flag(text: str) -> str:
    try:
        parse_token(str(text))
    except TokenError as exc:
        raise HollowConfigError(f"--token: {exc}") from None
    return str(text).strip()


def parse_prefix(text: str) -> str:
    if not _PREFIX.match(str(text)):
        raise HollowConfigError(f"invalid --name-prefix {text!r}: letters, digits and '-', at most 42 characters")
    return str(text)


def parse_advertise(text: str) -> str:
    try:
        return parse_ip(str(text), "--advertise-addr")
    except ConfigError as exc:
        raise HollowConfigError(str(exc)) from None


def route_source(remote: str) -> str:
    """The local address this host would use to reach `remote` (no packet is sent)."""
    host, port = parse_host_port(remote)
    host = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect((host, port))
        return sock.getsockname()[0]
    except OSError as exc:
        raise HollowConfigError(f"cannot reach the manager at {remote}: {exc.strerror or exc}") from None
    finally:
        sock.close()


@dataclass
class HollowConfig:
    count: int
    join: str
    token: str
    data_dir: str
    start_latency: float = 0.2
    fail_rate: float = 0.0
    resources: dict = field(default_factory=lambda: parse_resources(DEFAULT_RESOURCES))
    name_prefix: str = "hollow"
    advertise_addr: str | None = None
    heartbeat_period: float = 5.0
    agent_port: int = 0  # the one agent listener of the process (0: any free port, kept in DIR/hollow.json)
    join_concurrency: int = 16
    labels: dict[str, str] = field(default_factory=dict)
    endpoints: bool = False  # follow the endpoint stream (RecordingDataPlane), report in DIR/endpoints.json

    @classmethod
    def from_flags(cls, *, count, join, token, data_dir, start_latency="0.2s", fail_rate="0.0",
                   resources=DEFAULT_RESOURCES, name_prefix="hollow", advertise_addr=None, heartbeat_period="5",
                   agent_port="0", join_concurrency="16", labels=(), endpoints=False) -> "HollowConfig":
        if not str(data_dir or "").strip():
            raise HollowConfigError("--data-dir must not be empty")
        period = parse_duration(heartbeat_period, "--heartbeat-period")
        if not 0 < period <= 3600:
            raise HollowConfigError(f"invalid --heartbeat-period {heartbeat_period!r}: expected more than 0 and at "
                                    "most 1h")
        latency = parse_duration(start_latency)
        if latency > 3600:
            raise HollowConfigError(f"invalid --start-latency {start_latency!r}: at most 1h")
        port_text = str(agent_port).strip()
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise HollowConfigError(f"invalid --agent-port {agent_port!r}: expected a port number (0: any free one)")
        conc_text = str(join_concurrency).strip()
        if not conc_text.isdigit() or not 1 <= int(conc_text) <= 256:
            raise HollowConfigError(f"invalid --join-concurrency {join_concurrency!r}: expected 1 to 256")
        parsed_labels = {}
        for item in labels:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip() or any(c.isspace() for c in key):
                raise HollowConfigError(f"invalid --label {item!r}: expected KEY=VALUE")
            parsed_labels[key] = value
        return cls(count=parse_count(count), join=parse_join(join), token=parse_token_flag(token),
                   data_dir=str(data_dir), start_latency=latency, fail_rate=parse_fail_rate(fail_rate),
                   resources=parse_resources(resources), name_prefix=parse_prefix(name_prefix),
                   advertise_addr=parse_advertise(advertise_addr) if advertise_addr else None,
                   heartbeat_period=period, agent_port=int(port_text), join_concurrency=int(conc_text),
                   labels=parsed_labels, endpoints=bool(endpoints))
