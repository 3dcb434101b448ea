"""Connecting to NATS the same way from every process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from pathlib import Path

import nats
from nats.aio.client import Client

from mesh.errors import Unavailable
from mesh.telemetry import get_logger

log = get_logger(__name__)


def read_nats_user(path: str | Path) -> tuple[str, str]:
    """(user, password) from a component's credential file (``<state>/nats/<component>.json``)."""
    record = json.loads(Path(path).read_text())
    return str(record["user"]), str(record["password"])


async def connect(
    servers: str | list[str],
    name: str,
    connect_timeout_s: float = 5.0,
    tls: ssl.SSLContext | None = None,
    user_file: str | Path | None = None,
    start_timeout_s: float = 30.0,
    in_order: bool = False,
) -> Client:
    """Connect with endless reconnects (to any listed node); `Unavailable` if no connection is
    made within `start_timeout_s` (no server, a refused user, a server TLS cannot verify).

    `tls` verifies the server against the mesh's root (``tls://`` URLs); `user_file` names the
    component's own NATS user, read from its file so the password is never an argument. Each
    server's certificate must name the host its URL names (a node's leaf carries its host's
    name). `in_order` tries the servers in the order given (a host's own node first), else at
    random (clients of a cluster on one host spread over its nodes)."""
    urls = servers.split(",") if isinstance(servers, str) else servers
    user, password = read_nats_user(user_file) if user_file else (None, None)

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    last_error: list[Exception] = []
    refused = asyncio.Event()  # the server turned this user down: not worth retrying at start

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)
        if refused.is_set():
            return  # keep the refusal as the reason, not the broken pipe that follows it
        last_error[:] = [exc]
        if "Authorization Violation" in str(exc):
            refused.set()

    async def _connect() -> Client:
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
            tls=tls,
            user=user,
            dont_randomize=in_order,
            password=password,
        )

    # nats-py keeps retrying the first connection too (endless reconnects): a refused user or an
    # unverifiable server would hang the caller's start, so the start is bounded, and a refusal ends it.
    connecting = asyncio.ensure_future(_connect())
    turned_down = asyncio.ensure_future(refused.wait())
    try:
        await asyncio.wait({connecting, turned_down}, timeout=start_timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        turned_down.cancel()
    if connecting.done():
        try:
            return connecting.result()
        except Exception as exc:  # nats raises several unrelated types for "no server"
            raise Unavailable(f"cannot reach NATS at {servers}: {exc}") from exc
    connecting.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await connecting
    why = f": {last_error[0]}" if last_error else ""
    if refused.is_set():
        raise Unavailable(f"NATS at {servers} refused this user{why}")
    raise Unavailable(f"cannot connect to NATS at {servers} within {start_timeout_s:g}s{why}")
