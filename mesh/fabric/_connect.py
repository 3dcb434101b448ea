"""Connecting to NATS the same way from every process."""

from __future__ import annotations

import nats
from nats.aio.client import Client

from mesh.errors import Unavailable
from mesh.telemetry import get_logger

log = get_logger(__name__)


async def connect(servers: str | list[str], name: str, connect_timeout_s: float = 5.0) -> Client:
    """Connect with endless reconnects (to any listed node); fail fast if none answers at start."""
    urls = servers.split(",") if isinstance(servers, str) else servers

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    try:
        return await nats.connect(
            servers=urls,
            name=name,
            connect_timeout=connect_timeout_s,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            allow_reconnect=True,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=on_error,
        )
    except Exception as exc:  # nats raises several unrelated types for "no server"
        raise Unavailable(f"cannot reach NATS at {servers}: {exc}") from exc
