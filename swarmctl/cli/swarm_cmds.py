"""`swarmctl swarm ...`: init, join, join-token, leave, inspect."""

from __future__ import annotations

from swarmctl.cli import service_cmds
from swarmctl.cli.output import print_json


def add_parsers(sub) -> None:
    swarm = sub.add_parser("swarm", help="manage the swarm").add_subparsers(dest="action", required=True,
                                                                           metavar="COMMAND")
    p = swarm.add_parser("init", help="initialise a swarm with this node as its first manager")
    p.add_argument("--advertise-addr", help="address other nodes use to reach this node")
    p.add_argument("--listen-addr", help="management address IP:PORT (default ADVERTISE:2377)")
    p.add_argument("--force-new-cluster", action="store_true",
                   help="on a surviving manager: restart the swarm as a one-manager cluster keeping its state")
    p.set_defaults(func=init)

    p = swarm.add_parser("join", help="join a swarm as a worker or manager")
    p.add_argument("--token", required=True, help="join token (worker or manager)")
    p.add_argument("--advertise-addr")
    p.add_argument("--listen-addr")
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


def init(client, args) -> int:
    answer = client.post("/v1/swarm/init", {"advertise_addr": args.advertise_addr, "listen_addr": args.listen_addr,
                                            "force_new_cluster": args.force_new_cluster})
    token = client.get("/v1/swarm/join-token/worker")
    print(f"Swarm initialized: current node ({answer['node_id']}) is now a manager.\n")
    _print_join(token, "worker")
    print("To add a manager to this swarm, run 'swarmctl swarm join-token manager' and follow the instructions.\n")
    return 0


def _print_join(token: dict, role: str) -> None:
    addr = token["managers"][0] if token.get("managers") else "MANAGER:2377"
    print(f"To add a {role} to this swarm, run the following command:\n")
    print(f"    swarmctl swarm join --token {token['token']} {addr}\n")


def join(client, args) -> int:
    answer = client.post("/v1/swarm/join", {"token": args.token, "remote_addr": args.remote,
                                            "advertise_addr": args.advertise_addr, "listen_addr": args.listen_addr})
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
