import socket

import pytest


def test_outbound_connection_is_blocked():
    from tests.conftest import NetworkBlocked

    with pytest.raises(NetworkBlocked):
        socket.create_connection(("198.51.100.7", 443), timeout=0.1)
    s = socket.socket()
    try:
        with pytest.raises(NetworkBlocked):
            s.connect(("203.0.113.9", 80))
    finally:
        s.close()
