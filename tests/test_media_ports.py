"""The RTP port pool never hands out a port that is in use, and says clearly when it runs out."""

import socket

import pytest

from callserver.media.ports import NoMediaPortError, PortPool

HOST = "127.0.0.1"


def free_even_ports(count: int) -> int:
    """The first of ``count`` consecutive even ports that are free now (chosen at run time)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, 0))
            base = probe.getsockname()[1] & ~1
        if base + 2 * count > 65535:
            continue
        probes = []
        try:
            for i in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(s)
                s.bind((HOST, base + 2 * i))
            return base
        except OSError:
            continue
        finally:
            for s in probes:
                s.close()
    raise RuntimeError("no run of free even UDP ports found on 127.0.0.1")


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def test_hands_out_bound_nonblocking_sockets_on_even_ports_in_range():
    low = free_even_ports(3)
    pool = PortPool(HOST, low - 1, low + 5)  # an odd low bound is rounded up to the even port
    socks = [pool.acquire() for _ in range(3)]
    try:
        assert sorted(port_of(s) for s in socks) == [low, low + 2, low + 4]
        assert all(not s.getblocking() for s in socks)
        assert pool.in_use == 3
    finally:
        for s in socks:
            s.close()


def test_port_held_by_another_socket_is_skipped():
    low = free_even_ports(2)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((HOST, low))
    try:
        pool = PortPool(HOST, low, low + 2)
        sock = pool.acquire()
        assert port_of(sock) == low + 2
        sock.close()
    finally:
        squatter.close()


def test_exhausted_range_raises_with_advice_for_the_operator():
    low = free_even_ports(1)
    pool = PortPool(HOST, low, low + 1)
    sock = pool.acquire()
    try:
        with pytest.raises(NoMediaPortError) as excinfo:
            pool.acquire()
        message = str(excinfo.value)
        assert f"{low}-{low + 1}" in message
        assert "1 of 1" in message
        assert "widen sip.rtp_port_low/high" in message
    finally:
        sock.close()


def test_released_port_is_handed_out_again():
    low = free_even_ports(1)
    pool = PortPool(HOST, low, low)
    first = pool.acquire()
    port = port_of(first)
    first.close()
    pool.release(port)
    second = pool.acquire()
    assert port_of(second) == low
    second.close()


def test_port_still_bound_after_release_is_not_handed_out_twice():
    low = free_even_ports(1)
    pool = PortPool(HOST, low, low)
    first = pool.acquire()
    pool.release(port_of(first))  # released too early: the socket is still open
    try:
        with pytest.raises(NoMediaPortError):
            pool.acquire()
    finally:
        first.close()


def test_allocation_rotates_instead_of_reusing_the_last_port_at_once():
    low = free_even_ports(2)
    pool = PortPool(HOST, low, low + 2)
    first = pool.acquire()
    port = port_of(first)
    first.close()
    pool.release(port)
    second = pool.acquire()
    assert port == low
    assert port_of(second) == low + 2
    second.close()


@pytest.mark.parametrize("low,high", [(1001, 1001), (2000, 1000), (0, 10), (65534, 65536)])
def test_range_without_even_ports_is_rejected(low, high):
    with pytest.raises(ValueError, match="sip.rtp_port_low/high"):
        PortPool(HOST, low, high)
