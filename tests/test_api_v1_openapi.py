"""The OpenAPI document at /api/v1/openapi.json against the application's own route table, both
ways: every /api/v1 route is documented with its methods, every documented operation exists."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from storage.api_tokens import create_token
from tests.support.ui import SeededUi, make_ui_app, seed_ui_db


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[SeededUi]:
    seeded = seed_ui_db(tmp_path)
    yield seeded
    seeded.close()


def served_operations(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves under /api/v1."""
    operations = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/v1/") or path == "/api/v1":
            operations.add((route.method.upper(), path))
    return operations


async def test_the_document_and_the_router_agree_both_ways(seeded: SeededUi) -> None:
    with seeded.session_factory.begin() as session:
        token = create_token(session, "booking", ["demo"])[1]
    app = make_ui_app(seeded)
    async with TestClient(TestServer(app)) as client:
        response = await client.get(
            "/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.")
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    served = served_operations(app)
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"
    assert ("POST", "/api/v1/tickets/{id}/reject") in served  # the comparison saw real routes
    assert len(served) >= 7


async def test_every_documented_reference_resolves(seeded: SeededUi) -> None:
    from staff_ui.api_v1 import openapi_document

    document = openapi_document()
    schemas = document["components"]["schemas"]

    def refs(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = set(refs(document))
    assert found, "no references at all"
    for ref in found:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["summary"] and "200" in operation["responses"], (method, path)
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(part[1:-1] for part in path.split("/") if part.startswith("{"))
