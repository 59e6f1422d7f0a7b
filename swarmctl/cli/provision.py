"""`swarmctl provision -i INVENTORY [site|upgrade|teardown]`: run the collection's playbooks.

ansible-runner executes the playbook; its event stream is shown as each host's progress, and a
summary per host (ok, changed, failed, unreachable) ends the run. The exit code is non-zero when
any host failed or could not be reached, and those hosts are named. ansible-runner is imported
only here, so other commands stay fast.
"""

from __future__ import annotations

import os
import sys
import tempfile

from swarmctl.cli.client import CLIError
from swarmctl.cli.output import print_table

PLAYBOOKS = ("site", "upgrade", "teardown")


def add_parser(sub) -> None:
    p = sub.add_parser("provision", help="run the collection's playbooks (site, upgrade, teardown) over an inventory")
    p.add_argument("-i", "--inventory", required=True, help="inventory file or directory")
    p.add_argument("playbook", nargs="?", default="site", choices=PLAYBOOKS)
    p.add_argument("-e", "--extra-var", action="append", default=[], metavar="KEY=VALUE",
                   help="extra variable for the playbook (repeatable)")
    p.add_argument("-l", "--limit", help="limit the run to these hosts or groups")
    p.add_argument("-v", "--verbose", action="store_true", help="show every task result, not only changes")
    p.set_defaults(func=run, local=True)


def collection_root() -> str | None:
    """The checkout this package runs from, when it is the swarmctl.cluster collection."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return root if os.path.exists(os.path.join(root, "galaxy.yml")) else None


def _collections_path(root: str, scratch: str) -> str:
    """A collections path in which swarmctl.cluster resolves to this checkout."""
    link_dir = os.path.join(scratch, "collections", "ansible_collections", "swarmctl")
    os.makedirs(link_dir, exist_ok=True)
    os.symlink(root, os.path.join(link_dir, "cluster"))
    paths = [os.path.join(scratch, "collections")]
    if os.environ.get("ANSIBLE_COLLECTIONS_PATH"):
        paths.append(os.environ["ANSIBLE_COLLECTIONS_PATH"])
    return os.pathsep.join(paths)


def _extra_vars(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"invalid extra variable {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


class Progress:
    """Turns ansible-runner events into one line per host and task result."""

    def __init__(self, verbose: bool, out=sys.stdout):
        self.verbose = verbose
        self.out = out
        self.task = ""

    def __call__(self, event: dict) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            self.out.write(f"PLAY {data.get('play', '')}\n")
        elif kind == "playbook_on_task_start":
            self.task = data.get("task", "")
        elif kind.startswith("runner_on_") or kind == "runner_item_on_failed":
            host = data.get("host", "?")
            result = data.get("res") or {}
            status = {"runner_on_ok": "changed" if result.get("changed") else "ok",
                      "runner_on_failed": "FAILED", "runner_item_on_failed": "FAILED",
                      "runner_on_unreachable": "UNREACHABLE", "runner_on_skipped": "skipped"}.get(kind)
            if status is None or (status in ("ok", "skipped") and not self.verbose):
                return True
            if kind == "runner_on_failed" and data.get("ignore_errors"):
                status = "failed (ignored)"
            line = f"  {host:<20} {status:<12} {self.task}"
            message = result.get("msg") if status in ("FAILED", "UNREACHABLE") else None
            if message:
                line += f": {str(message).splitlines()[0][:200]}"
            self.out.write(line + "\n")
        self.out.flush()
        return True


def summarize(stats: dict) -> tuple[list[list[str]], list[str]]:
    """Rows per host (ok, changed, failed, unreachable) and the hosts that failed or were unreachable."""
    hosts = set()
    for key in ("ok", "changed", "failures", "dark", "skipped", "processed"):
        hosts |= set((stats or {}).get(key) or {})
    rows, bad = [], []
    for host in sorted(hosts):
        counts = [int(((stats or {}).get(key) or {}).get(host, 0)) for key in ("ok", "changed", "failures", "dark")]
        rows.append([host] + [str(c) for c in counts])
        if counts[2] or counts[3]:
            bad.append(host)
    return rows, bad


def run(_client, args) -> int:
    try:
        import ansible_runner
    except ImportError:
        raise CLIError("swarmctl provision needs ansible-runner and ansible-core: "
                       "pip install 'swarmctl[provision]'") from None
    inventory = os.path.abspath(args.inventory)
    if not os.path.exists(inventory):
        raise CLIError(f"inventory {args.inventory} not found")
    extra = _extra_vars(args.extra_var)
    root = collection_root()
    with tempfile.TemporaryDirectory(prefix="swarmctl-provision-") as scratch:
        env = {"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False"}
        if root is not None:
            playbook = os.path.join(root, "playbooks", f"{args.playbook}.yml")
            env["ANSIBLE_COLLECTIONS_PATH"] = _collections_path(root, scratch)
            if os.path.exists(os.path.join(root, "ansible.cfg")):
                env["ANSIBLE_CONFIG"] = os.path.join(root, "ansible.cfg")
        else:
            playbook = f"swarmctl.cluster.{args.playbook}"
        progress = Progress(args.verbose)
        result = ansible_runner.run(private_data_dir=scratch, playbook=playbook, inventory=inventory,
                                    extravars=extra or None, limit=args.limit, envvars=env, quiet=True,
                                    event_handler=progress)
        rows, bad = summarize(result.stats)
    print()
    print_table(["HOST", "OK", "CHANGED", "FAILED", "UNREACHABLE"], rows)
    if bad:
        print(f"Error: {args.playbook} failed on {', '.join(bad)}", file=sys.stderr)
        return 2
    if result.rc != 0 or result.status != "successful":
        print(f"Error: ansible-playbook ended with status {result.status} (rc {result.rc})", file=sys.stderr)
        return 2
    return 0
