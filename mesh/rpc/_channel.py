"""Client channels with the options every internal call uses."""

from __future__ import annotations

import grpc
import grpc.aio

from mesh.security import Transport
from mesh.telemetry import client_interceptors

_OPTIONS = (
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.enable_retries", 1),
)


def channel(target: str, transport: Transport) -> grpc.aio.Channel:
    """A channel to another component that propagates trace context: mutual TLS with this
    process's leaf (renewed in place), or h2c when the mesh runs --insecure."""
    return transport.channel(target, options=_OPTIONS, interceptors=client_interceptors())
