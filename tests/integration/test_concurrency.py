"""Concurrent updates through several managers are never silently lost: each either lands in the final spec
or fails with Docker's "update out of sequence" (the CLI retried it at most 3 times meanwhile)."""

from concurrent.futures import ThreadPoolExecutor

from tests.integration.harness import check, wait_for


def test_twenty_concurrent_env_updates_over_three_managers(docker_cluster):
    managers, _ = docker_cluster.form(3, 0)
    check(managers[0].cli("service", "create", "-d", "--name", "web", "--replicas", "0", docker_cluster.image))
    wait_for(lambda: all(m.cli("service", "inspect", "web").ok for m in managers), what="web on every manager")

    def update(i):
        return managers[i % 3].cli("service", "update", "-d", "--env-add", f"KEY{i}=value{i}", "web", timeout=120)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(update, range(20)))
    service = check(managers[0].cli("service", "inspect", "web")).json()
    env = service["spec"]["task"]["env"]
    succeeded = [i for i, r in enumerate(results) if r.ok]
    for i, result in enumerate(results):
        if result.ok:
            assert env.get(f"KEY{i}") == f"value{i}", (i, env)
        else:
            assert result.err.strip() == "Error response from daemon: update out of sequence", (i, result.err)
            assert f"KEY{i}" not in env, (i, env)
    assert succeeded, [r.err for r in results]
    # every success changed the task spec exactly once: nothing applied twice, nothing lost
    assert service["spec_version"] == 1 + len(succeeded) and len(env) == len(succeeded)
    print(f"{len(succeeded)} of 20 concurrent updates applied, {20 - len(succeeded)} refused as out of sequence")


def test_management_port_cuts_off_slow_clients(cluster):
    """A client that never finishes its TLS handshake, and one that sends its request headers a byte at a time
    (a slowloris), are both disconnected within their timeouts; the port keeps serving everyone else."""
    import socket
    import ssl
    import threading
    import time

    from swarmctl.api import limits

    (m,), _ = cluster.form(1, 0)
    results = {}

    def silent():  # TCP only: no ClientHello ever
        sock = socket.create_connection((m.ip, m.port), timeout=limits.HANDSHAKE_TIMEOUT + 10)
        start = time.monotonic()
        try:
            results["silent"] = (sock.recv(1), time.monotonic() - start)
        except OSError as exc:
            results["silent"] = (exc, time.monotonic() - start)
        finally:
            sock.close()

    def slowloris():
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        sock = ctx.wrap_socket(socket.create_connection((m.ip, m.port), timeout=5))
        start = time.monotonic()
        request = b"GET /v1/ca HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        try:
            for byte in request:
                sock.send(bytes([byte]))
                time.sleep(0.5)
                if time.monotonic() - start > limits.HEADER_TIMEOUT + 10:
                    break
            results["slow"] = ("still open", time.monotonic() - start)
        except OSError as exc:
            results["slow"] = (exc, time.monotonic() - start)
        finally:
            sock.close()

    threads = [threading.Thread(target=silent), threading.Thread(target=slowloris)]
    for t in threads:
        t.start()
    time.sleep(1)
    assert m.cli("node", "ls").ok  # served meanwhile (its heartbeats use the same port)
    for t in threads:
        t.join(limits.HEADER_TIMEOUT + 30)
    outcome, took = results["silent"]
    assert outcome in (b"",) or isinstance(outcome, OSError), outcome
    assert limits.HANDSHAKE_TIMEOUT - 1 <= took <= limits.HANDSHAKE_TIMEOUT + 3, took
    outcome, took = results["slow"]
    assert isinstance(outcome, OSError), outcome
    assert took <= limits.HEADER_TIMEOUT + 3, took
