"""Bad input gets one clear line and a non-zero exit, never a traceback."""

import json
import os
import subprocess

from tests.integration.harness import SWARMCTL, check


def assert_clean_error(result, *needles):
    assert result.code != 0, result
    text = result.err.strip()
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)


def test_cluster_commands_reject_bad_input(cluster):
    (m,), _ = cluster.form(1, 0)
    assert_clean_error(m.cli("node", "update", "--label-add", "novalue", "node1"), "invalid label 'novalue'")
    assert_clean_error(m.cli("node", "update", "--label-add", "=x", "node1"), "invalid label")
    assert_clean_error(m.cli("node", "update", "--label-rm", "nothere", "node1"), "label nothere does not exist")
    assert_clean_error(m.cli("node", "inspect", "ghost"), "No such node: ghost")
    assert_clean_error(m.cli("node", "update", "--availability", "drain", "ghost"), "No such node: ghost")
    assert_clean_error(m.cli("node", "promote", "ghost"), "No such node: ghost")
    assert_clean_error(m.cli("node", "update", "--availability", "sideways", "node1"), "invalid choice")
    assert_clean_error(m.cli("swarm", "init", "--advertise-addr", m.ip), "already part of a swarm")
    assert_clean_error(m.cli("swarm", "join-token", "boss"), "invalid choice")
    node = check(m.cli("node", "inspect", "node1")).json()
    assert node["spec"]["labels"] == {} and node["spec"]["availability"] == "active"


def test_daemon_start_errors(cluster, tmp_path):
    first = cluster.daemon(1)

    def run_daemon(*args):
        proc = subprocess.run(SWARMCTL + ["daemon", "--log-level", "error"] + list(args),
                              capture_output=True, text=True, timeout=30)
        return proc

    # the address is in use
    proc = run_daemon("--data-dir", str(tmp_path / "d1"), "--advertise-addr", first.ip, "--listen-addr", first.addr,
                      "--socket", str(tmp_path / "d1.sock"))
    assert proc.returncode != 0 and "cannot listen on 127.0.0.11:2377" in proc.stderr and "Traceback" not in proc.stderr
    # the socket is in use by another daemon
    proc = run_daemon("--data-dir", str(tmp_path / "d2"), "--advertise-addr", "127.0.0.12", "--socket", first.socket)
    assert proc.returncode != 0 and "in use by another swarmctl daemon" in proc.stderr
    # the data dir is in use
    proc = run_daemon("--data-dir", first.data_dir, "--advertise-addr", "127.0.0.12", "--socket",
                      str(tmp_path / "d3.sock"))
    assert proc.returncode != 0 and "in use by another swarmctl daemon" in proc.stderr
    # a foreign data dir
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "passwd").write_text("root:x:0:0")
    proc = run_daemon("--data-dir", str(foreign), "--advertise-addr", "127.0.0.12", "--socket", str(tmp_path / "f.sock"))
    assert proc.returncode != 0 and "not a swarmctl data dir" in proc.stderr
    # a corrupt data dir
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "swarmctl.json").write_text("{not json")
    proc = run_daemon("--data-dir", str(corrupt), "--advertise-addr", "127.0.0.12", "--socket", str(tmp_path / "c.sock"))
    assert proc.returncode != 0 and "is corrupt" in proc.stderr and "Traceback" not in proc.stderr
    # a manager's data dir with its Raft files missing
    check(first.cli("swarm", "init", "--advertise-addr", first.ip))
    first.stop()
    os.remove(os.path.join(first.data_dir, "raft", "members.json"))
    proc = run_daemon("--data-dir", first.data_dir, "--socket", first.socket)
    assert proc.returncode != 0 and "is corrupt" in proc.stderr
    # invalid settings
    proc = run_daemon("--data-dir", str(tmp_path / "d4"), "--advertise-addr", "not-an-ip", "--socket",
                      str(tmp_path / "d4.sock"))
    assert proc.returncode != 0 and "invalid --advertise-addr" in proc.stderr
    proc = run_daemon("--data-dir", str(tmp_path / "d5"), "--label", "bad", "--socket", str(tmp_path / "d5.sock"))
    assert proc.returncode != 0 and "invalid label 'bad'" in proc.stderr


def test_cli_without_daemon():
    env = dict(os.environ, SWARMCTL_HOST="unix:///tmp/swarmctl-no-such.sock")
    proc = subprocess.run(SWARMCTL + ["node", "ls"], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode != 0 and "Cannot connect to the swarmctl daemon" in proc.stderr
    proc = subprocess.run(SWARMCTL + ["--host", "tcp://1.2.3.4:1", "node", "ls"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode != 0 and "unsupported host" in proc.stderr


def test_json_formats_are_parseable(cluster):
    (m,), _ = cluster.form(1, 0)
    nodes = json.loads(check(m.cli("node", "ls", "--format", "json")).out)
    assert isinstance(nodes, list) and nodes[0]["spec"]["role"] == "manager"
    swarm = json.loads(check(m.cli("swarm", "inspect", "--format", "json")).out)
    assert isinstance(swarm, dict) and swarm["spec"]["default_strategy"] == "spread"
