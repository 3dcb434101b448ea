"""A minimal gRPC-Web client over HTTP/1.1 (what a browser sends), for tests.

The public port is HTTPS in a secure mesh (the default); aiohttp's default context trusts the
suite's root (SSL_CERT_FILE, see tests/conftest.py). `tls=False` is for an `--insecure` mesh.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import aiohttp
from google.protobuf.message import Message


@dataclass
class GrpcWebReply:
    messages: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)
    http_status: int = 0

    @property
    def grpc_status(self) -> int:
        return int(self.trailers.get("grpc-status", "-1"))


def frame(message: Message) -> bytes:
    body = message.SerializeToString()
    return struct.pack(">BI", 0, len(body)) + body


def parse(body: bytes) -> GrpcWebReply:
    reply = GrpcWebReply()
    offset = 0
    while offset + 5 <= len(body):
        flag, length = struct.unpack(">BI", body[offset : offset + 5])
        chunk = body[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if flag & 0x80:
            for line in chunk.decode().split("\r\n"):
                if ":" in line:
                    key, value = line.split(":", 1)
                    reply.trailers[key.strip().lower()] = value.strip()
        else:
            reply.messages.append(chunk)
    return reply


async def call(endpoint: str, method: str, request: Message, *, tls: bool = True) -> GrpcWebReply:
    """POST one gRPC-Web call (unary or server streaming) over HTTP/1.1 and collect the reply."""
    headers = {
        "content-type": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "accept": "application/grpc-web+proto",
        "origin": "https://browser.test",
    }
    scheme = "https" if tls else "http"
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, version=aiohttp.HttpVersion11) as session:
        async with session.post(f"{scheme}://{endpoint}/{method}", data=frame(request), headers=headers) as response:
            body = await response.read()
            reply = parse(body)
            reply.http_status = response.status
            # A trailers-only reply (an immediate error) carries the status in the headers.
            for key in ("grpc-status", "grpc-message", "tidemesh-field", "tidemesh-error-class", "retry-after"):
                if key in response.headers and key not in reply.trailers:
                    reply.trailers[key] = response.headers[key]
            return reply
