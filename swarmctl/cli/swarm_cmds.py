"""`swarmctl swarm ...`: init, join, join-token, leave, inspect, unlock, unlock-key; and `swarmctl info`."""

from __future__ import annotations

import getpass
import sys

from swarmctl.cli import service_cmds
from swarmctl.cli.client import CLIError
from swarmctl.cli.output import print_json


def add_parsers(sub) -> None:
    swarm = sub.add_parser("swarm", help="manage the swarm").add_subparsers(dest="action", required=True,
                                                                           metavar="COMMAND")
    p = swarm.add_parser("init", help="initialise a swarm with this node as its first manager")
    p.add_argument("--advertise-addr", help="address other nodes use to reach this node: an IP or an interface "
                                            "name (eth0, or an address label such as lo:sw1), resolved to its "
                                            "one IPv4 address")
    p.add_argument("--listen-addr", help="management address IP:PORT or INTERFACE:PORT (default ADVERTISE:2377)")
    p.add_argument("--force-new-cluster", action="store_true",
                   help="on a surviving manager: restart the swarm as a one-manager cluster keeping its state")
    p.add_argument("--autolock", action="store_true",
                   help="enable manager autolocking (requiring an unlock key to start a stopped manager)")
    _data_path_args(p)
    service_cmds.add_swarm_settings_args(p)
    p.set_defaults(func=init)

    p = swarm.add_parser("join", help="join a swarm as a worker or manager")
    p.add_argument("--token", required=True, help="join token (worker or manager)")
    p.add_argument("--advertise-addr", help="IP or interface (eth0, a label such as lo:sw1) others reach this "
                                            "node at")
    p.add_argument("--listen-addr", help="management address IP:PORT or INTERFACE:PORT (default ADVERTISE:2377)")
    _data_path_args(p)
    p.add_argument("remote", metavar="HOST:PORT", help="address of a manager")
    p.set_defaults(func=join)

    p = swarm.add_parser("join-token", help="show or rotate a join token")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the token")
    p.add_argument("--rotate", action="store_true", help="replace the token; old tokens stop working for new joins")
    p.add_argument("role", choices=["worker", "manager"])
    p.set_defaults(func=join_token)

    p = swarm.add_parser("leave", help="leave the swarm")
    p.add_argument("-f", "--force", action="store_true", help="leave even as a manager")
    p.set_defaults(func=leave)

    p = swarm.add_parser("inspect", help="show the swarm's settings")
    p.add_argument("--format", choices=["json"], default="json")
    p.set_defaults(func=inspect)
    service_cmds.add_swarm_update_parser(swarm)

    p = swarm.add_parser("unlock", help="unlock a manager locked by autolock (reads the key from stdin or a prompt)")
    p.set_defaults(func=unlock)

    p = swarm.add_parser("unlock-key", help="manage the unlock key")
    p.add_argument("-q", "--quiet", action="store_true", help="only display the key")
    p.add_argument("--rotate", action="store_true", help="rotate the unlock key")
    p.set_defaults(func=unlock_key)

    p = sub.add_parser("info", help="show this node's swarm state (active, locked, inactive)")
    p.add_argument("--format", choices=["json"], help="print the daemon's info as JSON")
    p.set_defaults(func=info)


def _data_path_args(p) -> None:
    p.add_argument("--data-path-addr", help="not supported: swarmctl has no overlay data path (refused)")
    p.add_argument("--data-path-port", type=int, help="not supported: swarmctl has no VXLAN overlay (refused)")


def _data_path(args, body: dict) -> dict:
    """The server refuses them with one line (api/routes_local.py); passed on so the message is the server's."""
    if args.data_path_addr:
        body["data_path_addr"] = args.data_path_addr
    if args.data_path_port is not None:
        body["data_path_port"] = args.data_path_port
    return body


def init(client, args) -> int:
    body = {"advertise_addr": args.advertise_addr, "listen_addr": args.listen_addr,
            "force_new_cluster": args.force_new_cluster}
    if args.autolock:
        body["autolock"] = True
    body.update(service_cmds.swarm_settings_body(args))
    _data_path(args, body)
    answer = client.post("/v1/swarm/init", body)
    token = client.get("/v1/swarm/join-token/worker")
    print(f"Swarm initialized: current node ({answer['node_id']}) is now a manager.\n")
    _print_join(token, "worker")
    if args.autolock:
        print("To add a manager to this swarm, run 'swarmctl swarm join-token manager' and follow the instructions.")
        print_unlock_command(client.get("/v1/swarm/unlock-key")["unlock_key"])
    else:
        print("To add a manager to this swarm, run 'swarmctl swarm join-token manager' and follow the instructions.\n")
    return 0


def _print_join(token: dict, role: str) -> None:
    addr = token["managers"][0] if token.get("managers") else "MANAGER:2377"
    print(f"To add a {role} to this swarm, run the following command:\n")
    print(f"    swarmctl swarm join --token {token['token']} {addr}\n")


def join(client, args) -> int:
    answer = client.post("/v1/swarm/join", _data_path(args, {
        "token": args.token, "remote_addr": args.remote, "advertise_addr": args.advertise_addr,
        "listen_addr": args.listen_addr}))
    print(f"This node joined a swarm as a {answer['role']}.")
    return 0


def join_token(client, args) -> int:
    if args.rotate:
        token = client.post("/v1/swarm/join-token/rotate", {"role": args.role})
        if not args.quiet:
            print(f"Successfully rotated {args.role} join token.\n")
    else:
        token = client.get(f"/v1/swarm/join-token/{args.role}")
    if args.quiet:
        print(token["token"])
    else:
        _print_join(token, args.role)
    return 0


def leave(client, args) -> int:
    client.post("/v1/swarm/leave", {"force": args.force})
    print("Node left the swarm.")
    return 0


def inspect(client, args) -> int:
    print_json(client.get("/v1/swarm"))
    return 0


# ---- autolock (Docker's texts, with swarmctl's name) ------------------------------------------------
def print_unlock_command(key: str) -> None:
    if key:
        print("To unlock a swarm manager after it restarts, run the `swarmctl swarm unlock`\n"
              f"command and provide the following key:\n\n    {key}\n\n"
              "Remember to store this key in a password manager, since without it you\n"
              "will not be able to restart the manager.")


def set_autolock(client, enabled: bool) -> str | None:
    """For `swarm update --autolock=true|false`: the new unlock key when autolock was just turned on."""
    before = bool(((client.get("/v1/swarm").get("spec") or {}).get("encryption_config") or {})
                  .get("auto_lock_managers"))
    answer = client.post("/v1/swarm/autolock", {"enabled": enabled})
    return answer.get("unlock_key") if answer.get("autolock") and not before else None


def _read_key() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Enter unlock key: ")
    return sys.stdin.readline().strip()


def unlock(client, args) -> int:
    state = client.get("/v1/info").get("local_node_state")
    if state == "inactive":
        raise CLIError("This node is not part of a swarm")
    if state != "locked":
        raise CLIError("swarm is not locked")
    client.post("/v1/swarm/unlock", {"key": _read_key()})
    return 0


def unlock_key(client, args) -> int:
    if args.rotate:
        answer = client.post("/v1/swarm/unlock-key/rotate")
        if not args.quiet:
            print("Successfully rotated manager unlock key.")
    else:
        answer = client.get("/v1/swarm/unlock-key")
    key = answer.get("unlock_key")
    if not key:
        raise CLIError("no unlock key is set")
    if args.quiet:
        print(key)
    else:
        print_unlock_command(key)
    return 0


def info(client, args) -> int:
    data = client.get("/v1/info")
    if args.format == "json":
        print_json(data)
        return 0
    print(f"Swarm: {data.get('local_node_state')}")
    if data.get("node_id"):
        print(f" NodeID: {data['node_id']}")
        print(f" ClusterID: {data.get('cluster_id')}")
        print(f" Is Manager: {'true' if data.get('role') == 'manager' else 'false'}")
        print(f" Node Address: {data.get('addr')}")
        managers = data.get("managers") or []
        if managers:
            print(" Manager Addresses:")
            for addr in managers:
                print(f"  {addr}")
    conf = (data.get("raft") or {}).get("conf")
    if conf:
        low, high = conf["election_timeout"]
        print(f" Raft: election timeout {low:g}-{high:g}s ({conf['election_tick']:g} ticks of {conf['tick'] * 1000:g}ms), "
              f"heartbeat {conf['heartbeat_period']:g}s, snapshot every {conf['snapshot_interval']} entries")
    lag = data.get("loop_lag")
    if lag:
        print(f" Event Loop Lag: last {lag['last'] * 1000:.0f}ms, worst recent {lag['max_recent'] * 1000:.0f}ms, "
              f"worst {lag['max'] * 1000:.0f}ms, stalls over {lag['stall_threshold']:g}s: {lag['stalls']}")
    held = data.get("loop_held")
    if held and held.get("components"):
        name, worst = max(held["components"].items(), key=lambda kv: kv[1]["wall"])
        print(f" Longest Planning Step: {worst['wall'] * 1000:.0f}ms ({name}, {worst['cpu'] * 1000:.0f}ms CPU)")
    return 0
