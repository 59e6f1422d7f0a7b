"""Checks of a task's container options (mounts, log driver, capabilities, sysctls, ulimits, DNS, hosts, stop
signal, groups), run by services.validate_spec. Messages are one line, with Docker's wording where Docker has one
(moby's volume/mounts validation, opts.ValidateExtraHost, go-units ParseUlimit, signal.ParseSignal)."""

from __future__ import annotations

import ipaddress
import re

from swarmctl.api import limits
from swarmctl.errors import BadRequest

MOUNT_TYPES = ("bind", "volume", "tmpfs")
PROPAGATIONS = ("shared", "slave", "private", "rshared", "rslave", "rprivate")
# go-units' ulimit names
ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack")
# the Linux capabilities Docker knows (moby's caps.GetAllCapabilities), without the CAP_ prefix
CAPABILITIES = frozenset("""CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO
SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE
AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
CHECKPOINT_RESTORE""".split())
# signal names Docker's signal.ParseSignal knows on Linux (without SIG), and SIGRTMIN+n / SIGRTMAX-n
SIGNALS = frozenset("""ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV STKFLT
STOP SYS TERM TRAP TSTP TTIN TTOU UNUSED URG USR1 USR2 VTALRM WINCH XCPU XFSZ""".split())
_SIGNAL_RT = re.compile(r"^RT(MIN(\+([0-9]|1[0-5]))?|MAX(-([0-9]|1[0-4]))?)$")
_SYSCTL = re.compile(r"^[a-zA-Z0-9_]+([./][a-zA-Z0-9_\-]+)*$")
_GROUP = re.compile(r"^[^\s:\x00]+$")


def _strings(value, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadRequest(f"{what} must be a list of non-empty strings")
    return value


def _string_map(value, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k and isinstance(v, str)
                                              for k, v in value.items()):
        raise BadRequest(f"{what} must map non-empty strings to strings")
    return value


def _bool(task: dict, key: str) -> None:
    if task.get(key) is not None and not isinstance(task[key], bool):
        raise BadRequest(f"{key.replace('_', ' ')} must be true, false or null")


def normal_capability(name: str) -> str:
    """Docker's normal form: CAP_ prefixed, upper case; ALL stays ALL."""
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    return upper if upper.startswith("CAP_") else "CAP_" + upper


def check_signal(value: str) -> None:
    text = value.strip().upper()
    if text.isdigit():
        if 1 <= int(text) <= 64:
            return
    else:
        name = text[3:] if text.startswith("SIG") else text
        if name in SIGNALS or _SIGNAL_RT.match(name):
            return
    raise BadRequest(f"Invalid signal: {value}")


def check_mounts(mounts) -> None:
    if mounts is None:
        return
    if not isinstance(mounts, list):
        raise BadRequest("mounts must be a list")
    if len(mounts) > limits.MAX_MOUNTS:
        raise BadRequest(f"a task has at most {limits.MAX_MOUNTS} mounts, not {len(mounts)}")
    targets = set()
    for mount in mounts:
        if not isinstance(mount, dict):
            raise BadRequest("a mount must be an object")
        kind = mount.get("type")
        if kind not in MOUNT_TYPES:
            raise BadRequest(f"invalid mount type {kind!r}: use bind, volume or tmpfs")
        target, source = mount.get("target"), mount.get("source")
        where = f'invalid mount config for type "{kind}"'
        if not target or not isinstance(target, str):
            raise BadRequest(f"{where}: field Target must not be empty")
        if not target.startswith("/"):
            raise BadRequest(f"invalid mount target, must be an absolute path: {target}")
        if target.rstrip("/") in targets:
            raise BadRequest(f"duplicate mount point: {target}")
        targets.add(target.rstrip("/") or "/")
        if source is not None and not isinstance(source, str):
            raise BadRequest(f"{where}: field Source must be a string")
        if kind == "tmpfs" and source:
            raise BadRequest(f"{where}: field Source must not be specified")
        if kind == "bind":
            if not source:
                raise BadRequest(f"{where}: field Source must not be empty")
            if not source.startswith("/"):
                raise BadRequest(f"invalid bind mount source, must be an absolute path: {source}")
        if not isinstance(mount.get("readonly", False), bool):
            raise BadRequest(f"{where}: readonly must be true or false")
        if mount.get("propagation") is not None:
            if kind != "bind":
                raise BadRequest(f"{where}: field BindOptions must not be specified")
            if mount["propagation"] not in PROPAGATIONS:
                raise BadRequest(f"invalid propagation mode: {mount['propagation']}")
        volume_options = [k for k in ("no_copy", "labels", "driver_config") if mount.get(k) is not None]
        if volume_options and kind != "volume":
            raise BadRequest(f"{where}: field VolumeOptions must not be specified")
        if mount.get("no_copy") is not None and not isinstance(mount["no_copy"], bool):
            raise BadRequest(f"{where}: no_copy must be true or false")
        _string_map(mount.get("labels"), "volume labels")
        driver = mount.get("driver_config")
        if driver is not None:
            if not isinstance(driver, dict) or not isinstance(driver.get("name"), str) or not driver["name"]:
                raise BadRequest(f"{where}: driver_config needs a driver name")
            _string_map(driver.get("options"), "volume driver options")
        if kind != "tmpfs" and (mount.get("tmpfs_size") is not None or mount.get("tmpfs_mode") is not None):
            raise BadRequest(f"{where}: field TmpfsOptions must not be specified")
        size = mount.get("tmpfs_size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise BadRequest(f"invalid tmpfs size {size!r}: must be a number of bytes >= 0")
        mode = mount.get("tmpfs_mode")
        if mode is not None and (isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777):
            raise BadRequest(f"invalid tmpfs mode {mode!r}: must be a file mode between 0 and 0o7777")


def check(task: dict) -> None:
    """Refuse the first bad container option of a task spec (BadRequest, one line)."""
    check_mounts(task.get("mounts"))
    log_driver = task.get("log_driver")
    if log_driver is not None:
        if not isinstance(log_driver, dict) or not isinstance(log_driver.get("name"), str) or not log_driver["name"]:
            raise BadRequest("log driver must be an object with a name")
        _string_map(log_driver.get("options"), "log driver options")
    for key in ("read_only", "init", "tty"):
        _bool(task, key)
    for key in ("cap_add", "cap_drop"):
        for cap in _strings(task.get(key), key.replace("_", " ")):
            normal = normal_capability(cap)
            if normal != "ALL" and normal[4:] not in CAPABILITIES:
                raise BadRequest(f'unknown capability: "{normal}"')
    sysctls = _string_map(task.get("sysctls"), "sysctls")
    for key in sysctls:
        if not _SYSCTL.match(key):
            raise BadRequest(f"invalid sysctl name {key!r}")
        if task.get("network_mode") == "host" and (key.startswith("net.") or key.startswith("net/")):
            raise BadRequest(f'sysctl "{key}" not allowed in host network namespace')
    ulimits = task.get("ulimits")
    if ulimits is not None:
        if not isinstance(ulimits, list):
            raise BadRequest("ulimits must be a list")
        seen = set()
        for item in ulimits:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise BadRequest("a ulimit must be an object with name, soft and hard")
            if item["name"] not in ULIMITS:
                raise BadRequest(f"invalid ulimit type: {item['name']}")
            soft, hard = item.get("soft"), item.get("hard")
            if any(isinstance(v, bool) or not isinstance(v, int) for v in (soft, hard)):
                raise BadRequest(f"invalid ulimit {item['name']}: soft and hard must be whole numbers")
            if soft > hard and hard != -1:
                raise BadRequest(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
            if item["name"] in seen:
                raise BadRequest(f"duplicate ulimit {item['name']}")
            seen.add(item["name"])
    for server in _strings(task.get("dns"), "dns"):
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise BadRequest(f"IP address is not correctly formatted: {server}") from None
    for option in _strings(task.get("dns_options"), "dns options"):
        if any(c.isspace() for c in option):
            raise BadRequest(f"invalid dns option {option!r}: no spaces")
    for host, ip in _string_map(task.get("hosts"), "hosts").items():
        if ":" in host or any(c.isspace() for c in host):
            raise BadRequest(f'bad format for add-host: "{host}:{ip}"')
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            if ip != "host-gateway":
                raise BadRequest(f'invalid IP address in add-host: "{ip}"') from None
    if task.get("stop_signal") is not None:
        if not isinstance(task["stop_signal"], str):
            raise BadRequest("stop signal must be a string")
        check_signal(task["stop_signal"])
    for group in _strings(task.get("groups"), "groups"):
        if not _GROUP.match(group):
            raise BadRequest(f"invalid group {group!r}: a group name or id")
