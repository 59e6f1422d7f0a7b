"""Autolock with real daemons (3 managers and a worker): init --autolock, a locked restart, unlock, unlock-key
--rotate, update --autolock=false|true, and the DEK following promotion and demotion."""

import os
import socket
import subprocess

from swarmctl.errors import SWARM_LOCKED_MESSAGE
from swarmctl.node.keyfile import parse
from swarmctl.security import seal
from tests.integration.harness import SWARMCTL, check, nodes_json, wait_for

UNLOCK_TEXT = ("To unlock a swarm manager after it restarts, run the `swarmctl swarm unlock`\n"
               "command and provide the following key:\n\n    {key}\n\n"
               "Remember to store this key in a password manager, since without it you\n"
               "will not be able to restart the manager.\n")
WRONG_KEY = "swarm could not be unlocked: invalid key provided"


def swarmctl(daemon, *args, stdin: str | None = None):
    """The CLI itself (the harness's cli("info") is a raw API read), with stdin given."""
    env = dict(os.environ, SWARMCTL_HOST=f"unix://{daemon.socket}")
    return subprocess.run(SWARMCTL + list(args), input=stdin, capture_output=True, text=True, env=env, timeout=60)


def unlock(daemon, key: str):
    """`swarmctl swarm unlock` with the key on stdin (no TTY: read from stdin, as Docker does)."""
    return swarmctl(daemon, "swarm", "unlock", stdin=key + "\n")


def key_file(daemon):
    with open(os.path.join(daemon.data_dir, "certs", "node.key"), "rb") as f:
        return parse(f.read())


def wrapped_by(daemon):
    """The id of the unlock key that wraps this node's key file (None: not encrypted)."""
    kf = key_file(daemon)
    return kf.wrapped_by if kf.wrapped else None


def reachability(daemon) -> dict:
    return {n["description"]["hostname"]: (n["manager_status"] or {}).get("reachability") for n in nodes_json(daemon)}


def port_open(daemon) -> bool:
    try:
        socket.create_connection((daemon.ip, daemon.port), timeout=1).close()
        return True
    except OSError:
        return False


def restart(daemon):
    daemon.stop()
    daemon.start()


def test_autolock_lock_unlock_rotate_and_turn_off(cluster):
    nodes = [cluster.daemon(i) for i in (1, 2, 3, 4)]
    m1, m2, m3, worker = nodes
    out = check(m1.cli("swarm", "init", "--autolock", "--advertise-addr", m1.ip)).out
    key = out.split("provide the following key:\n\n    ")[1].split("\n")[0]
    assert key.startswith("SWMKEY-1-")
    assert ("To add a manager to this swarm, run 'swarmctl swarm join-token manager' and follow the instructions.\n"
            + UNLOCK_TEXT.format(key=key)) in out
    manager_token = check(m1.cli("swarm", "join-token", "-q", "manager")).out.strip()
    worker_token = check(m1.cli("swarm", "join-token", "-q", "worker")).out.strip()
    check(m2.cli("swarm", "join", "--token", manager_token, m1.addr))
    check(m3.cli("swarm", "join", "--token", manager_token, m1.addr))
    check(worker.cli("swarm", "join", "--token", worker_token, m1.addr))

    # every manager shows the same key; the swarm's spec says autolock, and never shows the key
    for m in (m1, m2, m3):
        assert check(m.cli("swarm", "unlock-key", "-q")).out.strip() == key
    assert check(m2.cli("swarm", "unlock-key")).out == UNLOCK_TEXT.format(key=key)
    inspect = check(m1.cli("swarm", "inspect")).json()
    assert inspect["spec"]["encryption_config"] == {"auto_lock_managers": True}
    assert key not in check(m1.cli("swarm", "inspect")).out and "unlock_key" not in inspect
    # each manager wraps its key file with the key; the worker's is not wrapped and it is never locked
    kid = seal.key_id(seal.parse_unlock_key(key))
    wait_for(lambda: all(wrapped_by(m) == kid for m in (m1, m2, m3)), timeout=20, what="managers' key files wrapped")
    assert not key_file(worker).wrapped and not key_file(worker).dek_blocks
    result = worker.cli("swarm", "unlock")
    assert result.code == 1 and "swarm is not locked" in result.err
    result = m1.cli("swarm", "unlock")
    assert result.code == 1 and "swarm is not locked" in result.err

    # a restarted manager is locked: nothing runs, cluster commands refuse with Docker's text
    restart(m3)
    assert m3.info()["local_node_state"] == "locked" and not m3.info()["is_manager"]
    assert swarmctl(m3, "info").stdout.startswith("Swarm: locked\n")
    for args in (("node", "ls"), ("swarm", "join-token", "worker"), ("swarm", "inspect"), ("service", "ls"),
                 ("swarm", "unlock-key")):
        result = m3.cli(*args)
        assert result.code == 1 and result.err.strip() == f"Error response from daemon: {SWARM_LOCKED_MESSAGE}", args
    assert "Traceback" not in result.err
    assert not port_open(m3)  # no management port while locked
    # ... and the swarm keeps working with the other two
    wait_for(lambda: reachability(m1)["node3"] == "unreachable", timeout=20, what="node3 unreachable")
    check(m2.cli("node", "update", "--label-add", "while=locked", "node4"))
    check(m1.cli("swarm", "join-token", "--rotate", "worker"))

    # a wrong key is refused with one clear line; a malformed one too; it stays locked
    result = unlock(m3, seal.format_unlock_key(seal.new_unlock_key()))
    assert result.returncode == 1 and result.stderr.strip() == f"Error response from daemon: {WRONG_KEY}"
    result = unlock(m3, "not-a-key")
    assert result.returncode == 1 and "invalid unlock key" in result.stderr and "Traceback" not in result.stderr
    assert m3.info()["local_node_state"] == "locked"
    # the right key from stdin: it starts and is Reachable again, with the current state
    result = unlock(m3, key)
    assert result.returncode == 0, result.stderr
    assert m3.info()["local_node_state"] == "active"
    wait_for(lambda: reachability(m1)["node3"] == "reachable", timeout=20, what="node3 reachable again")
    wait_for(lambda: check(m3.cli("swarm", "join-token", "-q", "worker")).out
             == check(m1.cli("swarm", "join-token", "-q", "worker")).out, what="node3 caught up")

    # rotation: the new key is printed, every manager re-wraps, the old key no longer unlocks
    out = check(m2.cli("swarm", "unlock-key", "--rotate")).out
    assert out.startswith("Successfully rotated manager unlock key.\nTo unlock a swarm manager")
    new_key = out.split("provide the following key:\n\n    ")[1].split("\n")[0]
    assert new_key != key and check(m1.cli("swarm", "unlock-key", "-q")).out.strip() == new_key
    new_kid = seal.key_id(seal.parse_unlock_key(new_key))
    wait_for(lambda: all(wrapped_by(m) == new_kid for m in (m1, m2, m3)), timeout=20, what="re-wrapped")
    quiet = check(m1.cli("swarm", "unlock-key", "-q", "--rotate")).out.strip()  # -q: only the new key
    assert quiet.startswith("SWMKEY-1-") and quiet not in (key, new_key)
    newest_kid = seal.key_id(seal.parse_unlock_key(quiet))
    wait_for(lambda: all(wrapped_by(m) == newest_kid for m in (m1, m2, m3)), timeout=20, what="re-wrapped again")
    restart(m2)
    assert m2.info()["local_node_state"] == "locked"
    for old in (key, new_key):
        result = unlock(m2, old)
        assert result.returncode == 1 and WRONG_KEY in result.stderr
    check_unlocked = unlock(m2, quiet)
    assert check_unlocked.returncode == 0, check_unlocked.stderr
    wait_for(lambda: reachability(m1)["node2"] == "reachable", timeout=20, what="node2 reachable")

    # a promoted worker receives the DEK and wraps it; demoted again, it drops it
    check(m1.cli("node", "promote", "node4"))
    wait_for(lambda: wrapped_by(worker) == newest_kid and len(key_file(worker).dek_blocks) == 1, timeout=30,
             what="promoted node4 holds the DEK, wrapped")
    check(m1.cli("node", "demote", "node4"))
    wait_for(lambda: worker.info()["role"] == "worker" and not key_file(worker).wrapped
             and not key_file(worker).dek_blocks, timeout=30, what="demoted node4 dropped the DEK")

    # autolock off: files unwrapped everywhere, a restart needs no key, and there is no key to show
    out = check(m3.cli("swarm", "update", "--autolock=false")).out
    assert out == "Swarm updated.\n"
    wait_for(lambda: all(wrapped_by(m) is None for m in (m1, m2, m3)), timeout=20, what="unwrapped")
    restart(m1)
    assert m1.info()["local_node_state"] == "active"
    wait_for(lambda: reachability(m2)["node1"] == "reachable", timeout=20, what="node1 reachable")
    result = m1.cli("swarm", "unlock-key")
    assert result.code == 1 and result.err.strip() == "Error: no unlock key is set"
    result = m1.cli("swarm", "unlock-key", "--rotate")
    assert result.code == 1 and "cannot rotate because autolock is not turned on" in result.err
    assert check(m1.cli("swarm", "inspect")).json()["spec"]["encryption_config"] == {"auto_lock_managers": False}

    # and on again: a new key, printed as Docker does after "Swarm updated."
    out = check(m1.cli("swarm", "update", "--autolock=true")).out
    again = out.split("provide the following key:\n\n    ")[1].split("\n")[0]
    assert out == "Swarm updated.\n" + UNLOCK_TEXT.format(key=again)
    assert again not in (key, new_key, quiet)
    assert check(m1.cli("swarm", "update", "--autolock=true")).out == "Swarm updated.\n"  # already on: no new key
    assert check(m2.cli("swarm", "unlock-key", "-q")).out.strip() == again
    result = m1.cli("swarm", "update", "--autolock=maybe")
    assert result.code == 2 and "invalid boolean" in result.err


def test_locked_manager_can_leave_only_with_force(cluster):
    m1 = cluster.daemon(1)
    check(m1.cli("swarm", "init", "--autolock", "--advertise-addr", m1.ip))
    wait_for(lambda: wrapped_by(m1) is not None, what="key file wrapped")
    restart(m1)
    assert m1.info()["local_node_state"] == "locked"
    result = m1.cli("swarm", "leave")
    assert result.code == 1 and "Swarm is encrypted and locked. Please unlock it first" in result.err
    result = m1.cli("swarm", "init", "--force-new-cluster")
    assert result.code == 1 and SWARM_LOCKED_MESSAGE in result.err
    check(m1.cli("swarm", "leave", "--force"))
    assert m1.info()["local_node_state"] == "inactive"
    result = m1.cli("swarm", "unlock")
    assert result.code == 1 and "This node is not part of a swarm" in result.err
    check(m1.cli("swarm", "init", "--advertise-addr", m1.ip))  # a new swarm, without autolock
    assert swarmctl(m1, "info").stdout.startswith("Swarm: active\n")


def test_unlock_prompts_on_a_tty_without_echo(cluster):
    import pty
    import sys
    m1 = cluster.daemon(1)
    out = check(m1.cli("swarm", "init", "--autolock", "--advertise-addr", m1.ip)).out
    key = out.split("provide the following key:\n\n    ")[1].split("\n")[0]
    wait_for(lambda: wrapped_by(m1) is not None, what="key file wrapped")
    restart(m1)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal
        os.environ["SWARMCTL_HOST"] = f"unix://{m1.socket}"
        os.execv(sys.executable, SWARMCTL + ["swarm", "unlock"])
    seen = b""
    try:
        while b"Enter unlock key: " not in seen:
            seen += os.read(fd, 1024)
        os.write(fd, (key + "\n").encode())
        while True:
            chunk = os.read(fd, 1024)
            if not chunk:
                break
            seen += chunk
    except OSError:  # the terminal closed when the CLI exited
        pass
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert key.encode() not in seen  # no echo
    assert m1.info()["local_node_state"] == "active"
