"""Published ports: Docker's --publish syntax and texts, the leader's checks (conflicts, the dynamic range), the
task host ports and the host-mode filter, the tasks' port variables and placeholders, and the PORTS column."""

from __future__ import annotations

import collections
import types

import pytest
from hypothesis import given, strategies as st

from swarmctl.agent import templates
from swarmctl.agent.worker import container_spec, port_env
from swarmctl.cli import service_cmds as sc
from swarmctl.cli.units import UnitError
from swarmctl.errors import BadRequest
from swarmctl.manager import orchestrator, services
from swarmctl.manager.orchestrator.taskports import TaskPortAllocator, used_ports
from swarmctl.manager.scheduler import scheduler
from swarmctl.mesh import ports
from swarmctl.state.machine import StateMachine
from swarmctl.state.records import default_task_spec, new_node

NOW = 1000.0


# ---- syntax ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("published=8080,target=80", (8080, 80, "tcp", "ingress")),
    ("target=53,published=5353,protocol=udp", (5353, 53, "udp", "ingress")),
    ("published=9000,target=9000,mode=host", (9000, 9000, "tcp", "host")),
    ("target=80", (None, 80, "tcp", "ingress")),
    ("8080:80", (8080, 80, "tcp", "ingress")),
    ("8080:80/udp", (8080, 80, "udp", "ingress")),
    ("80", (None, 80, "tcp", "ingress")),
    (":80", (None, 80, "tcp", "ingress")),
])
def test_publish_syntax(text, expected):
    p = ports.parse_publish(text)
    assert (p["published_port"], p["target_port"], p["protocol"], p["publish_mode"]) == expected


@pytest.mark.parametrize("text, message", [
    ("published=8080", "missing mandatory field 'target'"),
    ("published=8080,target=80,protocol=sctp", "invalid protocol value 'sctp'"),
    ("published=8080,target=80,mode=bridge", "invalid publish mode value (bridge)"),
    ("published=8080,target=80,colour=red", "invalid field key 'colour'"),
    ("published=8080,target", "invalid field 'target' must be a key=value pair"),
    ("published=70000,target=80", "invalid published port 70000: must be in range 1-65535"),
    ("8080:0", "invalid containerPort 0: must be in range 1-65535"),
    ("127.0.0.1:8080:80", "hostip is not supported"),
    ("web:80", "invalid hostPort: 'web' is not a port number"),
    ("8080:80/sctp", "invalid proto: sctp"),
])
def test_bad_publish_syntax_is_named(text, message):
    with pytest.raises(ports.PortError) as err:
        ports.parse_publish(text)
    assert message in str(err.value)


def test_the_cli_wraps_bad_publish_values_as_docker_does():
    with pytest.raises(UnitError) as err:
        sc.publish_list(["8080:http"])
    assert str(err.value).startswith('invalid argument "8080:http" for "-p, --publish" flag: ')


@given(st.integers(1, 65535), st.integers(1, 65535), st.sampled_from(ports.PROTOCOLS))
def test_long_and_short_forms_agree(published, target, protocol):
    long = ports.parse_publish(f"published={published},target={target},protocol={protocol}")
    short = ports.parse_publish(f"{published}:{target}/{protocol}")
    assert long == short
    assert ports.check_endpoint({"ports": [long]})["ports"] == [long]
    assert ports.format_ports({"ports": [long]}) == f"*:{published}->{target}/{protocol}"


def test_endpoint_checks():
    assert ports.check_endpoint(None) == {"mode": "vip", "ports": []}
    with pytest.raises(ports.PortError, match="port published with ingress mode can't be used with dnsrr mode"):
        ports.check_endpoint({"mode": "dnsrr", "ports": [{"target_port": 80, "published_port": 8080}]})
    with pytest.raises(ports.PortError, match="duplicate published port 8080/tcp"):
        ports.check_endpoint({"ports": [{"target_port": 80, "published_port": 8080},
                                        {"target_port": 81, "published_port": 8080}]})
    assert ports.check_endpoint({"ports": [{"target_port": 80, "published_port": 8080},
                                           {"target_port": 80, "published_port": 8080, "protocol": "udp"}]})
    host = ports.check_endpoint({"ports": [{"target_port": 9000, "publish_mode": "host"}]})["ports"][0]
    assert host["published_port"] == 9000
    with pytest.raises(ports.PortError, match="must be the target port"):
        ports.check_endpoint({"ports": [{"target_port": 80, "published_port": 8080, "publish_mode": "host"}]})


def test_ports_column():
    endpoint = {"ports": [{"published_port": 8080, "target_port": 80, "protocol": "tcp"},
                          {"published_port": 5353, "target_port": 53, "protocol": "udp"}]}
    assert ports.format_ports(endpoint) == "*:8080->80/tcp, *:5353->53/udp"
    assert ports.format_ports(None) == ""


# ---- the leader's checks -----------------------------------------------------------------------
def _service(name, *port_list, sid=None):
    spec = services.build_spec({"name": name, "task": {"image": "busybox"},
                                "endpoint": {"ports": list(port_list)}})
    return {"id": sid or f"id-{name}", "spec": spec}


def test_a_published_port_of_another_service_is_refused_with_dockers_text():
    web = _service("web", {"target_port": 80, "published_port": 8080})
    new = _service("api", {"target_port": 81, "published_port": 8080})
    with pytest.raises(BadRequest) as err:
        services.allocate_published([web], new["spec"]["endpoint"], None)
    assert str(err.value) == "port '8080' is already in use by service 'web' (id-web) as an ingress port"
    # another protocol on the same number is free
    udp = _service("dns", {"target_port": 53, "published_port": 8080, "protocol": "udp"})
    assert services.allocate_published([web], udp["spec"]["endpoint"], None)["ports"][0]["published_port"] == 8080


def test_host_mode_ports_may_be_shared_but_not_with_an_ingress_port():
    a = _service("a", {"target_port": 9000, "publish_mode": "host"})
    b = _service("b", {"target_port": 9000, "publish_mode": "host"})
    assert services.allocate_published([a], b["spec"]["endpoint"], None)["ports"][0]["published_port"] == 9000
    c = _service("c", {"target_port": 80, "published_port": 9000})
    with pytest.raises(BadRequest, match="as a host-published port"):
        services.allocate_published([a], c["spec"]["endpoint"], None)


def test_omitted_published_ports_come_from_the_dynamic_range_and_are_kept_on_update():
    first = _service("a", {"target_port": 80})
    first["spec"]["endpoint"] = services.allocate_published([], first["spec"]["endpoint"], None)
    assert first["spec"]["endpoint"]["ports"][0]["published_port"] == 30000
    second = _service("b", {"target_port": 80}, {"target_port": 81})
    got = services.allocate_published([first], second["spec"]["endpoint"], None)
    assert [p["published_port"] for p in got["ports"]] == [30001, 30002]
    # an update that leaves the published port out keeps the one the service had
    again = services.allocate_published([first], second["spec"]["endpoint"], got)
    assert again == got


def test_bad_endpoints_are_refused_by_the_spec_check():
    for endpoint in ({"ports": [{"target_port": 0}]}, {"ports": [{"target_port": 80, "protocol": "sctp"}]},
                     {"mode": "dnsrr", "ports": [{"target_port": 80}]}, {"ports": "80"}):
        with pytest.raises(BadRequest):
            services.build_spec({"name": "web", "task": {"image": "busybox"}, "endpoint": endpoint})


def test_publish_add_and_rm_build_the_new_endpoint():
    old = {"mode": "vip", "ports": [{"protocol": "tcp", "target_port": 80, "published_port": 8080,
                                     "publish_mode": "ingress"}]}
    args = types.SimpleNamespace(publish_add=["9090:90"], publish_rm=["8080"], endpoint_mode=None)
    assert sc.updated_endpoint(args, old) == {"mode": "vip", "ports": [
        {"protocol": "tcp", "target_port": 90, "published_port": 9090, "publish_mode": "ingress"}]}
    args = types.SimpleNamespace(publish_add=["8080:81"], publish_rm=[], endpoint_mode=None)
    assert [p["target_port"] for p in sc.updated_endpoint(args, old)["ports"]] == [81]
    args = types.SimpleNamespace(publish_add=[], publish_rm=[], endpoint_mode=None)
    assert sc.updated_endpoint(args, old) is None


# ---- task ports and the host-mode filter -------------------------------------------------------
def node(name):
    n = new_node(f"id-{name}", "worker", name, f"127.0.0.{10 + int(name[1:])}",
                 resources={"cpus": 4.0, "memory": 4e9})
    n["status"]["state"] = "ready"
    return n


def service_record(name, replicas, *port_list):
    spec = services.build_spec({"name": name, "replicas": replicas, "task": {"image": "img"},
                                "endpoint": {"ports": list(port_list)}})
    spec["endpoint"] = services.allocate_published([], spec["endpoint"], None)
    return {"id": f"svc-{name}", "spec": spec, "spec_version": 1}


def run(service_list, nodes, rounds=3, port_range=None):
    """Orchestrate (with the task port allocator, as the Orchestrator does) and schedule a few rounds."""
    m = StateMachine()
    m.apply_batch([(None, NOW, [{"op": "put", "kind": "node", "id": n["id"], "record": n} for n in nodes] +
                    [{"op": "put", "kind": "service", "id": s["id"], "record": s} for s in service_list])])
    allocator = TaskPortAllocator()
    cluster = {"spec": {"task_port_range": port_range}} if port_range else None
    for _ in range(rounds):
        ops = orchestrator.plan(m.list("service"), m.list("task"), m.list("node"), now=NOW)
        allocator.assign(ops, {s["id"]: s for s in m.list("service")}, lambda: m.list("task"), cluster)
        if ops:
            m.apply_batch([(None, NOW, ops)])
        ops = scheduler.plan(m.list("task"), m.list("node"), now=NOW)
        if ops:
            m.apply_batch([(None, NOW, ops)])
    return m


def test_every_task_gets_its_own_host_port_from_the_range():
    web = service_record("web", 5, {"target_port": 80, "published_port": 8080},
                         {"target_port": 53, "published_port": 53, "protocol": "udp"},
                         {"target_port": 53, "published_port": 53, "protocol": "tcp"})
    api = service_record("api", 4, {"target_port": 80, "published_port": 8081})
    m = run([web, api], [node("n1"), node("n2")])
    tasks = m.list("task")
    assert len(tasks) == 9
    held = [p["port"] for t in tasks for p in t["ports"] if not (p["protocol"] == "udp")]
    assert len(set(held)) == len(held) and all(20000 <= p <= 29999 for p in held)
    for t in tasks:
        if t["service_id"] == web["id"]:
            by = {(p["target"], p["protocol"]): p["port"] for p in t["ports"]}
            assert by[(53, "udp")] == by[(53, "tcp")]  # one target, one port on both protocols
            assert {p["published"] for p in t["ports"]} == {8080, 53}


def test_a_full_task_port_range_gives_no_port_and_says_so():
    web = service_record("web", 3, {"target_port": 80, "published_port": 8080})
    m = run([web], [node("n1")], rounds=1, port_range=[20000, 20001])
    assert sorted(len(t["ports"]) for t in m.list("task")) == [0, 1, 1]


def test_ports_of_ended_tasks_are_free_again_but_not_at_once():
    allocator = TaskPortAllocator()
    svc = service_record("web", 1, {"target_port": 80, "published_port": 8080})
    make = lambda: {"op": "create", "kind": "task", "record": {"service_id": svc["id"], "service_name": "web"}}
    first, second = make(), make()
    allocator.assign([first], {svc["id"]: svc}, lambda: [], None)
    allocator.assign([second], {svc["id"]: svc}, lambda: [], None)
    assert first["record"]["ports"][0]["port"] == 20000 and second["record"]["ports"][0]["port"] == 20001
    ended = dict(first["record"], status={"state": "shutdown"})
    assert used_ports([ended]) == set()


def test_host_mode_ports_keep_tasks_on_different_nodes_and_say_why_when_they_cannot():
    web = service_record("web", 3, {"target_port": 9000, "publish_mode": "host"})
    m = run([web], [node("n1"), node("n2")])
    placed = collections.Counter(t["node_id"] for t in m.list("task") if t["status"]["state"] == "assigned")
    assert placed == {"id-n1": 1, "id-n2": 1}
    pending = [t for t in m.list("task") if t["status"]["state"] == "pending"]
    assert len(pending) == 1
    assert pending[0]["status"]["message"] == "no suitable node (host-mode port already in use on 2 nodes)"
    # another service on the same host port cannot go there either
    other = service_record("other", 1, {"target_port": 9000, "publish_mode": "host"})
    m2 = run([web, other], [node("n1"), node("n2"), node("n3")])
    per_node = collections.Counter(t["node_id"] for t in m2.list("task") if t["status"]["state"] == "assigned")
    assert max(per_node.values()) == 1 and sum(per_node.values()) == 3


# ---- what a task is given ----------------------------------------------------------------------
def _task(**extra):
    spec = default_task_spec()
    spec.update(image="img", env={"WHO": "{{.Service.Name}}-{{.Task.Slot}}@{{.Node.Hostname}}"},
                hostname="{{.Service.Name}}-{{.Task.Slot}}")
    task = {"id": "t1", "service_id": "s1", "service_name": "web", "slot": 2, "node_id": "n1", "spec": spec}
    task.update(extra)
    return task


def test_port_variables():
    ports_ = [{"target": 80, "protocol": "tcp", "port": 20005, "mode": "ingress", "published": 8080},
              {"target": 53, "protocol": "tcp", "port": 20006, "mode": "ingress", "published": 53},
              {"target": 53, "protocol": "udp", "port": 20006, "mode": "ingress", "published": 53}]
    env = port_env({"ports": ports_}, "127.0.0.12")
    assert env["PORT"] == "20005"
    assert env["SWARMCTL_PORT_80"] == "20005" and env["SWARMCTL_ADDR_80"] == "127.0.0.12:20005"
    assert env["SWARMCTL_PORT_53"] == env["SWARMCTL_PORT_53_UDP"] == "20006"
    assert port_env({"ports": []}, None) == {}


def test_placeholders_in_env_and_hostname():
    spec = container_spec(_task(ports=[{"target": 80, "protocol": "tcp", "port": 20001, "mode": "ingress",
                                        "published": 8080}]), "n1", "127.0.0.12", "node-a", ["127.0.0.12"])
    assert spec.env["WHO"] == "web-2@node-a"
    assert spec.env["PORT"] == "20001"
    assert spec.hostname == "web-2"
    assert spec.dns == ["127.0.0.12"]
    values = templates.context(_task(), "n1", "node-a")
    assert templates.expand("{{.Task.Name}} {{ .Task.ID }} {{.Node.ID}} {{.Service.ID}}", values) == \
        "web.2.t1 t1 n1 s1"


def test_unknown_placeholders_are_refused_at_create():
    with pytest.raises(BadRequest, match="unknown placeholder"):
        services.build_spec({"name": "web", "task": {"image": "img", "env": {"A": "{{.Service.Labels}}"}}})
    with pytest.raises(BadRequest, match="cannot parse"):
        services.build_spec({"name": "web", "task": {"image": "img", "hostname": "{{.Task.Slot"}})
