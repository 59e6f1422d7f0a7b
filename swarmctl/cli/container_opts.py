"""The container options of `service create` / `service update` (Docker's flags and syntax): --mount, --env-file,
--log-driver/--log-opt, --network, --user, --workdir, --read-only, --init, --tty, --cap-add/--cap-drop, --sysctl,
--ulimit, --dns, --dns-search, --dns-option, --host, --stop-signal, --group, --container-label, and update's
-add/-rm forms. Parsing and the task spec fields they make; service_cmds.task_options, build_create_body and
build_update_body call these. Standard library only.

The server checks the values again (manager/container_options.py); here a bad flag fails before any request,
with Docker's `invalid argument "VALUE" for "--FLAG" flag: REASON` where Docker says so."""

from __future__ import annotations

import argparse
import csv
import ipaddress
import os
import re

from swarmctl.cli.units import UnitError, parse_bytes, parse_key, parse_kv

NETWORKS = ("host", "none")
# Go's strconv.ParseBool
TRUE_WORDS = ("1", "t", "T", "TRUE", "true", "True")
FALSE_WORDS = ("0", "f", "F", "FALSE", "false", "False")
ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack")


def _bad(value: str, flag: str, reason: str) -> UnitError:
    return UnitError(f'invalid argument "{value}" for "{flag}" flag: {reason}')


def add_bool_flag(p, flag: str, help: str, short: str | None = None) -> None:
    """A Go-style bool flag: `--read-only` is true, `--read-only=false` false (never takes the next word,
    so `--read-only IMAGE` keeps its IMAGE)."""
    dest = flag.lstrip("-").replace("-", "_")
    names = [short, flag] if short else [flag]
    p.add_argument(*names, dest=dest, action="store_const", const=True, default=None, help=help + " (=false: off)")
    p.add_argument(*[f"{flag}={w}" for w in TRUE_WORDS], dest=dest, action="store_const", const=True,
                   help=argparse.SUPPRESS)
    p.add_argument(*[f"{flag}={w}" for w in FALSE_WORDS], dest=dest, action="store_const", const=False,
                   help=argparse.SUPPRESS)


def _bool(value: str, text: str, key: str, flag: str) -> bool:
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise _bad(text, flag, f'invalid value for {key}: strconv.ParseBool: parsing "{value}": invalid syntax')


def parse_mount(text: str, flag: str = "--mount") -> dict:
    """Docker's --mount CSV: type=bind|volume|tmpfs (default volume), source|src, target|dst|destination,
    readonly|ro[=BOOL], bind-propagation, volume-nocopy[=BOOL], volume-label=K=V, volume-driver, volume-opt=K=V,
    tmpfs-size (bytes, 64m), tmpfs-mode (octal); the task spec mount (only the keys given, type and target set)."""
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise _bad(text, flag, "invalid CSV") from None
    mount: dict = {"type": "volume", "target": None, "readonly": False}
    volume: dict = {}
    kinds: set = set()
    for field in fields:
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if not sep:
            if key in ("readonly", "ro"):
                mount["readonly"] = True
                continue
            if key == "volume-nocopy":
                volume["no_copy"] = True
                kinds.add("volume")
                continue
            if key == "bind-nonrecursive":
                raise _bad(text, flag, "bind-nonrecursive is not supported")
            raise _bad(text, flag, f"invalid field '{field}' must be a key=value pair")
        if key == "type":
            if value not in ("bind", "volume", "tmpfs"):
                raise _bad(text, flag, f"invalid mount type {value!r}: use bind, volume or tmpfs")
            mount["type"] = value
        elif key in ("source", "src"):
            mount["source"] = value
        elif key in ("target", "dst", "destination"):
            mount["target"] = value
        elif key in ("readonly", "ro"):
            mount["readonly"] = _bool(value, text, key, flag)
        elif key == "consistency":
            pass  # Docker for Mac's, ignored by Linux engines
        elif key == "bind-propagation":
            kinds.add("bind")
            mount["propagation"] = value.lower()
        elif key == "volume-nocopy":
            kinds.add("volume")
            volume["no_copy"] = _bool(value, text, key, flag)
        elif key == "volume-label":
            kinds.add("volume")
            k, sep2, v = value.partition("=")
            if not k:
                raise _bad(text, flag, f"invalid field '{field}': expected volume-label=KEY=VALUE")
            volume.setdefault("labels", {})[k] = v
        elif key == "volume-driver":
            kinds.add("volume")
            volume.setdefault("driver_config", {"name": None, "options": {}})["name"] = value
        elif key == "volume-opt":
            kinds.add("volume")
            k, sep2, v = value.partition("=")
            if not k or not sep2:
                raise _bad(text, flag, f"invalid field '{field}': expected volume-opt=KEY=VALUE")
            volume.setdefault("driver_config", {"name": None, "options": {}})["options"][k] = v
        elif key == "tmpfs-size":
            kinds.add("tmpfs")
            try:
                mount["tmpfs_size"] = parse_bytes(value, "tmpfs-size")
            except UnitError:
                raise _bad(text, flag, f"invalid value for {key}: {value}") from None
        elif key == "tmpfs-mode":
            kinds.add("tmpfs")
            try:
                mount["tmpfs_mode"] = int(value, 8)
            except ValueError:
                raise _bad(text, flag, f"invalid value for {key}: {value}") from None
            if not 0 <= mount["tmpfs_mode"] <= 0o7777:
                raise _bad(text, flag, f"invalid value for {key}: {value}")
        else:
            raise _bad(text, flag, f"unexpected key '{key}' in '{field}'")
    for kind in sorted(kinds):
        if kind != mount["type"]:
            raise _bad(text, flag, f"cannot mix '{kind}-*' options with mount type '{mount['type']}'")
    if not mount["target"]:
        raise _bad(text, flag, "target is required")
    driver = volume.get("driver_config")
    if driver is not None:
        if not driver["name"]:
            driver["name"] = "local"  # volume-opt alone: the default driver's options (Docker's)
        if not driver["options"]:
            driver.pop("options")
    mount.update(volume)
    if mount["type"] == "tmpfs" and mount.get("source"):
        raise _bad(text, flag, 'invalid mount config for type "tmpfs": field Source must not be specified')
    if mount["type"] == "bind" and not mount.get("source"):
        raise _bad(text, flag, 'invalid mount config for type "bind": field Source must not be empty')
    return mount


def read_env_files(paths: list[str]) -> dict[str, str]:
    """Docker's --env-file: KEY=VALUE lines, `#` comments and blank lines skipped, a bare KEY takes the value of
    this environment (left out if unset); files in order, a later one wins."""
    env: dict[str, str] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise UnitError(f"open {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UnitError(f"env file {path} contains invalid utf8 bytes") from None
        for number, raw in enumerate(lines, 1):
            line = raw.lstrip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not key:
                raise UnitError(f"{path}:{number}: no variable name on line '{raw}'")
            if any(c.isspace() for c in key):
                raise UnitError(f"variable '{key}' contains whitespaces")
            if sep:
                env[key] = value
            elif key in os.environ:
                env[key] = os.environ[key]
    return env


def network_mode(names: list[str]) -> str | None:
    """--network NAME (repeatable): host or none; other networks and more than one are refused (the contract's
    texts). None: no --network."""
    names = [n for n in names if n is not None]
    if not names:
        return None
    for name in names:
        if name not in NETWORKS:
            raise UnitError(f'network "{name}" is not available: swarmctl runs tasks on the host\'s network ("host") '
                            'or none ("none"); it has no overlay networks')
    if len(set(names)) > 1:
        raise UnitError("a task has one network here: host or none")
    return names[0]


def parse_ulimit(text: str, flag: str = "--ulimit") -> dict:
    """go-units ParseUlimit: NAME=SOFT[:HARD] (one number: both)."""
    name, sep, limits = (text or "").partition("=")
    if not sep:
        raise _bad(text, flag, f"invalid ulimit argument: {text}")
    if name not in ULIMITS:
        raise _bad(text, flag, f"invalid ulimit type: {name}")
    parts = limits.split(":")
    if len(parts) > 2:
        raise _bad(text, flag, f"too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise _bad(text, flag, f"invalid ulimit argument: {text}") from None
    soft, hard = values[0], values[-1]
    if soft > hard and hard != -1:
        raise _bad(text, flag, f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return {"name": name, "soft": soft, "hard": hard}


def parse_host(text: str, flag: str = "--host") -> tuple[str, str]:
    """Docker's HOST:IP (or HOST=IP) extra host."""
    host, sep, ip = (text or "").partition("=")
    if not sep:
        host, sep, ip = (text or "").partition(":")
    if not sep or not host or not ip:
        raise _bad(text, flag, f'bad format for add-host: "{text}"')
    ip = ip.strip("[]")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        if ip != "host-gateway":
            raise _bad(text, flag, f'invalid IP address in add-host: "{ip}"') from None
    return host, ip


def parse_dns(text: str, flag: str = "--dns") -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise _bad(text, flag, f"{text} is not an ip address") from None
    return text


def capability(name: str) -> str:
    """Docker CLI's normal form of a capability: CAP_NET_ADMIN (ALL stays ALL)."""
    upper = (name or "").strip().upper()
    if not upper:
        raise UnitError("invalid capability: empty")
    if upper == "ALL":
        return upper
    return upper if upper.startswith("CAP_") else "CAP_" + upper


def _unique(items: list) -> list:
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _signal(text: str, flag: str = "--stop-signal") -> str:
    if not text or not text.strip():
        raise _bad(text, flag, "empty signal")
    return text.strip()


def add_create_flags(p) -> None:
    """The flags `service create` has (and update not, or not in this form)."""
    p.add_argument("--mount", action="append", default=[], metavar="MOUNT",
                   help="attach a filesystem mount: type=bind|volume|tmpfs,source=S,target=T[,readonly]"
                        "[,bind-propagation=P][,volume-nocopy][,volume-label=K=V][,volume-driver=D][,volume-opt=K=V]"
                        "[,tmpfs-size=64m][,tmpfs-mode=1777]")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE",
                   help="read environment variables from a file (KEY=VALUE lines; -e wins)")
    p.add_argument("--sysctl", action="append", default=[], metavar="KEY=VALUE", help="a namespaced kernel parameter")
    p.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]", help="a ulimit (nofile=1024:2048)")
    p.add_argument("--dns", action="append", default=[], metavar="IP", help="a DNS server (after the node's mesh DNS)")
    p.add_argument("--dns-search", action="append", default=[], metavar="DOMAIN", help="a DNS search domain")
    p.add_argument("--dns-option", action="append", default=[], metavar="OPTION", help="a resolv.conf option")
    p.add_argument("--host", dest="hosts", action="append", default=[], metavar="HOST:IP",
                   help="a custom host-to-IP mapping in /etc/hosts")
    p.add_argument("--group", action="append", default=[], metavar="GROUP", help="an additional group of the user")
    p.add_argument("--container-label", action="append", default=[], metavar="KEY=VALUE", help="a container label")


def add_update_flags(p) -> None:
    """`service update`'s -add/-rm flags of the container options."""
    p.add_argument("--mount-add", action="append", default=[], metavar="MOUNT",
                   help="add or replace (same target) a mount, --mount's syntax")
    p.add_argument("--mount-rm", action="append", default=[], metavar="TARGET", help="remove the mount at TARGET")
    p.add_argument("--network-add", action="append", default=[], metavar="NETWORK", help="host or none")
    p.add_argument("--network-rm", action="append", default=[], metavar="NETWORK", help="remove a network")
    for flag, metavar, what in (("sysctl", "KEY=VALUE", "a sysctl"), ("ulimit", "NAME=SOFT[:HARD]", "a ulimit"),
                                ("dns", "IP", "a DNS server"), ("dns-search", "DOMAIN", "a DNS search domain"),
                                ("dns-option", "OPTION", "a DNS option"), ("host", "HOST:IP", "a custom host"),
                                ("group", "GROUP", "an additional group"),
                                ("container-label", "KEY=VALUE", "a container label")):
        rm = metavar.split("=")[0].split(":")[0] if flag not in ("dns", "dns-search", "dns-option", "group") else metavar
        p.add_argument(f"--{flag}-add", action="append", default=[], metavar=metavar, help=f"add or update {what}")
        p.add_argument(f"--{flag}-rm", action="append", default=[], metavar=rm, help=f"remove {what}")


def add_shared_flags(p) -> None:
    """Flags of both create and update (set the field they name)."""
    p.add_argument("-u", "--user", metavar="USER[:GROUP]", help="user of the container (names or ids)")
    p.add_argument("-w", "--workdir", metavar="DIR", help="working directory inside the container")
    p.add_argument("--log-driver", metavar="DRIVER", help="logging driver of the containers")
    p.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE", help="logging driver option")
    p.add_argument("--stop-signal", metavar="SIGNAL", help="signal to stop the container (e.g. SIGUSR1, 15)")
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="add a Linux capability")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="drop a Linux capability")
    add_bool_flag(p, "--read-only", "mount the container's root filesystem read-only")
    add_bool_flag(p, "--init", "run an init inside the container that forwards signals and reaps processes")
    add_bool_flag(p, "--tty", "allocate a pseudo-TTY", short="-t")


def shared_options(args) -> dict:
    """The task fields of the shared flags that set a field outright (no reference to the current spec)."""
    task: dict = {}
    if getattr(args, "user", None) is not None:
        task["user"] = args.user
    if getattr(args, "workdir", None) is not None:
        task["working_dir"] = args.workdir
    if getattr(args, "stop_signal", None) is not None:
        task["stop_signal"] = _signal(args.stop_signal)
    for key in ("read_only", "init", "tty"):
        if getattr(args, key, None) is not None:
            task[key] = getattr(args, key)
    return task


def _log_options(items: list[str], flag: str = "--log-opt") -> dict[str, str]:
    return dict(parse_kv(item, flag) for item in items)


def create_options(args) -> dict:
    """The task fields of the container options of `service create`."""
    task = shared_options(args)
    if args.mount:
        mounts = [parse_mount(m) for m in args.mount]
        targets = [m["target"].rstrip("/") for m in mounts]
        for target in targets:
            if targets.count(target) > 1:
                raise UnitError(f"duplicate mount target: {target}")
        task["mounts"] = mounts
    if args.log_driver is not None:
        task["log_driver"] = {"name": args.log_driver, "options": _log_options(args.log_opt)}
    elif args.log_opt:
        raise UnitError("--log-opt needs --log-driver")
    if args.cap_add:
        task["cap_add"] = _unique([capability(c) for c in args.cap_add])
    if args.cap_drop:
        task["cap_drop"] = _unique([capability(c) for c in args.cap_drop])
    if args.sysctl:
        task["sysctls"] = dict(parse_kv(item, "--sysctl") for item in args.sysctl)
    if args.ulimit:
        task["ulimits"] = list({u["name"]: u for u in (parse_ulimit(t) for t in args.ulimit)}.values())
    if args.dns:
        task["dns"] = _unique([parse_dns(d) for d in args.dns])
    if args.dns_search:
        task["dns_search"] = _unique(args.dns_search)
    if args.dns_option:
        task["dns_options"] = _unique(args.dns_option)
    if args.hosts:
        task["hosts"] = dict(parse_host(h) for h in args.hosts)
    if args.group:
        task["groups"] = _unique(args.group)
    if args.container_label:
        task["labels"] = dict(parse_kv(item, "--container-label") for item in args.container_label)
    return task


def _list_update(old: list | None, add: list, remove: list) -> list:
    """Docker's order for list flags: remove, then add (no duplicates)."""
    kept = [x for x in (old or []) if x not in remove]
    return kept + [x for x in _unique(add) if x not in kept]


def update_options(args, old: dict) -> dict:
    """The task fields changed by the container options of `service update`, from the current task spec."""
    task = shared_options(args)
    if args.mount_add or args.mount_rm:
        added = [parse_mount(m, "--mount-add") for m in args.mount_add]
        gone = {t.rstrip("/") or "/" for t in args.mount_rm} | {m["target"].rstrip("/") or "/" for m in added}
        task["mounts"] = [dict(m) for m in old.get("mounts") or []
                          if ((m.get("target") or "").rstrip("/") or "/") not in gone] + added
    if args.log_driver is not None:
        task["log_driver"] = {"name": args.log_driver, "options": _log_options(args.log_opt)}
    elif args.log_opt:
        current = old.get("log_driver") or {"name": "json-file"}  # swarmctl's default driver
        task["log_driver"] = {"name": current["name"],
                              "options": {**(current.get("options") or {}), **_log_options(args.log_opt)}}
    if args.cap_add or args.cap_drop:
        add = _unique([capability(c) for c in args.cap_add])
        drop = _unique([capability(c) for c in args.cap_drop])
        old_add = [capability(c) for c in old.get("cap_add") or []]
        old_drop = [capability(c) for c in old.get("cap_drop") or []]
        # Docker: an added capability leaves the drop list, a dropped one the add list
        task["cap_add"] = _list_update(old_add, add, drop)
        task["cap_drop"] = _list_update(old_drop, drop, add)
    if args.network_add or args.network_rm:
        for name in args.network_add + args.network_rm:
            network_mode([name])
        current = [old.get("network_mode") or "host"]
        if getattr(args, "network", None):
            current = [network_mode(args.network)]
        names = _list_update(current, args.network_add, args.network_rm)
        task["network_mode"] = network_mode(names) or "host"
    if args.sysctl_add or args.sysctl_rm:
        sysctls = dict(old.get("sysctls") or {})
        for key in args.sysctl_rm:
            sysctls.pop(parse_key(key, "--sysctl-rm"), None)
        sysctls.update(parse_kv(item, "--sysctl-add") for item in args.sysctl_add)
        task["sysctls"] = sysctls
    if args.ulimit_add or args.ulimit_rm:
        ulimits = {u["name"]: dict(u) for u in old.get("ulimits") or []}
        for name in args.ulimit_rm:
            ulimits.pop(name.partition("=")[0], None)
        ulimits.update((u["name"], u) for u in (parse_ulimit(t, "--ulimit-add") for t in args.ulimit_add))
        task["ulimits"] = list(ulimits.values())
    if args.dns_add or args.dns_rm:
        task["dns"] = _list_update(old.get("dns"), [parse_dns(d, "--dns-add") for d in args.dns_add], args.dns_rm)
    if args.dns_search_add or args.dns_search_rm:
        task["dns_search"] = _list_update(old.get("dns_search"), args.dns_search_add, args.dns_search_rm)
    if args.dns_option_add or args.dns_option_rm:
        task["dns_options"] = _list_update(old.get("dns_options"), args.dns_option_add, args.dns_option_rm)
    if args.host_add or args.host_rm:
        hosts = dict(old.get("hosts") or {})
        for item in args.host_rm:  # HOST or HOST:IP
            host = re.split(r"[:=]", item, maxsplit=1)[0]
            hosts.pop(host, None)
        hosts.update(parse_host(h, "--host-add") for h in args.host_add)
        task["hosts"] = hosts
    if args.group_add or args.group_rm:
        task["groups"] = _list_update(old.get("groups"), args.group_add, args.group_rm)
    if args.container_label_add or args.container_label_rm:
        labels = dict(old.get("labels") or {})
        for key in args.container_label_rm:
            labels.pop(parse_key(key, "--container-label-rm"), None)
        labels.update(parse_kv(item, "--container-label-add") for item in args.container_label_add)
        task["labels"] = labels
    return task


UPDATE_FIELDS = (("mount", "mounts"), ("network", "network_mode"), ("sysctl", "sysctls"), ("ulimit", "ulimits"),
                 ("dns", "dns"), ("dns_search", "dns_search"), ("dns_option", "dns_options"), ("host", "hosts"),
                 ("group", "groups"), ("container_label", "labels"))


def update_paths(args) -> list[tuple]:
    """The task fields update's container flags change (for service_cmds.update_paths)."""
    paths = [("spec", "task", key) for key in shared_options(args)]
    for flag, key in UPDATE_FIELDS:
        if getattr(args, f"{flag}_add", None) or getattr(args, f"{flag}_rm", None):
            paths.append(("spec", "task", key))
    if args.log_driver is not None or args.log_opt:
        paths.append(("spec", "task", "log_driver"))
    if args.cap_add or args.cap_drop:
        paths += [("spec", "task", "cap_add"), ("spec", "task", "cap_drop")]
    return paths
