"""Nodes renew their certificates before they expire, and keep their sessions past the old expiry.

`swarm update --cert-expiry 1m` makes the next certificates short-lived; a worker that joins then renews its
own certificate at 50-80% of that minute and loads it into the TLS contexts it serves and calls with. After
the first certificate has expired the worker is still Ready (its heartbeats pass mutual TLS with the new
certificate) and its management port presents the new certificate.
"""

import socket
import ssl
import time
from datetime import datetime

from cryptography import x509

from tests.integration.harness import check, nodes_json, wait_for


def served_certificate(daemon) -> x509.Certificate:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((daemon.ip, daemon.port), timeout=5) as raw, ctx.wrap_socket(raw) as conn:
        return x509.load_der_x509_certificate(conn.getpeercert(binary_form=True))


def node_record(daemon, name):
    return next(n for n in nodes_json(daemon) if n["description"]["hostname"] == name)


def test_cert_expiry_bounds_are_checked(cluster):
    managers, _ = cluster.form(1, 0)
    m = managers[0]
    for bad in ("30s", "soon"):
        res = m.cli("swarm", "update", "--cert-expiry", bad)
        assert res.code != 0 and "certificate expiry" in res.err, res
    spec = check(m.cli("swarm", "inspect")).json()["spec"]
    assert spec["node_cert_expiry"] == 90 * 24 * 3600


def test_worker_renews_its_certificate_before_expiry(cluster):
    managers, _ = cluster.form(1, 0)
    m = managers[0]
    check(m.cli("swarm", "update", "--cert-expiry", "1m"))
    assert check(m.cli("swarm", "inspect")).json()["spec"]["node_cert_expiry"] == 60
    worker = cluster.join(2)
    first = served_certificate(worker)
    life = first.not_valid_after_utc - datetime.now(first.not_valid_after_utc.tzinfo)
    assert 40 < life.total_seconds() <= 60
    first_serial = format(first.serial_number, "x")
    wait_for(lambda: (node_record(m, "node2")["description"].get("tls") or {}).get("serial") == first_serial,
             what="the worker reports its certificate")
    # renewal is due between 30 and 48 s after issue
    wait_for(lambda: node_record(m, "node2")["description"]["tls"]["serial"] != first_serial, timeout=55,
             interval=0.5, what="the worker renewed its certificate")
    renewed = served_certificate(worker)
    assert renewed.serial_number != first.serial_number
    assert renewed.not_valid_after_utc > first.not_valid_after_utc
    # past the first certificate's expiry, the session and the management port still work
    remaining = (first.not_valid_after_utc - datetime.now(first.not_valid_after_utc.tzinfo)).total_seconds()
    time.sleep(max(0.0, remaining) + 2.0)
    record = node_record(m, "node2")
    assert record["status"]["state"] == "ready", record["status"]
    check(m.cli("node", "update", "--label-add", "renewed=yes", "node2"))
    assert served_certificate(worker).not_valid_after_utc > first.not_valid_after_utc
    assert "renewing the node certificate" not in worker.tail(200)  # no failed attempt on the way
