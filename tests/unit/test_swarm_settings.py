"""Interface names in advertise/listen addresses (node/config.py) and the swarm's Raft and dispatcher settings
(state/raftsettings.py): parsing, checks, and their mapping onto pysyncobj's conf."""

from __future__ import annotations

import pytest

from swarmctl.cli.main import build_parser
from swarmctl.cli.service_cmds import swarm_settings_body
from swarmctl.cli.units import UnitError
from swarmctl.node import config
from swarmctl.node.config import Addresses, ConfigError, resolve_host, split_addr_port
from swarmctl.state import raftsettings
from swarmctl.state.raft import raft_conf


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.71", ("127.0.0.71", 2377)),
    ("127.0.0.71:2400", ("127.0.0.71", 2400)),
    ("eth1", ("eth1", 2377)),
    ("eth1:2400", ("eth1", 2400)),
    ("lo:sw71", ("lo:sw71", 2377)),          # a label: the suffix is not digits, so not a port
    ("lo:sw71:2400", ("lo:sw71", 2400)),
    ("::1", ("::1", 2377)),
    ("[::1]:2400", ("::1", 2400)),
])
def test_split_addr_port(text, expected):
    assert split_addr_port(text, "listen address") == expected


def test_split_addr_port_errors():
    with pytest.raises(ConfigError, match="port out of range"):
        split_addr_port("lo:sw71:70000", "listen address")
    with pytest.raises(ConfigError, match="empty"):
        split_addr_port(" ", "listen address")


LISTING = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "label": "lo"},
                                   {"family": "inet", "local": "127.0.0.71", "label": "lo:sw71"}]},
    {"ifname": "dummy7", "addr_info": [{"family": "inet", "local": "127.0.0.99", "label": "dummy7"}]},
]


@pytest.fixture
def listing(monkeypatch):
    monkeypatch.setattr(config, "_ip_addr_list", lambda: LISTING)


def test_resolve_host(listing):
    assert resolve_host("127.0.0.72", "advertise address") == "127.0.0.72"
    assert resolve_host("lo:sw71", "advertise address") == "127.0.0.71"
    assert resolve_host("dummy7", "advertise address") == "127.0.0.99"


@pytest.mark.parametrize("name, message", [
    ("lo", "could not choose an IP address since this system has multiple addresses on interface lo "
           "(127.0.0.1 and 127.0.0.71)"),
    ("nosuch0", "no such network interface 'nosuch0'"),
    ("lo:other", "no such network interface 'lo:other'"),
    ("not an iface", "must be an IP address or network interface (with optional port number)"),
])
def test_resolve_host_errors(listing, name, message):
    with pytest.raises(ConfigError, match=None) as info:
        resolve_host(name, "advertise address")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("invalid advertise address")


def test_addresses_resolve_interfaces(listing):
    addrs = Addresses.resolve("lo:sw71", "lo:sw71:2377")
    assert (addrs.advertise, addrs.listen_host, addrs.listen_port) == ("127.0.0.71", "127.0.0.71", 2377)
    assert Addresses.resolve(None, "dummy7:2400").manager == "127.0.0.99:2400"
    assert Addresses.resolve("lo:sw71:2377", None).manager == "127.0.0.71:2377"
    with pytest.raises(ConfigError, match="the advertised port is the listen port"):
        Addresses.resolve("lo:sw71:2500", "lo:sw71:2377")


def test_ioctl_fallback_on_loopback(monkeypatch):
    """Without `ip`, SIOCGIFADDR answers for an interface (lo always has 127.0.0.1 here)."""
    monkeypatch.setattr(config, "_ip_addr_list", lambda: None)
    assert config.interface_addresses("lo") == ["127.0.0.1"]
    assert config.interface_addresses("nosuch0") is None


# ---- settings ------------------------------------------------------------------------------------
def test_check_accepts_and_normalises():
    assert raftsettings.check({"election_tick": 10.0, "heartbeat_tick": 2, "snapshot_interval": 5000,
                               "keep_old_snapshots": 0, "log_entries_for_slow_followers": 0,
                               "dispatcher_heartbeat_period": 2, "other": None}.copy() | {"other": None}) == {
        "election_tick": 10, "heartbeat_tick": 2, "snapshot_interval": 5000, "keep_old_snapshots": 0,
        "log_entries_for_slow_followers": 0, "dispatcher_heartbeat_period": 2.0}


@pytest.mark.parametrize("settings, current, message", [
    ({"election_tick": 1}, None, "invalid election_tick 1: it must be between 2 and 400"),
    ({"election_tick": 401}, None, "between 2 and 400"),
    ({"heartbeat_tick": 0}, None, "invalid heartbeat_tick 0: it must be between 1 and 20"),
    ({"snapshot_interval": 99}, None, "between 100 and 10000000"),
    ({"snapshot_interval": 150.5}, None, "expected a whole number"),
    ({"keep_old_snapshots": 1}, None, "only 0 is supported: swarmctl keeps only the latest Raft snapshot"),
    ({"log_entries_for_slow_followers": 500}, None, "only 0 is supported: pysyncobj drops the whole log"),
    ({"dispatcher_heartbeat_period": 0.1}, None, "between 0.5 and 3600"),
    ({"dispatcher_heartbeat_period": True}, None, "expected a number"),
    ({"election_tick": 4, "heartbeat_tick": 4}, None, "it must be greater than heartbeat_tick (4)"),
    ({"heartbeat_tick": 5}, None, "invalid heartbeat_tick 5: it must be less than election_tick (5) (unset: 5)"),
    ({"election_tick": 3}, {"heartbeat_tick": 3}, "greater than heartbeat_tick (3)"),  # the swarm's own tick
    ({"heartbeat_tick": 8}, {"election_tick": 8}, "invalid heartbeat_tick 8: it must be less than election_tick (8)"),
])
def test_check_refuses(settings, current, message):
    with pytest.raises(raftsettings.SettingError) as info:
        raftsettings.check(settings, current)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_conf_values_map_onto_pysyncobj():
    values = raftsettings.conf_values({"election_tick": 10, "heartbeat_tick": 2, "snapshot_interval": 5000},
                                      (0.25, 0.6))
    assert values == {"raftMinTimeout": 0.5, "raftMaxTimeout": 1.2, "appendEntriesPeriod": 0.1,
                      "logCompactionMinEntries": 5000}
    # unset: the size-scaled timeouts and the default period; compaction is left to the caller's default
    assert raftsettings.conf_values({}, (0.6, 1.5)) == {"raftMinTimeout": 0.6, "raftMaxTimeout": 1.5,
                                                        "appendEntriesPeriod": 0.05}
    conf = raft_conf("/tmp/none", **values)
    eff = raftsettings.effective(conf)
    assert eff["election_tick"] == 10 and eff["heartbeat_tick"] == 2 and eff["snapshot_interval"] == 5000
    assert eff["election_timeout"] == [0.5, 1.2] and eff["heartbeat_period"] == 0.1


def test_cli_flags_make_the_request_body():
    parser = build_parser()
    args = parser.parse_args(["swarm", "update", "--election-tick", "10", "--heartbeat-tick", "2",
                              "--snapshot-interval", "5000", "--max-snapshots", "0", "--dispatcher-heartbeat", "2s",
                              "--log-entries-for-slow-followers", "0", "--task-history-limit", "3"])
    assert swarm_settings_body(args) == {"election_tick": 10, "heartbeat_tick": 2, "snapshot_interval": 5000,
                                         "keep_old_snapshots": 0, "dispatcher_heartbeat_period": 2.0,
                                         "log_entries_for_slow_followers": 0, "task_history_limit": 3}
    init = parser.parse_args(["swarm", "init", "--advertise-addr", "lo:sw71", "--election-tick", "8"])
    assert swarm_settings_body(init) == {"election_tick": 8}
    for flags, message in ((["--max-snapshots", "2"], "only 0 is supported"),
                           (["--election-tick", "x"], "invalid --election-tick 'x': expected a whole number"),
                           (["--dispatcher-heartbeat", "100ms"], "between 0.5 and 3600")):
        with pytest.raises(UnitError, match=None) as info:
            swarm_settings_body(parser.parse_args(["swarm", "update"] + flags))
        assert message in str(info.value)


def test_info_prints_the_effective_raft_settings(capsys):
    from swarmctl.cli import swarm_cmds

    class Client:
        def get(self, path):
            return {"local_node_state": "active", "node_id": "n1", "role": "manager",
                    "raft": {"conf": {"tick": 0.05, "election_timeout": [0.6, 1.44], "election_tick": 12,
                                      "heartbeat_period": 0.1, "heartbeat_tick": 2, "snapshot_interval": 2000}}}
    swarm_cmds.info(Client(), build_parser().parse_args(["info"]))
    assert (" Raft: election timeout 0.6-1.44s (12 ticks of 50ms), heartbeat 0.1s, snapshot every 2000 entries"
            in capsys.readouterr().out)
