"""Join tokens, CA pinning, mutual TLS on the management port and the encrypted Raft port."""

import socket
import ssl
import struct
import time

from tests.integration.harness import check, nodes_json


def node_count(daemon):
    return len(nodes_json(daemon))


def test_bad_tokens_are_refused_and_add_no_node(cluster):
    (m,), _ = cluster.form(1, 0)
    joiner = cluster.daemon(2)
    good = check(m.cli("swarm", "join-token", "-q", "worker")).out.strip()
    prefix, version, digest, secret = good.split("-")
    wrong_secret = "-".join([prefix, version, digest, ("1" if secret[0] != "1" else "2") + secret[1:]])
    wrong_digest = "-".join([prefix, version, ("1" if digest[0] != "1" else "2") + digest[1:], secret])
    cases = {
        wrong_secret: "the token is wrong or has been rotated",
        wrong_digest: "does not match the fingerprint in the join token",
        "SWMTKN-1-abc": "invalid join token",
        "hello": "invalid join token",
    }
    for token, message in cases.items():
        result = joiner.cli("swarm", "join", "--token", token, m.addr)
        assert result.code != 0, token
        assert message in result.err, (token, result.err)
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
    check(m.cli("swarm", "join-token", "--rotate", "worker"))
    result = joiner.cli("swarm", "join", "--token", good, m.addr)
    assert result.code != 0 and "rotated" in result.err
    assert node_count(m) == 1
    assert joiner.info()["local_node_state"] == "inactive"
    # the rotated token works, and joining twice is refused
    fresh = check(m.cli("swarm", "join-token", "-q", "worker")).out.strip()
    check(joiner.cli("swarm", "join", "--token", fresh, m.addr))
    again = joiner.cli("swarm", "join", "--token", fresh, m.addr)
    assert again.code != 0 and "already part of a swarm" in again.err
    assert node_count(m) == 2


def test_unreachable_manager_is_a_clear_error(cluster):
    (m,), _ = cluster.form(1, 0)
    joiner = cluster.daemon(2)
    token = check(m.cli("swarm", "join-token", "-q", "worker")).out.strip()
    start = time.monotonic()
    result = joiner.cli("swarm", "join", "--token", token, "127.0.0.99:2377")
    assert result.code != 0 and "could not connect to the manager at 127.0.0.99:2377" in result.err
    assert time.monotonic() - start < 15


def _https_get(addr, path, context):
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_management_port_requires_a_node_certificate(cluster):
    managers, _ = cluster.form(1, 0)
    m = managers[0]
    anonymous = ssl.create_default_context()
    anonymous.check_hostname = False
    anonymous.verify_mode = ssl.CERT_NONE
    status, _ = _https_get(m.addr, "/v1/ca", anonymous)  # the bootstrap endpoint is open, as in Swarm
    assert status == 200
    for path in ("/v1/nodes", "/v1/swarm", "/v1/swarm/join-token/worker", "/v1/info"):
        status, body = _https_get(m.addr, path, anonymous)
        assert status in (401, 403), (path, status, body)
        assert b"SWMTKN" not in body
    # plain HTTP is not spoken at all
    with socket.create_connection(m.addr.split(":")[0:1] + [int(m.addr.split(":")[1])], timeout=5) as raw:
        raw.sendall(b"GET /v1/nodes HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.settimeout(5)
        try:
            answer = raw.recv(1024)
        except (ConnectionResetError, socket.timeout):
            answer = b""
        assert b"200 OK" not in answer


def test_raft_port_rejects_unencrypted_traffic(cluster):
    """The Raft port speaks only mutual TLS (swarmctl/state/transport.py): pysyncobj's plain messages and a
    TLS client without a node certificate are dropped, and nothing changes."""
    managers, _ = cluster.form(2, 0)
    raft_host, raft_port = managers[0].ip, managers[0].port + 1
    import pickle
    import zlib
    # a pysyncobj 'status' utility request, a bogus membership change and a node address, unencrypted
    for message in (["status"], ["add", "127.0.0.66:9999"], "127.0.0.12:2378"):
        payload = zlib.compress(pickle.dumps(message))
        with socket.create_connection((raft_host, raft_port), timeout=5) as s:
            s.sendall(struct.pack("i", len(payload)) + payload)
            s.settimeout(3)
            answer = b""
            try:
                while chunk := s.recv(4096):
                    answer += chunk
            except (ConnectionResetError, socket.timeout):
                pass
            # at most a TLS alert record (content type 21), never a pysyncobj answer
            assert answer == b"" or (answer[0] == 21 and len(answer) < 64), answer
    # TLS without a client certificate: the handshake is refused
    anonymous = ssl.create_default_context()
    anonymous.check_hostname = False
    anonymous.verify_mode = ssl.CERT_NONE
    with socket.create_connection((raft_host, raft_port), timeout=5) as raw:
        try:
            with anonymous.wrap_socket(raw) as tls:
                tls.settimeout(3)
                tls.sendall(b"\0\0\0\x10\x01" + b"{}" * 8)
                assert tls.recv(4096) == b""
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass
    info = managers[0].info()
    assert sorted(info["raft"]["members"]) == ["127.0.0.11:2378", "127.0.0.12:2378"]
    check(managers[1].cli("node", "update", "--label-add", "still=working", "node1"))
