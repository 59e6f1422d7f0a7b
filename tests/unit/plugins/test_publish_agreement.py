"""The service module repeats the daemon's rules for published ports (a module may import only the standard
library and its module_utils): on the same inputs, its translation of publish/endpoint_mode and
swarmctl.mesh.ports.check_endpoint accept and refuse alike, with the same text, and give the same endpoint."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from swarmctl.mesh import ports as mesh_ports

svc = pytest.importorskip("ansible_collections.swarmctl.cluster.plugins.modules.service")

# valid values, the edges of the ranges, and values the daemon refuses
NUMBERS = st.one_of(st.integers(1, 65535), st.sampled_from([0, 1, 80, 8080, 65535, 65536, -1, 70000]),
                    st.none(), st.just(True))
SMALL = st.sampled_from([80, 80, 443, 53, 8080])  # repeats, so duplicates come up often
PROTOCOLS = st.sampled_from([None, "tcp", "udp", "sctp", "TCP", ""])
PUBLISH_MODES = st.sampled_from([None, "ingress", "host", "routed"])
ENDPOINT_MODES = st.sampled_from([None, "vip", "dnsrr", "rr"])

OPTION_PORT = st.fixed_dictionaries({
    "published_port": st.one_of(NUMBERS, SMALL), "target_port": st.one_of(NUMBERS, SMALL),
    "protocol": PROTOCOLS, "mode": PUBLISH_MODES})
VALID_PORT = st.fixed_dictionaries({
    "published_port": st.one_of(st.none(), st.integers(1, 65535)), "target_port": st.integers(1, 65535),
    "protocol": st.sampled_from(["tcp", "udp"]), "mode": st.sampled_from(["ingress", "host"])})
PUBLISH = st.one_of(st.lists(OPTION_PORT, max_size=6), st.lists(VALID_PORT, max_size=4),
                    st.lists(st.builds(lambda t: {"published_port": None, "target_port": t, "protocol": "tcp",
                                                  "mode": "ingress"}, st.integers(1, 65535)),
                             min_size=mesh_ports.MAX_PORTS - 1, max_size=mesh_ports.MAX_PORTS + 2))


def daemon(publish, mode):
    """check_endpoint on the body the API documents: (endpoint, None) or (None, the refusal's text)."""
    ports = [{"protocol": p["protocol"], "target_port": p["target_port"], "published_port": p["published_port"],
              "publish_mode": p["mode"]} for p in publish]
    try:
        return mesh_ports.check_endpoint({"mode": mode, "ports": ports}), None
    except mesh_ports.PortError as exc:
        return None, str(exc)


def module(publish, mode):
    try:
        return svc.build_endpoint({"publish": publish, "endpoint_mode": mode}), None
    except svc.ServiceParamError as exc:
        return None, str(exc)


def test_the_constants_agree():
    assert svc.PROTOCOLS == mesh_ports.PROTOCOLS
    assert svc.PUBLISH_MODES == mesh_ports.PUBLISH_MODES
    assert svc.ENDPOINT_MODES == mesh_ports.ENDPOINT_MODES
    assert svc.MAX_PORTS == mesh_ports.MAX_PORTS
    assert svc.DEFAULT_ENDPOINT == mesh_ports.check_endpoint(None) == mesh_ports.check_endpoint({})


@settings(max_examples=800, deadline=None)
@given(publish=PUBLISH, mode=ENDPOINT_MODES)
def test_module_and_daemon_agree(publish, mode):
    ours, our_error = module(publish, mode)
    theirs, their_error = daemon(publish, mode)
    assert our_error == their_error
    assert ours == theirs
    if ours is not None:
        # what the module sends is what the daemon stores (before it picks the omitted published ports)
        assert mesh_ports.check_endpoint(ours) == ours
        body = svc.build_body({"name": "web", "image": "busybox", "publish": publish, "endpoint_mode": mode})
        assert body["endpoint"] == ours and svc.new_spec(body)["endpoint"] == ours


@settings(max_examples=300, deadline=None)
@given(publish=st.lists(VALID_PORT, max_size=4), mode=st.sampled_from([None, "vip"]))
def test_an_endpoint_stored_by_the_daemon_is_no_change(publish, mode):
    """Whatever the daemon stored for a publish list (the omitted ports picked), the same options plan nothing."""
    services = pytest.importorskip("swarmctl.manager.services")
    ours, error = module(publish, mode)
    if error:
        return
    stored = services.allocate_published([], ours, None)
    assert svc.build_endpoint({"publish": publish, "endpoint_mode": mode}, base=stored, reuse=stored) == stored
