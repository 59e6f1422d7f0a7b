"""Published ports: Docker's `--publish` syntax, the checked endpoint spec, and the PORTS column.

Standard library only: the CLI parses `--publish` with it, the manager checks endpoint specs with it, and
the Ansible module (which imports only the standard library and its own module_utils) repeats its rules,
kept in agreement by tests/unit/plugins/test_publish_agreement.py.

An endpoint spec is {"mode": "vip"|"dnsrr", "ports": [{"protocol": "tcp"|"udp", "target_port": 80,
"published_port": 8080 or None (the leader picks one from 30000-32767), "publish_mode": "ingress"|"host"}]}.
"""

from __future__ import annotations

PROTOCOLS = ("tcp", "udp")
PUBLISH_MODES = ("ingress", "host")
ENDPOINT_MODES = ("vip", "dnsrr")
# swarmkit's dynamic port range for published ports whose number was left out (allocator/portallocator.go)
DYNAMIC_PUBLISHED = (30000, 32767)
# the range from which the leader gives each task its host port per published target
DEFAULT_TASK_PORTS = (20000, 29999)
MAX_PORTS = 64  # published ports of one service


class PortError(ValueError):
    """A published port that cannot be parsed or is out of range; the text is Docker's where it has one."""


def _number(text: str, what: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise PortError(f"invalid {what}: {text!r} is not a port number")
    value = int(text)
    if not 1 <= value <= 65535:
        raise PortError(f"invalid {what} {value}: must be in range 1-65535")
    return value


def parse_publish(text: str) -> dict:
    """One `--publish` value: `published=8080,target=80[,protocol=udp][,mode=host]`, or the short form
    `[PUBLISHED:]TARGET[/PROTOCOL]`. A host IP is refused, as Docker does."""
    text = (text or "").strip()
    if not text:
        raise PortError("invalid publish option: empty")
    if "=" in text:
        port = {"protocol": "tcp", "target_port": None, "published_port": None, "publish_mode": "ingress"}
        for field in text.split(","):
            key, sep, value = field.partition("=")
            key = key.strip().lower()
            if not sep:
                raise PortError(f"invalid field '{field}' must be a key=value pair")
            value = value.strip()
            if key == "protocol":
                if value.lower() not in PROTOCOLS:
                    raise PortError(f"invalid protocol value '{value}': use tcp or udp")
                port["protocol"] = value.lower()
            elif key == "mode":
                if value.lower() not in PUBLISH_MODES:
                    raise PortError(f"invalid publish mode value ({value}): must be either 'ingress' or 'host'")
                port["publish_mode"] = value.lower()
            elif key == "target":
                port["target_port"] = _number(value, "target port")
            elif key == "published":
                port["published_port"] = _number(value, "published port")
            else:
                raise PortError(f"invalid field key '{key}'")
        if port["target_port"] is None:
            raise PortError("missing mandatory field 'target'")
        return port
    spec, _, proto = text.partition("/")
    proto = (proto or "tcp").strip().lower()
    if proto not in PROTOCOLS:
        raise PortError(f"invalid proto: {proto}")
    parts = spec.split(":")
    if len(parts) > 2:
        raise PortError("hostip is not supported")
    if len(parts) == 2:
        published = _number(parts[0], "hostPort") if parts[0].strip() else None
        target = _number(parts[1], "containerPort")
    else:
        published, target = None, _number(parts[0], "containerPort")
    return {"protocol": proto, "target_port": target, "published_port": published, "publish_mode": "ingress"}


def _port_value(value, what: str, optional: bool = False) -> int | None:
    if value in (None, 0) and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise PortError(f"invalid {what} {value!r}: must be in range 1-65535")
    return value


def check_endpoint(endpoint) -> dict:
    """A complete, checked endpoint spec (the defaults filled in); PortError names the first problem."""
    endpoint = endpoint or {}
    if not isinstance(endpoint, dict):
        raise PortError("endpoint must be an object")
    mode = endpoint.get("mode") or "vip"
    if mode not in ENDPOINT_MODES:
        raise PortError(f"invalid endpoint mode {mode!r}: use vip or dnsrr")
    ports = endpoint.get("ports") or []
    if not isinstance(ports, list):
        raise PortError("endpoint ports must be a list")
    if len(ports) > MAX_PORTS:
        raise PortError(f"at most {MAX_PORTS} published ports per service")
    out, seen = [], set()
    for port in ports:
        if not isinstance(port, dict):
            raise PortError("each published port must be an object")
        protocol = (port.get("protocol") or "tcp")
        if protocol not in PROTOCOLS:
            raise PortError(f"invalid protocol value '{protocol}': use tcp or udp")
        publish_mode = port.get("publish_mode") or "ingress"
        if publish_mode not in PUBLISH_MODES:
            raise PortError(f"invalid publish mode value ({publish_mode}): must be either 'ingress' or 'host'")
        target = _port_value(port.get("target_port"), "target port")
        published = _port_value(port.get("published_port"), "published port", optional=True)
        if publish_mode == "host":
            # containers run with the host's network, so a task can only be reached where it listens
            if published is None:
                published = target
            elif published != target:
                raise PortError(f"host-mode port {published} must be the target port {target}: tasks use the "
                                "host's network and listen on their target port")
        if mode == "dnsrr" and publish_mode == "ingress":
            raise PortError("port published with ingress mode can't be used with dnsrr mode")
        if published is not None:
            key = (published, protocol)
            if key in seen:
                raise PortError(f"duplicate published port {published}/{protocol}")
            seen.add(key)
        out.append({"protocol": protocol, "target_port": target, "published_port": published,
                    "publish_mode": publish_mode})
    return {"mode": mode, "ports": out}


def format_ports(endpoint: dict | None) -> str:
    """The PORTS column of `service ls`, as Docker prints it: `*:8080->80/tcp, *:53->53/udp`."""
    parts = []
    for port in (endpoint or {}).get("ports") or []:
        published = port.get("published_port")
        parts.append(f"*:{published if published else ''}->{port['target_port']}/{port.get('protocol') or 'tcp'}")
    return ", ".join(parts)


def port_key(port: dict) -> str:
    """A port as the key of a task's allocated host ports: `80/tcp`."""
    return f"{port['target_port']}/{port.get('protocol') or 'tcp'}"


def publish_rm_matches(port: dict, text: str) -> bool:
    """`--publish-rm 8080`, `--publish-rm 8080/udp` or `--publish-rm published=8080,target=80`: Docker
    removes by published port (and protocol when given)."""
    text = text.strip()
    if "=" in text:
        want = parse_publish(text)
        return port.get("published_port") == want["published_port"] and port["protocol"] == want["protocol"]
    number, _, proto = text.partition("/")
    published = _number(number, "published port")
    return port.get("published_port") == published and (not proto or port["protocol"] == proto.lower())
