"""swarmctl.cluster.service: publish and endpoint_mode -> the request's endpoint, and idempotence of published
ports (also those the daemon picks), against the daemon's own spec code served by a fake daemon
(test_service.FakeServices: swarmctl.manager.services' build_spec, _plan_update and allocate_published)."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.swarmctl.cluster.plugins.modules import service as svc

from .test_service import IMAGE, FakeServices, params, run_cycle

services = pytest.importorskip("swarmctl.manager.services")
mesh_ports = pytest.importorskip("swarmctl.mesh.ports")


def port(target, published=None, protocol="tcp", mode="ingress"):
    """One item of the publish option, as Ansible passes it (suboption defaults filled in)."""
    return {"published_port": published, "target_port": target, "protocol": protocol, "mode": mode}


def api_port(target, published, protocol="tcp", mode="ingress"):
    return {"protocol": protocol, "target_port": target, "published_port": published, "publish_mode": mode}


# ---- translation -----------------------------------------------------------------------------------
def test_publish_becomes_the_endpoint():
    body = svc.build_body(params(publish=[port(80, 8080), port(53, protocol="udp"), port(9000, mode="host"),
                                          port(9001, 0)]))
    assert body["endpoint"] == {"mode": "vip", "ports": [
        api_port(80, 8080), api_port(53, None, "udp"), api_port(9000, 9000, mode="host"), api_port(9001, None)]}
    # the daemon stores the same spec (before it picks the omitted ports)
    assert svc.new_spec(body) == services.build_spec(copy.deepcopy(body))


def test_endpoint_mode_alone_and_no_endpoint():
    body = svc.build_body(params(endpoint_mode="dnsrr"))
    assert body["endpoint"] == {"mode": "dnsrr", "ports": []}
    assert svc.new_spec(body) == services.build_spec(copy.deepcopy(body))
    assert svc.build_body(params(publish=[]))["endpoint"] == {"mode": "vip", "ports": []}
    body = svc.build_body(params())
    assert "endpoint" not in body
    assert svc.new_spec(body)["endpoint"] == mesh_ports.check_endpoint(None) == svc.DEFAULT_ENDPOINT


@pytest.mark.parametrize("kwargs", [
    {"publish": [port(70000)]},
    {"publish": [port(0)]},
    {"publish": [port(80, 65536)]},
    {"publish": [port(80, -1)]},
    {"publish": [port(80, protocol="sctp")]},
    {"publish": [port(80, mode="routed")]},
    {"publish": [port(80, 8080)], "endpoint_mode": "dnsrr"},
    {"publish": [port(80, 8080), port(81, 8080)]},
    {"publish": [port(80, mode="host"), port(80, 80)]},
    {"publish": [port(80, 8080, mode="host")]},
    {"publish": [port(80 + i) for i in range(65)]},
    {"endpoint_mode": "rr"},
])
def test_bad_ports_fail_with_the_daemons_text(kwargs):
    with pytest.raises(svc.ServiceParamError) as raised:
        svc.build_body(params(**kwargs))
    with pytest.raises(mesh_ports.PortError) as daemon:
        mesh_ports.check_endpoint({"mode": kwargs.get("endpoint_mode"),
                                   "ports": svc.publish_ports(kwargs.get("publish") or [])})
    assert str(raised.value) == str(daemon.value)
    assert "\n" not in str(raised.value)


def test_omitted_published_ports_reuse_the_current_ones():
    current = {"mode": "vip", "ports": [api_port(80, 30000), api_port(80, 30001), api_port(53, 30002, "udp"),
                                        api_port(81, 8081)]}
    got = svc.build_endpoint({"publish": [port(53, protocol="udp"), port(80), port(80, 30000), port(80)]},
                             base=current, reuse=current)
    # 30000 is given explicitly, so the omitted 80/tcp ports take 30001 and then none (the daemon picks one)
    assert got["ports"] == [api_port(53, 30002, "udp"), api_port(80, 30001), api_port(80, 30000), api_port(80, None)]
    # a port of another target or mode is no match
    got = svc.build_endpoint({"publish": [port(81), port(82)]}, base=current, reuse=current)
    assert got["ports"] == [api_port(81, 8081), api_port(82, None)]
    # endpoint_mode alone keeps the current ports; publish alone keeps the current mode
    assert svc.build_endpoint({"endpoint_mode": "vip"}, base=current, reuse=current) == current
    dnsrr = {"mode": "dnsrr", "ports": [api_port(80, 80, mode="host")]}
    assert svc.build_endpoint({"publish": [port(80, mode="host")]}, base=dnsrr, reuse=dnsrr) == dnsrr
    with pytest.raises(svc.ServiceParamError, match="can't be used with dnsrr mode"):
        svc.build_endpoint({"endpoint_mode": "dnsrr"}, base=current, reuse=current)


def service_with(endpoint, **spec):
    body = dict({"name": "web", "mode": "replicated", "task": {"image": IMAGE}}, endpoint=endpoint, **spec)
    return {"id": "s1", "spec": services.build_spec(body), "spec_version": 1}


def test_plan_ignores_omitted_published_ports():
    current = service_with({"ports": [api_port(80, 30000), api_port(53, 53, "udp", "host")]})
    same = params(publish=[port(80), port(53, protocol="udp", mode="host")])
    assert svc.plan(current, same)["action"] == "none"
    assert svc.plan(current, params(publish=[port(80, 30000), port(53, 53, "udp", "host")]))["action"] == "none"
    assert svc.plan(current, params(endpoint_mode="vip"))["action"] == "none"
    assert svc.plan(current, params())["action"] == "none"
    # another number is a change, and an update sends the whole endpoint (the kept port included)
    decision = svc.plan(current, params(publish=[port(80), port(5353, protocol="udp", mode="host")]))
    assert decision["action"] == "update" and decision["changes"] == ["publish"]
    assert decision["body"] == {"endpoint": {"mode": "vip", "ports": [
        api_port(80, 30000), api_port(5353, 5353, "udp", "host")]}, "task": {"image": IMAGE}}
    assert ("spec", "endpoint") in svc.update_paths(decision["body"])
    # an unchanged endpoint is not sent (nor in the retry rule's paths)
    decision = svc.plan(current, params(publish=[port(80), port(53, protocol="udp", mode="host")], replicas=2))
    assert decision["action"] == "update" and "endpoint" not in decision["body"]
    assert ("spec", "endpoint") not in svc.update_paths(decision["body"])
    # a service stored without an endpoint (an older daemon) has the default one
    old = {"id": "s1", "spec": dict(current["spec"])}
    del old["spec"]["endpoint"]
    assert svc.plan(old, params(publish=[]))["action"] == "none"
    assert svc.plan(old, params(publish=[port(80)]))["changes"] == ["publish"]


def test_rebuild_keeps_the_picked_ports():
    current = service_with({"ports": [api_port(80, 30005)]})
    decision = svc.plan(current, params(mode="global", publish=[port(80)]))
    assert decision["action"] == "rebuild" and decision["body"]["endpoint"]["ports"] == [api_port(80, 30005)]
    assert "publish" not in decision["changes"]


# ---- the module against the fake daemon ----------------------------------------------------------
@pytest.fixture
def fake(fake_daemon, run_module):
    run_module.fake = fake_daemon
    return FakeServices(fake_daemon)


def test_publish_cycle(fake, run_module):
    base = {"swarmctl_host": fake.daemon.host, "name": "web", "image": IMAGE}
    created = run_cycle(run_module, dict(base, publish=[{"published_port": 8080, "target_port": 80}]))
    assert created["swarm_service"]["spec"]["endpoint"] == {"mode": "vip", "ports": [api_port(80, 8080)]}
    # options left out keep the ports
    assert not run_module("service", base)["changed"]

    # a changed list updates the service; check mode and diff as for the other options
    real = run_cycle(run_module, dict(base, publish=[{"published_port": 8080, "target_port": 80},
                                                     {"published_port": 53, "target_port": 53, "protocol": "udp",
                                                      "mode": "host"}]),
                     expect_changes=["publish"])
    assert real["diff"]["before"]["endpoint"]["ports"] == [api_port(80, 8080)]
    assert real["diff"]["after"]["endpoint"]["ports"] == [api_port(80, 8080), api_port(53, 53, "udp", "host")]

    # host ports only: dnsrr is allowed
    run_cycle(run_module, dict(base, endpoint_mode="dnsrr",
                               publish=[{"target_port": 53, "protocol": "udp", "mode": "host"}]),
              expect_changes=["endpoint_mode", "publish"])
    run_cycle(run_module, dict(base, endpoint_mode="vip"), expect_changes=["endpoint_mode"])
    # publish: [] removes the ports
    removed = run_cycle(run_module, dict(base, publish=[]), expect_changes=["publish"])
    assert removed["swarm_service"]["spec"]["endpoint"] == {"mode": "vip", "ports": []}


def test_picked_published_port_is_idempotent(fake, run_module):
    args = {"swarmctl_host": fake.daemon.host, "name": "web", "image": IMAGE, "publish": [{"target_port": 80}]}
    predicted = run_module("service", args, check_mode=True)
    assert predicted["changed"] and predicted["diff"]["after"]["endpoint"]["ports"] == [api_port(80, None)]
    assert fake.daemon.writes() == []
    created = run_module("service", args)
    assert created["changed"] and created["swarm_service"]["spec"]["endpoint"]["ports"] == [api_port(80, 30000)]
    for check_mode in (False, True):
        again = run_module("service", args, check_mode=check_mode)
        assert not again["changed"] and again["changes"] == [] and "diff" not in again, again
    # a port added to the list: the picked one stays, the new one gets the next free number
    args["publish"] = [{"target_port": 80}, {"target_port": 443}]
    predicted = run_module("service", args, check_mode=True)
    assert predicted["changes"] == ["publish"]
    assert predicted["diff"]["after"]["endpoint"]["ports"] == [api_port(80, 30000), api_port(443, None)]
    updated = run_module("service", args)
    assert updated["changed"] and updated["changes"] == ["publish"]
    assert updated["swarm_service"]["spec"]["endpoint"]["ports"] == [api_port(80, 30000), api_port(443, 30001)]
    assert not run_module("service", args)["changed"]
    # the explicit number the daemon picked is no change either
    args["publish"] = [{"target_port": 80, "published_port": 30000}, {"target_port": 443}]
    assert not run_module("service", args)["changed"]


@pytest.mark.parametrize("args, message", [
    ({"publish": [{"target_port": 70000}]}, "invalid target port 70000: must be in range 1-65535"),
    ({"publish": [{"target_port": 80, "published_port": 65536}]},
     "invalid published port 65536: must be in range 1-65535"),
    ({"publish": [{"target_port": 80}], "endpoint_mode": "dnsrr"},
     "port published with ingress mode can't be used with dnsrr mode"),
    ({"publish": [{"target_port": 80, "published_port": 8080}, {"target_port": 81, "published_port": 8080}]},
     "duplicate published port 8080/tcp"),
    ({"publish": [{"target_port": 80, "published_port": 8080, "mode": "host"}]},
     "host-mode port 8080 must be the target port 80"),
    # checked by Ansible (the options' choices)
    ({"publish": [{"target_port": 80, "protocol": "sctp"}]}, "value of protocol must be one of: tcp, udp"),
    ({"publish": [{"target_port": 80, "mode": "routed"}]}, "value of mode must be one of: ingress, host"),
    ({"endpoint_mode": "rr"}, "value of endpoint_mode must be one of: vip, dnsrr"),
    ({"publish": [{"published_port": 80}]}, "missing required arguments: target_port"),
])
def test_bad_publish_fails_in_one_line(fake, run_module, args, message):
    for check_mode in (True, False):
        result = run_module("service", dict({"swarmctl_host": fake.daemon.host, "name": "web", "image": IMAGE},
                                            **args), check_mode=check_mode)
        assert result["failed"] and message in result["msg"], result
        assert "\n" not in result["msg"] and "exception" not in result and "Traceback" not in result["msg"]
    assert fake.daemon.writes() == []


def test_bad_endpoint_mode_for_the_current_ports(fake, run_module):
    base = {"swarmctl_host": fake.daemon.host, "name": "web", "image": IMAGE}
    run_module("service", dict(base, publish=[{"target_port": 80, "published_port": 8080}]))
    result = run_module("service", dict(base, endpoint_mode="dnsrr"))
    assert result["failed"] and result["msg"] == "port published with ingress mode can't be used with dnsrr mode"


def test_port_of_another_service_is_refused_by_the_daemon(fake, run_module):
    base = {"swarmctl_host": fake.daemon.host, "image": IMAGE, "publish": [{"target_port": 80, "published_port": 8080}]}
    assert run_module("service", dict(base, name="web"))["changed"]
    result = run_module("service", dict(base, name="api"))
    assert result["failed"] and result["status"] == 400
    assert result["msg"].startswith("port '8080' is already in use by service 'web'")
