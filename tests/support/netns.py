"""A network namespace a test creates for a peer, joined to the host by a veth pair of its own.

Some peers cannot be kept on loopback: a softphone picks the address of the interface with the
default route for its SDP (Linphone on this machine offered eth0's fd00::2), and it listens on
the standard SIP port 5060, which the host may already use. In a namespace of its own the peer
has its own port space, and its default route is the veth pair: every packet stays between the
two ends the test made (the host is not a router and forwards nothing). Each end gets a private
IPv4 /30 and a unique-local IPv6 /64 chosen at random, so parallel runs do not collide. The
namespace, the pair and its addresses are removed in `finally`, whatever the test did.

Needs root and iproute2; where either is missing the test is skipped with the reason (and fails
under CI: tests/support/tools.py).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.tools import have, unavailable


@dataclass(frozen=True)
class NetNamespace:
    name: str
    host_if: str  # our end of the veth pair, in the host's namespace
    peer_if: str  # the namespace's end
    host_v4: str
    peer_v4: str
    host_v6: str
    peer_v6: str

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside the namespace (`ip netns exec` execs it: the PID is the program's)."""
        return ["ip", "netns", "exec", self.name, *argv]


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _free_v4_net() -> ipaddress.IPv4Network:
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, timeout=20)
    taken = [
        ipaddress.ip_network(line.split()[0], strict=False)
        for line in routes.stdout.splitlines()
        if line and line.split()[0][0].isdigit()
    ]
    for _ in range(100):
        second, third = 200 + secrets.randbelow(50), secrets.randbelow(256)
        fourth = secrets.randbelow(64) * 4
        net = ipaddress.IPv4Network(f"10.{second}.{third}.{fourth}/30")
        if not any(net.overlaps(other) for other in taken):
            return net
    raise RuntimeError("no free private /30 for the test namespace")


@contextlib.contextmanager
def net_namespace() -> Iterator[NetNamespace]:
    """A namespace with a veth pair to the host and default routes (v4 and v6) over it."""
    if not have("ip"):
        unavailable("ip is not installed", "apt-get install --no-install-recommends iproute2")
    if os.geteuid() != 0:
        unavailable(
            "creating a network namespace needs root",
            "run this test as root (`make test` runs the suite as root)",
        )
    tag = secrets.token_hex(3)
    v4 = _free_v4_net()
    v6 = ipaddress.IPv6Network(f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:{tag[:4]}::/64")
    host4, peer4 = (str(a) for a in list(v4.hosts())[:2])
    ns = NetNamespace(
        name=f"callserver-test-{tag}", host_if=f"cs{tag}h", peer_if=f"cs{tag}n",
        host_v4=host4, peer_v4=peer4, host_v6=str(v6[1]), peer_v6=str(v6[2]),
    )  # fmt: skip
    try:
        try:
            _ip("netns", "add", ns.name)
        except RuntimeError as exc:
            unavailable(f"cannot create a network namespace here ({exc})", "run as root on Linux")
        _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.peer_if)
        _ip("link", "set", ns.peer_if, "netns", ns.name)
        _ip("addr", "add", f"{ns.host_v4}/30", "dev", ns.host_if)
        _ip("addr", "add", f"{ns.host_v6}/64", "dev", ns.host_if, "nodad")
        _ip("link", "set", ns.host_if, "up")
        inside = ("-n", ns.name)
        _ip(*inside, "addr", "add", f"{ns.peer_v4}/30", "dev", ns.peer_if)
        _ip(*inside, "addr", "add", f"{ns.peer_v6}/64", "dev", ns.peer_if, "nodad")
        _ip(*inside, "link", "set", ns.peer_if, "up")
        _ip(*inside, "link", "set", "lo", "up")
        # The peer picks its SDP address from the default route: make it this pair.
        _ip(*inside, "route", "add", "default", "via", ns.host_v4)
        _ip(*inside, "-6", "route", "add", "default", "via", ns.host_v6)
        yield ns
    finally:
        with contextlib.suppress(RuntimeError):
            _ip("link", "del", ns.host_if)  # removes both ends
        with contextlib.suppress(RuntimeError):
            _ip("netns", "del", ns.name)
