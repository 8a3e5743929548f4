"""The staff UI's own figures at `/metrics`: requests by method and status, and their time.

Served by the UI's process (which may be `callserver serve` or a separate web process) to the
addresses in metrics.allow only, and without a staff session; anyone else gets 403. The client
address is the one the access log uses: behind a trusted reverse proxy, the client named in
X-Forwarded-For, so a request from the internet through the proxy is not taken for the local
Prometheus.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from staff_ui.auth import Handler

Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
PATH = "/metrics"


def _allowed(remote: str | None, networks: Networks) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def metrics_middleware(allow: Networks) -> Middleware:
    """Count every request; answer `/metrics` itself (before sessions and logins)."""
    registry = CollectorRegistry()
    requests = Counter(
        "staff_ui_http_requests", "Staff UI requests by method and status",
        ["method", "status"], registry=registry,
    )  # fmt: skip
    seconds = Histogram(
        "staff_ui_http_request_seconds", "Time to answer a staff UI request", registry=registry
    )
    networks = tuple(allow)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == PATH and request.method == "GET":
            if not _allowed(request.remote, networks):
                raise web.HTTPForbidden(text="metrics are not served to this address")
            return web.Response(
                body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            requests.labels(request.method, str(status)).inc()
            seconds.observe(time.monotonic() - started)

    return middleware
