"""Resume after a forced disconnect at random points, on every streaming protocol through Envoy
(gRPC, gRPC-Web as a browser sends it, SSE, WebSocket).

Property: for any sequence of disconnect points during a live stream, the events a client
collects by reconnecting from the last sequence number it saw, concatenated, equal the
uninterrupted stream — no gap, no duplicate.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Awaitable, Callable

import aiohttp
import grpc
import grpc.aio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.sdk import Client
from mesh.v1 import gateway_pb2, gateway_pb2_grpc
from tests.integration import _grpcweb
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

LIVE = {"text": " ".join(f"w{i}" for i in range(12)), "chunks": 12, "chunk_delay_ms": 25}

# Reads events of `task_id` after `after` and stops after `limit` of them (a forced disconnect) or
# at the final one; returns (sequence, event JSON) pairs.
Reader = Callable[[str, str, int, int], Awaitable[list[tuple[int, str]]]]


async def _grpc(endpoint: str, task_id: str, after: int, limit: int) -> list[tuple[int, str]]:
    from google.protobuf.json_format import MessageToJson

    got = []
    async with grpc.aio.secure_channel(endpoint, grpc.ssl_channel_credentials()) as channel:
        call = gateway_pb2_grpc.GatewayServiceStub(channel).WatchTask(
            gateway_pb2.WatchTaskRequest(task_id=task_id, after_sequence=after)
        )
        async for response in call:
            got.append((response.event.sequence, MessageToJson(response.event, sort_keys=True)))
            if len(got) == limit or response.event.final:
                call.cancel()  # hang up mid-stream
                break
    return got


async def _sse(endpoint: str, task_id: str, after: int, limit: int) -> list[tuple[int, str]]:
    got = []
    headers = {"Last-Event-ID": str(after)}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"https://{endpoint}/v1/tasks/{task_id}/events", headers=headers) as response:
            async for block in _blocks(response):
                if "event: task" not in block:
                    continue
                data = json.loads(block.split("data: ", 1)[1])
                got.append((int(data["sequence"]), json.dumps(data, sort_keys=True)))
                if len(got) == limit or data.get("final"):
                    break  # leaving the block closes the connection mid-stream
    return got


async def _blocks(response: aiohttp.ClientResponse):  # type: ignore[no-untyped-def]
    buffer = ""
    async for chunk in response.content.iter_any():
        buffer += chunk.decode()
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            yield block


async def _websocket(endpoint: str, task_id: str, after: int, limit: int) -> list[tuple[int, str]]:
    got = []
    async with aiohttp.ClientSession() as session, session.ws_connect(f"wss://{endpoint}/v1/ws") as ws:
        await ws.send_json({"op": "subscribe", "task_id": task_id, "after_sequence": after})
        async for frame in ws:
            message = json.loads(frame.data)
            assert message["type"] == "event", message
            event = message["event"]
            got.append((int(event["sequence"]), json.dumps(event, sort_keys=True)))
            if len(got) == limit or event.get("final"):
                break
    return got


async def _grpc_web(endpoint: str, task_id: str, after: int, limit: int) -> list[tuple[int, str]]:
    """What a browser does: gRPC-Web over HTTP/1.1, frames parsed as they arrive."""
    from google.protobuf.json_format import MessageToJson

    got: list[tuple[int, str]] = []
    request = gateway_pb2.WatchTaskRequest(task_id=task_id, after_sequence=after)
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1", "origin": "http://browser.test"}
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector, version=aiohttp.HttpVersion11) as session,
        session.post(
            f"https://{endpoint}/mesh.v1.GatewayService/WatchTask", data=_grpcweb.frame(request), headers=headers
        ) as response,
    ):
        buffer = b""
        async for chunk in response.content.iter_any():
            buffer += chunk
            while len(buffer) >= 5:
                flag, length = struct.unpack(">BI", buffer[:5])
                if len(buffer) < 5 + length:
                    break
                body, buffer = buffer[5 : 5 + length], buffer[5 + length :]
                if flag & 0x80:  # trailers: the stream ended
                    return got
                event = gateway_pb2.WatchTaskResponse.FromString(body).event
                got.append((event.sequence, MessageToJson(event, sort_keys=True)))
                if len(got) == limit or event.final:
                    return got  # leaving closes the connection mid-stream
    return got


def _normal(text: str) -> str:
    """One event as comparable JSON (gRPC's JSON and the gateway's JSON spell it alike)."""
    return json.dumps(json.loads(text), sort_keys=True)


@pytest.mark.parametrize("reader", [_grpc, _grpc_web, _sse, _websocket], ids=["grpc", "grpc-web", "sse", "websocket"])
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
async def test_random_disconnects_lose_and_repeat_nothing(mesh: Mesh, reader: Reader, seed: int) -> None:
    rng = random.Random(seed)
    async with Client(mesh.endpoint, tenant="resume") as client:
        task = await client.submit("stream", LIVE)
        collected: list[tuple[int, str]] = []
        while not collected or '"final": true' not in collected[-1][1]:
            after = collected[-1][0] if collected else 0
            collected += await reader(mesh.endpoint, task.task_id, after, rng.randint(1, 4))
        uninterrupted = await reader(mesh.endpoint, task.task_id, 0, 10_000)
    assert [s for s, _ in collected] == list(range(1, len(collected) + 1))
    assert [_normal(e) for _, e in collected] == [_normal(e) for _, e in uninterrupted]
