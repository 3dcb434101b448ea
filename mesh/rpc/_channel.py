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
    # A restarted component (kill -9, a crash, a rolled-out change) is reached within a second of
    # serving again, not after gRPC's default reconnect backoff (1 s growing x1.6 to 120 s): the
    # calls waiting for it (wait_for_ready) would sit out the rest of the backoff.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def channel(target: str, transport: Transport) -> grpc.aio.Channel:
    """A channel to another component that propagates trace context: mutual TLS with this
    process's leaf (renewed in place), or h2c when the mesh runs --insecure."""
    return transport.channel(target, options=_OPTIONS, interceptors=client_interceptors())
