"""`/metrics` is served without a staff session, and only to the addresses in metrics.allow:
on the call server's own listener and on the staff UI (where a request through a trusted
reverse proxy counts as coming from the client the proxy names)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from callserver.metrics import DatabaseCollector, MetricsListener, new_registry
from config.settings import MetricsSettings
from tests.support.ports import free_port
from tests.support.ui import SeededUi, make_ui_app, seed_ui_db

LOCAL = (ipaddress.ip_network("127.0.0.0/8"),)
ELSEWHERE = (ipaddress.ip_network("10.99.0.0/16"),)


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


async def test_the_metrics_listener_answers_allowed_addresses_only(seeded: SeededUi) -> None:
    registry = new_registry(DatabaseCollector(seeded.session_factory))
    for allow, status in (("127.0.0.1/32", 200), ("10.99.0.0/16, ::1/128", 403)):
        port = free_port(socket.SOCK_STREAM)
        listener = MetricsListener(MetricsSettings(f"127.0.0.1:{port}", allow), registry)
        await listener.start()
        try:
            async with aiohttp.ClientSession() as http:
                response = await http.get(f"http://127.0.0.1:{port}/metrics")
                assert response.status == status, allow
                if status == 200:
                    text = await response.text()
                    assert 'callserver_tickets_open{clinic="demo"}' in text
                    assert "callserver_database_up 1.0" in text
        finally:
            await listener.stop()


async def test_the_staff_ui_serves_metrics_without_a_session_to_allowed_addresses(
    seeded: SeededUi,
) -> None:
    async with TestClient(TestServer(make_ui_app(seeded, metrics_allow=LOCAL))) as client:
        await client.get("/login")
        response = await client.get("/metrics")
        assert response.status == 200
        assert 'staff_ui_http_requests_total{method="GET",status="200"}' in await response.text()
    async with TestClient(TestServer(make_ui_app(seeded, metrics_allow=ELSEWHERE))) as client:
        assert (await client.get("/metrics")).status == 403


async def test_through_a_trusted_proxy_the_client_address_decides(seeded: SeededUi) -> None:
    """nginx on the same machine forwards the internet's requests from 127.0.0.1: those must
    not pass for the local Prometheus."""
    app = make_ui_app(seeded, metrics_allow=LOCAL, trusted_proxies=LOCAL)
    async with TestClient(TestServer(app)) as client:
        forwarded = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
        assert forwarded.status == 403
        assert (await client.get("/metrics")).status == 200  # Prometheus itself, no proxy
