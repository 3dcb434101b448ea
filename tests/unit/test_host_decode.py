"""A ServiceHost answers undecodable gRPC requests at once with INVALID_ARGUMENT and no internals.

The target is the host's own health service (every service has it), on a real grpc.aio server
bound to a free port; the truncated frame goes over a hand-written h2c connection because no
gRPC client can send one.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.runtime import ServiceHost

CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
INTERNALS = ("DecodeError", "Error parsing", "<class", "Traceback", "Exception")


@pytest.fixture
async def host() -> AsyncIterator[ServiceHost]:
    async with ServiceHost("decode-test", "127.0.0.1:0", grace_s=0.5) as serving:
        yield serving


def _raw(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable:  # type: ignore[type-arg]
    return channel.unary_unary(method, request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)


async def test_garbage_body_is_invalid_argument_without_internals(host: ServiceHost) -> None:
    """Bytes that are not the request message: INVALID_ARGUMENT naming `request`, no parser text."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _raw(channel, CHECK)(b"\xff\xff\xff\xff", timeout=5)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "request: not a valid HealthCheckRequest"
    assert ("tidemesh-field", "request") in tuple(error.trailing_metadata() or ())


async def test_call_without_a_message_is_answered_at_once(host: ServiceHost) -> None:
    """A unary call whose body carries no message ends within 2 s with INVALID_ARGUMENT (it used to hang)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
        no_message = channel.stream_unary(CHECK, request_serializer=lambda raw: raw)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await no_message(iter(()), timeout=30)
    assert time.monotonic() - started < 2
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not any(word in (caught.value.details() or "") for word in INTERNALS)


async def test_server_stream_without_a_message_is_answered_at_once(host: ServiceHost) -> None:
    """The same for a server-streaming method (Health/Watch)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
        no_message = channel.stream_stream(WATCH, request_serializer=lambda raw: raw)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in no_message(iter(()), timeout=30):
                pass
    assert time.monotonic() - started < 2
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_good_requests_still_work(host: ServiceHost) -> None:
    """A valid request is decoded and served as before (server streams: the gateway's integration tests)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


# --- a truncated frame over raw h2c ------------------------------------------------------------

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS = 0, 1, 3, 4
_END_STREAM, _END_HEADERS, _ACK = 0x1, 0x4, 0x1


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) + payload


def _literal(name: str, value: str) -> bytes:
    """HPACK literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2)."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


async def _send_truncated(port: int) -> tuple[str, float]:
    """POST a gRPC frame whose prefix claims 100 bytes but carries 3, then END_STREAM.

    Returns how stream 1 ended (``end_stream`` / ``reset``) and the seconds it took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    headers = b"".join(
        _literal(name, value)
        for name, value in (
            (":method", "POST"),
            (":scheme", "http"),
            (":path", CHECK),
            (":authority", f"127.0.0.1:{port}"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        )
    )
    body = struct.pack(">BI", 0, 100) + b"\x0a\x01x"
    writer.write(
        _PREFACE
        + _frame(_SETTINGS, 0, 0)
        + _frame(_HEADERS, _END_HEADERS, 1, headers)
        + _frame(_DATA, _END_STREAM, 1, body)
    )
    started = time.monotonic()
    try:
        async with asyncio.timeout(10):
            while True:
                head = await reader.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                kind, flags, stream = head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                await reader.readexactly(length)
                if kind == _SETTINGS and not flags & _ACK:
                    writer.write(_frame(_SETTINGS, _ACK, 0))
                if stream == 1 and kind == _RST_STREAM:
                    return "reset", time.monotonic() - started
                if stream == 1 and kind in (_HEADERS, _DATA) and flags & _END_STREAM:
                    return "end_stream", time.monotonic() - started
    except TimeoutError:
        return "hung", time.monotonic() - started
    finally:
        writer.close()
        await writer.wait_closed()


async def test_truncated_frame_is_answered_at_once(host: ServiceHost) -> None:
    """A length prefix longer than the body gets its trailers within 2 s (it used to hang)."""
    ended, seconds = await _send_truncated(host.grpc_port)
    assert ended == "end_stream"
    assert seconds < 2


async def test_health_watch_streams_the_serving_status(host: ServiceHost) -> None:
    """Health/Watch (a coroutine that writes with context.write, not an async generator) answers SERVING
    through the host's interceptors instead of failing with a TypeError."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=5)
        first = await anext(aiter(call))
        call.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
