"""The `swarmctl` command line. Imports only the standard library until a command needs more."""

from __future__ import annotations

import argparse
import os
import sys

from swarmctl import __version__
from swarmctl.cli import (events_cmd, hollow_cmds, node_cmds, provision, secret_cmds, service_cmds, stack_cmds,
                          swarm_cmds, version_cmd)
from swarmctl.cli.client import Client, CLIError, DaemonError


def _daemon_parser(sub) -> None:
    p = sub.add_parser("daemon", help="run the swarmctl node daemon")
    p.add_argument("--data-dir", default="/var/lib/swarmctl", help="all state of this node (default %(default)s)")
    p.add_argument("--advertise-addr", help="IP address other nodes use to reach this node")
    p.add_argument("--listen-addr", help="management API IP:PORT (default ADVERTISE:2377); Raft uses PORT+1")
    p.add_argument("--socket", default="/run/swarmctl/swarmctl.sock", help="local API socket (default %(default)s)")
    p.add_argument("--hostname", help="node name (default: the machine's)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="node engine label")
    p.add_argument("--docker-host", help="Docker engine URL (default: the local engine)")
    p.add_argument("--heartbeat-period", type=float, default=5.0, metavar="SECONDS")
    p.add_argument("--dns-addr", metavar="IP:PORT|none",
                   help="where this node answers DNS for service names (default: ADVERTISE:53; none: off)")
    p.add_argument("--mesh-dataplane", default="auto", choices=["auto", "nft", "proxy"],
                   help="how published ports are forwarded: nftables DNAT in the kernel, the userspace proxy,"
                        " or auto (nft when root and nft exist; default)")
    p.add_argument("--web-addr", metavar="IP:PORT",
                   help="serve the read-only live web view here (managers; default: off); an address other than "
                        "loopback needs --web-auth-file")
    p.add_argument("--web-auth-file", metavar="FILE",
                   help="HTTP basic auth for the web view: USER:HASH lines from `swarmctl web-passwd USER`")
    p.add_argument("--metrics-addr", metavar="IP:PORT",
                   help="serve Prometheus metrics at http://IP:PORT/metrics, unauthenticated (default: off)")
    p.add_argument("--resources", metavar="cpus=N,memory=BYTES",
                   help="what this node offers to tasks (default: the machine's cpus and memory)")
    p.add_argument("--log-level", default=os.environ.get("SWARMCTL_LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=_run_daemon, local=True)


def _run_daemon(_client, args) -> int:
    from swarmctl.node.config import ConfigError, DaemonConfig, parse_label, parse_resources
    from swarmctl.node.daemon import run
    try:
        labels = dict(parse_label(item) for item in args.label)
    except ConfigError as exc:
        raise CLIError(str(exc)) from None
    config = DaemonConfig(data_dir=args.data_dir, advertise_addr=args.advertise_addr, listen_addr=args.listen_addr,
                          socket=args.socket, labels=labels, docker_host=args.docker_host,
                          heartbeat_period=args.heartbeat_period, dns_addr=args.dns_addr,
                          mesh_dataplane=args.mesh_dataplane, web_addr=args.web_addr,
                          web_auth_file=args.web_auth_file, metrics_addr=args.metrics_addr)
    if args.hostname:
        config.hostname = args.hostname
    if args.resources:
        try:
            config.resources = parse_resources(args.resources, config.resources)
        except ConfigError as exc:
            raise CLIError(str(exc)) from None
    return run(config, args.log_level)


def _web_passwd_parser(sub) -> None:
    p = sub.add_parser("web-passwd", help="print a USER:HASH line for the web view's --web-auth-file")
    p.add_argument("user")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from stdin (default: prompt twice, or stdin when it is not a terminal)")
    p.set_defaults(func=_run_web_passwd, local=True)


def _run_web_passwd(_client, args) -> int:
    import getpass

    from swarmctl.web.auth import AuthFileError, make_line
    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise CLIError("the passwords differ")
    if not password:
        raise CLIError("empty password")
    try:
        print(make_line(args.user, password))
    except AuthFileError as exc:
        raise CLIError(str(exc)) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swarmctl", description="A Docker-Swarm-style container orchestrator.")
    parser.add_argument("-H", "--host", help="daemon socket, unix://PATH (default: $SWARMCTL_HOST or "
                                             "unix:///run/swarmctl/swarmctl.sock)")
    parser.add_argument("-v", "--version", action="version", version=f"swarmctl version {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _daemon_parser(sub)
    swarm_cmds.add_parsers(sub)
    node_cmds.add_parsers(sub)
    provision.add_parser(sub)
    service_cmds.add_parsers(sub)
    secret_cmds.add_parsers(sub)
    stack_cmds.add_parsers(sub)
    events_cmd.add_parser(sub)
    version_cmd.add_parser(sub)
    hollow_cmds.add_parser(sub)
    _web_passwd_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = None if getattr(args, "local", False) else Client(args.host)
        return args.func(client, args)
    except DaemonError as exc:
        print(f"Error response from daemon: {exc}", file=sys.stderr)
        return 1
    except CLIError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head and the like
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())
