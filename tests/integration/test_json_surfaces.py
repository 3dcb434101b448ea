"""The gateway's JSON surfaces through Envoy, with auth on: bounded JSON, unknown fields refused,
one JSON error shape for every HTTP error, and Schemathesis finding the OpenAPI document exact."""

from __future__ import annotations

import asyncio
import io
import os
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from mesh.supervisor import Supervisor, admin_key, build_plan
from services.gateway._json import MAX_DEPTH, MAX_DOCUMENT_BYTES
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

ECHO = {"kind": "echo", "tenant": "json-surfaces", "payload": {"text": "hi"}}


@dataclass(frozen=True)
class Edge:
    endpoint: str
    admin: str
    gateway_http: str  # the gateway's own HTTP port, behind Envoy: mutual TLS
    gateway_ssl: ssl.SSLContext  # Envoy's leaf, as its real caller presents

    @property
    def url(self) -> str:
        return f"https://{self.endpoint}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"ApiKey {self.admin}"}


@pytest.fixture(scope="module")
async def edge(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Edge]:
    state = tmp_path_factory.mktemp("json-surfaces")
    # A short grace, the worker's own included: Schemathesis leaves long steps running (a stream of
    # many slow chunks), and the worker would drain them for the whole default grace. How the mesh
    # stops is not under test here (test_shutdown.py and test_up.py are); whatever is left is killed
    # with its process group.
    plan = build_plan(state, public_port=0, workers=1, auth=True, worker_grace_s=2.0)
    async with Supervisor(plan, grace_s=2.0):
        gateway = f"127.0.0.1:{plan.by_name('gateway').ports['http']}"
        yield Edge(f"127.0.0.1:{plan.public_port}", admin_key(state), gateway, Mesh(plan).internal_ssl("envoy"))


def _assert_error(body: object, error_class: str, field: str | None = None) -> None:
    assert isinstance(body, dict) and body["type"] == "error" and body["error_class"] == error_class, body
    assert isinstance(body["message"], str)
    if field is not None:
        assert body["field"] == field, body


@pytest.mark.parametrize("depth", [5_000, 100_000])
async def test_deeply_nested_rest_bodies_are_400_naming_the_limit(edge: Edge, depth: int) -> None:
    """A submit or cancel body nested 5 000 or 100 000 levels is a 400 naming the depth limit, not a 500."""
    deep = '{"kind":"echo","payload":' + '{"a":' * depth + "1" + "}" * depth + "}"
    async with aiohttp.ClientSession(headers=edge.headers) as session:
        for path in ("/v1/tasks", "/v1/tasks/some-task/cancel"):
            async with session.post(f"{edge.url}{path}", data=deep) as response:
                assert response.status == 400
                body = await response.json()
            _assert_error(body, "invalid_input", "body")
            assert f"deeper than {MAX_DEPTH}" in body["message"]


async def test_a_deeply_nested_websocket_frame_gets_an_error_frame_and_the_socket_stays_open(edge: Edge) -> None:
    """A 100 000-deep WebSocket frame is answered with an error frame naming the limit; the next ping works."""
    async with aiohttp.ClientSession(headers=edge.headers) as session, session.ws_connect(f"{edge.url}/v1/ws") as ws:
        await ws.send_str('{"op":"submit","id":"deep","task":' + "[" * 100_000 + "]" * 100_000 + "}")
        error = await ws.receive_json(timeout=10)
        _assert_error(error, "invalid_input", "frame")
        assert f"deeper than {MAX_DEPTH}" in error["message"]
        await ws.send_json({"op": "ping", "id": "after"})
        assert await ws.receive_json(timeout=10) == {"type": "pong", "id": "after"}


async def test_unknown_fields_are_refused_on_rest_and_websocket(edge: Edge) -> None:
    """An unknown top-level submit field, cancel-body field or WebSocket command key is refused naming it."""
    async with aiohttp.ClientSession(headers=edge.headers) as session:
        async with session.post(f"{edge.url}/v1/tasks", json={**ECHO, "evil": 1}) as response:
            assert response.status == 400
            _assert_error(await response.json(), "invalid_input", "evil")
        async with session.post(f"{edge.url}/v1/tasks/some-task/cancel", json={"reason": "x", "evil": 1}) as response:
            assert response.status == 400
            _assert_error(await response.json(), "invalid_input", "evil")
        async with session.ws_connect(f"{edge.url}/v1/ws") as ws:
            await ws.send_json({"op": "submit", "id": "s", "task": {**ECHO, "evil": 1}})
            _assert_error(await ws.receive_json(timeout=10), "invalid_input", "evil")
            await ws.send_json({"op": "ping", "id": "p", "evil": 1})
            error = await ws.receive_json(timeout=10)
            _assert_error(error, "invalid_input", "evil")
            assert error["id"] == "p"
            await ws.send_json({"op": "submit", "id": "ok", "task": ECHO})
            assert (await ws.receive_json(timeout=10))["type"] == "submitted"


async def test_every_http_error_has_the_json_error_shape(edge: Edge) -> None:
    """A 10 MB body (413), an unknown route (404), PUT and QUERY on /v1/tasks (405 with Allow) and an empty
    tenant (400) all answer with the JSON error shape."""
    async with aiohttp.ClientSession(headers=edge.headers) as session:
        async with session.post(f"{edge.url}/v1/tasks", data=io.BytesIO(b"x" * (10 << 20))) as response:
            assert response.status == 413
            _assert_error(await response.json(), "invalid_input", "body")
        async with session.get(f"{edge.url}/v1/no-such-route") as response:
            assert response.status == 404
            _assert_error(await response.json(), "not_found")
        for method in ("PUT", "QUERY"):
            async with session.request(method, f"{edge.url}/v1/tasks") as response:
                assert response.status == 405, method
                assert {m.strip() for m in response.headers["Allow"].split(",")} >= {"GET", "POST"}
                _assert_error(await response.json(), "invalid_input", "method")
        async with session.post(f"{edge.url}/v1/tasks", json={**ECHO, "tenant": ""}) as response:
            assert response.status == 400
            _assert_error(await response.json(), "invalid_input", "tenant")
        async with session.get(f"{edge.url}/v1/tasks", params={"tenant": ""}) as response:
            assert response.status == 400
            _assert_error(await response.json(), "invalid_input", "tenant")


@pytest.mark.parametrize("through", ["envoy", "gateway"])
async def test_an_oversized_websocket_frame_closes_with_1009_and_a_reason(edge: Edge, through: str) -> None:
    """A 5 MB WebSocket frame closes the connection with 1009 (message too big) and a reason naming the
    limit, through Envoy and on the gateway's own port."""
    host = edge.endpoint if through == "envoy" else edge.gateway_http
    verify: ssl.SSLContext | bool = True if through == "envoy" else edge.gateway_ssl
    async with aiohttp.ClientSession(headers=edge.headers) as session:
        async with session.ws_connect(f"wss://{host}/v1/ws", max_msg_size=0, ssl=verify) as ws:
            await ws.send_str("x" * (5 << 20))
            message = await ws.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.CLOSE, message
        assert message.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        assert str(MAX_DOCUMENT_BYTES) in message.extra


_SCHEMATHESIS_CONFIG = """
[generation]
max-examples = 12

[phases.stateful]
max-steps = 6

# The one schema-valid request the service refuses: a resume position past the task's last event
# is a 400 naming it (a stream there would never end). The document cannot say where a task ends.
[[operations]]
include-operation-id = "streamTaskEvents"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "429"]

# Likewise a creation window that ends before it starts (created_before <= created_after) is a 400
# naming created_before; the document cannot relate two parameters.
[[operations]]
include-operation-id = "listTasks"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"""


async def test_schemathesis_finds_the_document_exact(edge: Edge, tmp_path: Path) -> None:
    """Schemathesis with every check and the examples, coverage, fuzzing and stateful phases, as the admin,
    through Envoy: no failure (no 5xx, no schema-valid request refused, no invalid one accepted, no
    undocumented status or shape, 405 for undeclared methods)."""
    config = tmp_path / "schemathesis.toml"
    # Bounded so the run adds well under a minute; a fixed seed keeps a failure reproducible.
    config.write_text(_SCHEMATHESIS_CONFIG)
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "run",
        f"{edge.url}/v1/openapi.json",
        "--header",
        f"Authorization: ApiKey {edge.admin}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        "11",
        "--tls-verify",
        os.environ["TIDEMESH_CA"],  # the session's root (its HTTP client does not read SSL_CERT_FILE)
        "--request-timeout",
        "10",
        "--suppress-health-check",
        "all",
        "--workers",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,  # its run-time cache stays out of the checkout
    )
    try:
        async with asyncio.timeout(240):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, output.decode()[-8000:]
