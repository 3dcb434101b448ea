"""Every HTTP answer of the gateway is in the one JSON error shape, even for a failure a handler did
not expect: a bug is a JSON 500 without internals, a broker fault a JSON 503."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mesh.errors import Unavailable
from services.gateway._guard import Guard
from services.gateway._http import http_app


async def _broken_getter(task_id: str, principal: object) -> object:
    raise RuntimeError("secret internals of the gateway")


async def _down_listing(tenant: str, limit: int, token: str, principal: object, wanted: object) -> object:
    raise Unavailable("the event store did not answer")


@pytest.fixture
async def client() -> TestClient:  # type: ignore[type-arg]
    app = http_app(None, None, guard=Guard.disabled(None), getter=_broken_getter, listing=_down_listing)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_an_unexpected_exception_is_a_json_500_without_internals(client: TestClient) -> None:  # type: ignore[type-arg]
    """A handler that raises something unexpected answers 500 in the error shape, its text withheld."""
    response = await client.get("/v1/tasks/some-task")
    assert response.status == 500
    body = await response.json()
    assert body["type"] == "error" and body["error_class"] == "internal"
    assert "secret" not in body["message"]


async def test_an_unanswered_mesh_error_keeps_its_status(client: TestClient) -> None:  # type: ignore[type-arg]
    """A MeshError a handler lets through (a broker fault) is answered with its class's status and shape."""
    response = await client.get("/v1/tasks?tenant=acme")
    assert response.status == 503
    assert (await response.json())["error_class"] == "dependency_down"
