"""Shared test helpers: polling without sleeps-as-waits, and the suite's trust root.

Every mesh a test starts is secure (TLS on every hop, the default). They all adopt one root
created for the session (`TIDEMESH_CA_DIR`, see `mesh.supervisor.MeshSecurity.prepare`), and
the process trusts it the way a user's machine would: `TIDEMESH_CA` for the SDK, `SSL_CERT_FILE`
for Python's ssl (aiohttp, websockets), `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` for grpcio's defaults.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from mesh.security import trust_in_this_process

_ROOT_DIR = Path(tempfile.mkdtemp(prefix="tidemesh-test-ca-"))
# At import, not in pytest_configure: the sub-directory conftests load before that hook and
# import aiohttp, whose connector builds its default SSL context (reading SSL_CERT_FILE) at import.
trust_in_this_process(_ROOT_DIR)

# Only now: mesh.telemetry imports aiohttp (see above).
from mesh.telemetry import quiet_ssl_eof_noise  # noqa: E402

quiet_ssl_eof_noise()  # asyncio's note on every TLS connection nats-py closes


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_ROOT_DIR, ignore_errors=True)


T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 15.0, what: str = "") -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    last_error: Exception | None = None
    while True:
        try:
            value = await probe()
            if value:
                return value
        except Exception as exc:  # the condition is not met yet
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout_s}s: {what} (last error: {last_error!r})")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


def listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state whose socket the process `pid` holds (inodes matched in /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            columns = line.split()
            if columns[3] == "0A" and columns[9] in inodes:  # 0A: LISTEN
                ports.add(int(columns[1].rsplit(":", 1)[1], 16))
    return ports
