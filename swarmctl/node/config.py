"""Daemon settings and address rules.

The management API listens on --listen-addr (default <advertise-addr>:2377). The Raft port is
always the management port + 1 on the advertise address (default 2378); see docs/operations.md.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import shutil
import socket as _socket
import struct
import subprocess
from dataclasses import dataclass, field

DEFAULT_PORT = 2377
DEFAULT_SOCKET = "/run/swarmctl/swarmctl.sock"


class ConfigError(ValueError):
    """A setting is invalid; the message names it."""


# ---- interface names (Docker's --advertise-addr eth0 / --listen-addr eth0:2377) ---------------------------
# A Linux interface name, or an address label of one (`lo:sw71`, as `ip addr add ... label lo:sw71` makes).
INTERFACE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}(:[A-Za-z0-9_.-]{1,14})?$")
_HOST_PORT = re.compile(r"^(?P<host>.*):(?P<port>[0-9]+)$")
SIOCGIFADDR = 0x8915


def split_addr_port(value: str, what: str, default_port: int | None = DEFAULT_PORT) -> tuple[str, int | None]:
    """'IP', 'IP:PORT', '[V6]:PORT', 'IFACE', 'IFACE:PORT' or 'IFACE:LABEL:PORT' -> (host, port): the last
    ':digits' is the port, what is left an IP address or an interface name (resolved by resolve_host)."""
    text = value.strip()
    if not text:
        raise ConfigError(f"invalid {what}: empty")
    try:
        return str(ipaddress.ip_address(text)), default_port  # an IPv6 address without a port
    except ValueError:
        pass
    match = _HOST_PORT.match(text)
    host, port = (match["host"], int(match["port"])) if match else (text, default_port)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ConfigError(f"invalid {what} {value!r}: missing host")
    if port is not None and not 1 <= port <= 65534:
        raise ConfigError(f"invalid {what} {value!r}: port out of range")
    return host, port


def _ip_addr_list() -> list[dict] | None:
    """`ip -j -4 addr show` (every IPv4 address with its interface and label), or None without `ip`."""
    tool = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if os.path.exists(p)), None)
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "-j", "-4", "addr", "show"], capture_output=True, text=True, timeout=5,
                             check=True).stdout
        return json.loads(out or "[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _ioctl_addr(name: str) -> list[str] | None:
    """SIOCGIFADDR: the first IPv4 address of an interface or label; None if there is no such one."""
    with _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return [_socket.inet_ntoa(answer[20:24])]


def interface_addresses(name: str) -> list[str] | None:
    """The IPv4 addresses of interface `name` (all of its labels) or of the address label `name`; None if
    neither exists, [] for an interface without IPv4 address."""
    listing = _ip_addr_list()
    if listing is None:
        return _ioctl_addr(name)
    found = None
    for link in listing:
        for addr in link.get("addr_info") or []:
            if addr.get("family") != "inet":
                continue
            if link.get("ifname") == name or addr.get("label") == name:
                found = (found or []) + [addr["local"]]
    if found is None and ":" not in name and os.path.exists(os.path.join("/sys/class/net", name)):
        return []
    return found


def resolve_host(host: str, what: str) -> str:
    """An IP address as is; an interface name (or address label) as its IPv4 address, as Docker does. Errors are
    one line: an unknown interface, one without IPv4 address, or one with several (Docker refuses to choose)."""
    try:
        return str(ipaddress.ip_address(host.strip()))
    except ValueError:
        pass
    name = host.strip()
    if not INTERFACE_NAME.match(name):
        raise ConfigError(f"invalid {what} {host!r}: must be an IP address or network interface "
                          "(with optional port number)")
    addrs = interface_addresses(name)
    if addrs is None:
        raise ConfigError(f"invalid {what} {host!r}: no such network interface {name!r} "
                          "(expected an IP address or an interface name)")
    if not addrs:
        raise ConfigError(f"invalid {what} {host!r}: interface {name} has no usable IPv4 address")
    if len(addrs) > 1:
        raise ConfigError(f"invalid {what} {host!r}: could not choose an IP address since this system has multiple "
                          f"addresses on interface {name} ({addrs[0]} and {addrs[1]})")
    return addrs[0]


def parse_ip(value: str, what: str = "address") -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ConfigError(f"invalid {what} {value!r}: expected an IP address such as 127.0.0.11") from None


def parse_host_port(value: str, what: str = "address", default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """'IP:PORT' or 'IP' (default port) -> (ip, port)."""
    text = value.strip()
    if not text:
        raise ConfigError(f"invalid {what}: empty")
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, str(default_port)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"invalid {what} {value!r}: port must be a number") from None
    if not 1 <= port <= 65534:
        raise ConfigError(f"invalid {what} {value!r}: port out of range")
    if not host:
        raise ConfigError(f"invalid {what} {value!r}: missing host")
    return host, port


def parse_label(text: str) -> tuple[str, str]:
    """'KEY=VALUE' (value may be empty) -> (key, value)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(c.isspace() for c in key):
        raise ConfigError(f"invalid label {text!r}: expected KEY=VALUE")
    return key, value


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


def parse_resources(text: str, defaults: dict) -> dict:
    """'cpus=2,memory=4G' -> {"cpus": 2.0, "memory": 4294967296.0}; missing keys keep the defaults."""
    out = dict(defaults)
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        value = value.strip().lower()
        try:
            if key == "cpus" and sep:
                out["cpus"] = float(value)
            elif key == "memory" and sep:
                unit = value[-1] if value and value[-1] in _UNITS else ""
                out["memory"] = float(value[:-1] if unit else value) * _UNITS[unit]
            else:
                raise ValueError
        except ValueError:
            raise ConfigError(f"invalid --resources {text!r}: expected cpus=N,memory=BYTES (e.g. cpus=2,memory=4G)") \
                from None
        if out[key] < 0:
            raise ConfigError(f"invalid --resources {text!r}: {key} must be >= 0")
    return out


def machine_resources() -> dict:
    memory = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return {"cpus": float(os.cpu_count() or 1), "memory": float(memory)}


@dataclass
class DaemonConfig:
    data_dir: str
    advertise_addr: str | None = None
    listen_addr: str | None = None
    socket: str = DEFAULT_SOCKET
    hostname: str = field(default_factory=_socket.gethostname)
    labels: dict[str, str] = field(default_factory=dict)
    docker_host: str | None = None
    heartbeat_period: float = 5.0
    resources: dict = field(default_factory=machine_resources)
    dns_addr: str | None = None  # IP:PORT of the service-discovery DNS; None: the advertise address, port 53; "none": off
    mesh_dataplane: str = "auto"  # nft | proxy | auto (swarmctl/mesh/agent.py start_dataplane)
    web_addr: str | None = None  # IP:PORT of the read-only web view (swarmctl/web); None: off
    web_auth_file: str | None = None  # USER:HASH lines (swarmctl/web/auth.py); required off loopback
    web_users: dict | None = None  # the auth file's users, loaded by validate()
    metrics_addr: str | None = None  # IP:PORT of the Prometheus /metrics endpoint; None: off (as Docker's)

    def files_dir(self) -> str:
        """Where the agent mounts the tmpfs for its tasks' secrets and configs: beside the socket, in the node's
        run dir (/run/swarmctl/swarmctl.files by default), never under the data dir, which is on disk."""
        base, _ext = os.path.splitext(os.path.basename(self.socket))
        return os.path.join(os.path.dirname(os.path.abspath(self.socket)), f"{base or 'swarmctl'}.files")

    def dns_for(self, advertise: str) -> tuple[str, int] | None:
        """Where this node serves DNS."""
        if self.dns_addr == "none":
            return None
        if not self.dns_addr:
            return advertise, 53
        host, port = parse_host_port(self.dns_addr, "--dns-addr", default_port=53)
        return parse_ip(host, "--dns-addr"), port

    def metrics_for(self) -> tuple[str, int] | None:
        """Where this node serves /metrics (None: off)."""
        if not self.metrics_addr:
            return None
        text = self.metrics_addr.strip()
        if ":" not in text.strip("[]") or text.endswith(":"):
            raise ConfigError(f"invalid --metrics-addr {self.metrics_addr!r}: expected IP:PORT such as 127.0.0.1:9323")
        host, port = parse_host_port(text, "--metrics-addr")
        return parse_ip(host, "--metrics-addr"), port

    def validate(self) -> None:
        if self.advertise_addr:
            self.advertise_addr = resolve_host(split_addr_port(self.advertise_addr, "--advertise-addr", None)[0],
                                               "--advertise-addr")
        if self.listen_addr:
            host, port = split_addr_port(self.listen_addr, "--listen-addr")
            self.listen_addr = f"{resolve_host(host, '--listen-addr')}:{port}"
        if self.dns_addr and self.dns_addr != "none":
            self.dns_for("")  # raises ConfigError on a bad value
        if self.metrics_addr:
            self.metrics_for()  # raises ConfigError on a bad value
        if self.mesh_dataplane not in ("auto", "nft", "proxy"):
            raise ConfigError(f"invalid --mesh-dataplane {self.mesh_dataplane!r}: expected auto, nft or proxy")
        if not self.heartbeat_period > 0:
            raise ConfigError("--heartbeat-period must be a positive number of seconds")
        if not self.hostname:
            raise ConfigError("--hostname must not be empty")
        self.validate_web()

    def web_bind(self) -> tuple[str, int] | None:
        """Where the web view listens, or None when it is off."""
        if not self.web_addr:
            return None
        host, port = parse_host_port(self.web_addr, "--web-addr", default_port=8888)
        return parse_ip(host, "--web-addr"), port

    def validate_web(self) -> None:
        """The web view's rule, checked before anything is bound: off loopback, basic auth is required."""
        from swarmctl.web.auth import AuthFileError, load_auth_file
        bind = self.web_bind()
        if bind is None:
            if self.web_auth_file:
                raise ConfigError("--web-auth-file needs --web-addr IP:PORT")
            return
        host, port = bind
        if not ipaddress.ip_address(host).is_loopback and not self.web_auth_file:
            raise ConfigError(f"--web-addr {host}:{port} is not a loopback address: the web view would be open "
                              "to anyone; give --web-auth-file FILE (make a line with `swarmctl web-passwd USER`) "
                              "or bind to 127.0.0.1")
        if self.web_auth_file:
            try:
                self.web_users = load_auth_file(self.web_auth_file)
            except AuthFileError as exc:
                raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class Addresses:
    """Where this node listens and how others reach it."""
    advertise: str
    listen_host: str
    listen_port: int

    @property
    def manager(self) -> str:
        return f"{self.advertise}:{self.listen_port}"

    @property
    def raft(self) -> str:
        return f"{self.advertise}:{self.listen_port + 1}"

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"

    @classmethod
    def resolve(cls, advertise: str | None, listen: str | None) -> "Addresses":
        if listen:
            host, port = split_addr_port(listen, "listen address")
            host = resolve_host(host, "listen address")
        else:
            host, port = None, DEFAULT_PORT
        if advertise:
            # Docker's --advertise-addr eth0:2377 names the port too; the management port is listen's here
            text = advertise
            advertise, adv_port = split_addr_port(text, "advertise address", None)
            advertise = resolve_host(advertise, "advertise address")
            if adv_port is not None and adv_port != port:
                raise ConfigError(f"invalid advertise address {text!r}: the advertised port is the listen port "
                                  f"here ({port}); give the port with the listen address")
        elif host and host not in ("0.0.0.0", "::"):
            advertise = host
        else:
            raise ConfigError("an advertise address is required: use --advertise-addr IP")
        return cls(advertise, host or advertise, port)
