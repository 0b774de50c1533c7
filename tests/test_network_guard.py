"""The network guard blocks every way out to a non-loopback address, and only those.

Addresses are from the documentation ranges (RFC 5737 / RFC 3849), so nothing would be
reached even if the guard failed; a real loopback server shows that local traffic works.
"""

import socket
import threading

import pytest

from tests.netguard import NetworkBlocked, is_loopback_host

OUT_V4 = ("198.51.100.7", 443)
OUT_V6 = ("2001:db8::1", 443)


def test_tcp_connect_paths_are_blocked():
    with pytest.raises(NetworkBlocked):
        socket.create_connection(OUT_V4, timeout=0.1)
    with socket.socket() as s:
        with pytest.raises(NetworkBlocked):
            s.connect(("203.0.113.9", 80))
        with pytest.raises(NetworkBlocked):
            s.connect_ex(("203.0.113.9", 80))


def test_ipv6_connect_is_blocked():
    with socket.socket(socket.AF_INET6) as s, pytest.raises(NetworkBlocked):
        s.connect_ex(OUT_V6[:2] + (0, 0))


def test_udp_sendto_and_sendmsg_are_blocked():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        with pytest.raises(NetworkBlocked):
            s.sendto(b"x", OUT_V4)
        with pytest.raises(NetworkBlocked):
            s.sendto(b"x", 0, OUT_V4)
        with pytest.raises(NetworkBlocked):
            s.sendmsg([b"x"], [], 0, OUT_V4)


def test_name_lookup_is_blocked():
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("example.org", 443)
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("example.org", 443), timeout=0.1)


@pytest.mark.parametrize("host, local", [
    ("localhost", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
    ("::ffff:127.0.0.1", True), (b"127.0.0.1", True), ("128.0.0.1", False),
    ("10.0.0.1", False), ("192.168.1.1", False), ("2001:db8::1", False), ("example.org", False),
])
def test_loopback_classification(host, local):
    assert is_loopback_host(host) is local


def test_loopback_traffic_still_works():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = []

    def serve():
        conn, _ = srv.accept()
        with conn:
            got.append(conn.recv(16))

    t = threading.Thread(target=serve)
    t.start()
    with socket.create_connection(("localhost", port), timeout=5) as c:
        c.sendall(b"ping")
    t.join(5)
    srv.close()
    assert got == [b"ping"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        b.bind(("127.0.0.1", 0))
        a.sendto(b"pong", b.getsockname())
        assert b.recv(16) == b"pong"
