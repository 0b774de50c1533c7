"""The test network guard: no test may reach a non-loopback address.

Installed by ``tests/conftest.py`` for the whole session. It covers every way a socket
leaves the machine: ``connect``/``connect_ex`` (TCP and connected UDP), ``sendto`` and
``sendmsg`` (unconnected UDP), ``create_connection``, and name resolution through
``getaddrinfo`` (a DNS lookup is itself traffic). Loopback addresses (127.0.0.0/8, ::1,
``localhost``) and AF_UNIX paths stay allowed.
"""

from __future__ import annotations

import ipaddress
import socket


class NetworkBlocked(RuntimeError):
    pass


_REAL = {
    "connect": socket.socket.connect,
    "connect_ex": socket.socket.connect_ex,
    "sendto": socket.socket.sendto,
    "sendmsg": socket.socket.sendmsg,
    "create_connection": socket.create_connection,
    "getaddrinfo": socket.getaddrinfo,
}


def is_loopback_host(host: object) -> bool:
    """True for ``localhost``, an address in 127.0.0.0/8, or ::1 (and IPv4-mapped loopback)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None:  # getaddrinfo(None, port): the local wildcard/loopback
        return True
    text = str(host).split("%", 1)[0]
    if text.lower() in ("localhost", "localhost.", ""):
        return True
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False  # any other name would need a DNS lookup
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or bool(mapped and mapped.is_loopback)


def _is_local(address: object) -> bool:
    if isinstance(address, tuple) and address:
        return is_loopback_host(address[0])
    return isinstance(address, (str, bytes))  # AF_UNIX paths


def _check(address: object, what: str) -> None:
    if not _is_local(address):
        raise NetworkBlocked(f"test tried to {what} {address!r}: tests never reach the network")


def _connect(self, address):
    _check(address, "open a network connection to")
    return _REAL["connect"](self, address)


def _connect_ex(self, address):
    _check(address, "open a network connection to")
    return _REAL["connect_ex"](self, address)


def _sendto(self, data, *args):
    _check(args[-1], "send a datagram to")
    return _REAL["sendto"](self, data, *args)


def _sendmsg(self, buffers, ancdata=(), flags=0, address=None):
    if address is not None:
        _check(address, "send a message to")
        return _REAL["sendmsg"](self, buffers, ancdata, flags, address)
    return _REAL["sendmsg"](self, buffers, ancdata, flags)


def _create_connection(address, *args, **kwargs):
    _check(address, "open a network connection to")
    return _REAL["create_connection"](address, *args, **kwargs)


def _getaddrinfo(host, *args, **kwargs):
    if not is_loopback_host(host):
        raise NetworkBlocked(f"test tried to resolve {host!r}: tests never reach the network")
    return _REAL["getaddrinfo"](host, *args, **kwargs)


def install() -> None:
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
    socket.socket.sendto = _sendto
    socket.socket.sendmsg = _sendmsg
    socket.create_connection = _create_connection
    socket.getaddrinfo = _getaddrinfo
