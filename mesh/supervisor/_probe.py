"""Health probes of a plan's processes, as the supervisor (its own leaf and NATS user) sees them.

Three kinds, one interface (`Probe.check` → healthy or not):
- ``http``: a GET that answers 200 — over mutual TLS with the supervisor's leaf when the mesh
  is secure (the services' ops ports require a client certificate of the mesh's root);
- ``unix``: a GET over a unix socket (Envoy's admin, mode 600, no TCP port);
- ``nats``: a JetStream account-info request as the supervisor's NATS user (nats-server's
  monitoring port is off in a secure mesh: it would answer anyone on the host);
- ``grpc``: the standard gRPC health check over mutual TLS (Triton, whose HTTP port is off).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.fabric._connect import read_nats_user
from mesh.supervisor._plan import Health
from mesh.supervisor._security import MeshSecurity


class Probe:
    """``async with Probe(health, state_dir) as probe: await probe.check()``"""

    def __init__(self, health: Health, state_dir: Path | str, timeout_s: float = 2.0) -> None:
        self.health = health
        self._security = MeshSecurity(Path(state_dir))
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._nats: Any = None
        self._channel: grpc.aio.Channel | None = None

    def _ssl(self) -> ssl.SSLContext | None:
        if not self._security.leaf("supervisor").cert.exists():
            return None  # an --insecure mesh
        return self._security.transport("supervisor").client_ssl_context()

    async def __aenter__(self) -> Probe:
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        if self.health.kind == "unix":
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.health.socket), timeout=timeout
            )
        elif self.health.kind == "http":
            context = self._ssl() if self.health.url.startswith("https:") else None
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context or False), timeout=timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._channel is not None:
            await self._channel.close()
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.close()

    async def check(self) -> bool:
        try:
            if self.health.kind == "nats":
                return await asyncio.wait_for(self._check_nats(), self._timeout_s)
            if self.health.kind == "grpc":
                return await self._check_grpc()
            assert self._session is not None
            url = self.health.url if self.health.kind == "http" else f"http://localhost{self.health.path}"
            async with self._session.get(url) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def _check_grpc(self) -> bool:
        if self._channel is None:
            self._channel = self._security.transport("supervisor").channel(self.health.url)
        try:
            reply = await health_pb2_grpc.HealthStub(self._channel).Check(
                health_pb2.HealthCheckRequest(), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def _check_nats(self) -> bool:
        import nats
        from nats.errors import Error as NatsError

        if self._nats is None or self._nats.is_closed:
            user, password = read_nats_user(self._security.nats_user("supervisor"))
            try:
                self._nats = await nats.connect(
                    servers=[self.health.url],
                    tls=self._ssl(),  # the node's leaf names the host its URL names
                    user=user,
                    password=password,
                    connect_timeout=self._timeout_s,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,
                    error_cb=_quiet,
                    disconnected_cb=_quiet_event,
                    reconnected_cb=_quiet_event,
                )
            except (NatsError, OSError, TimeoutError):
                self._nats = None
                return False
        try:
            await self._nats.jetstream().account_info()
        except Exception:  # not connected, JetStream not ready yet, or a timeout
            return False
        return True


async def _quiet(_: Exception) -> None:
    """The probe reports health by its answer; connection errors are not log lines."""


async def _quiet_event() -> None:
    """See `_quiet`."""
