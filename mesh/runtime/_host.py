"""ServiceHost: the gRPC server, health, reflection and ops HTTP endpoint of one service process."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mesh.runtime._decode import StrictDecoding
from mesh.runtime._gc import GcPacer
from mesh.security import CallerPolicy, Transport, callers_for
from mesh.telemetry import METRICS, get_logger, metrics_app, server_interceptors

log = get_logger(__name__)

# The kernel caps it at net.core.somaxconn (4096 on current Linux).
_HTTP_BACKLOG = 4096


class HostState(enum.Enum):
    NEW = "new"
    SERVING = "serving"
    STOPPING = "stopping"
    STOPPED = "stopped"


class ServiceHost:
    """Owns the listening sockets of a service; `async with` starts and stops them.

    The standard health service reports SERVING for "" and every registered
    service while up, NOT_SERVING once shutdown begins (so Envoy and the
    supervisor stop routing to it before in-flight calls are cut).
    """

    def __init__(
        self,
        name: str,
        grpc_address: str,
        http_address: str | None = None,
        http_app: web.Application | None = None,
        grace_s: float = 10.0,
        transport: Transport | None = None,
    ) -> None:
        self.name = name
        # Mutual TLS on both ports unless the mesh runs --insecure; the gRPC allow-list
        # (`mesh.security.CALLERS`) then names who may call each method.
        self.transport = transport or Transport.insecure()
        if self.transport.leaf is not None:  # their expiry, for the certificate alert
            METRICS.certificates.watch(self.transport.leaf.cert, "leaf", name)
            METRICS.certificates.watch(self.transport.leaf.ca, "root", name)
        self._grpc_address = grpc_address
        self._http_address = http_address
        self._grace_s = grace_s
        self._state = HostState.NEW
        self._service_names: list[str] = []
        self._health = health.aio.HealthServicer()
        self.server = grpc.aio.server(
            # Outermost: it re-registers what the tracing interceptors return (see `_decode`).
            interceptors=[
                *([CallerPolicy(callers_for(name))] if self.transport.secure else []),
                StrictDecoding(),
                *server_interceptors(),
            ],
            options=(
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                # Ping clients every 15 s (streams that go quiet still detect a dead peer), and
                # accept their pings as often as every 10 s instead of answering GOAWAY.
                ("grpc.keepalive_time_ms", 15_000),
                ("grpc.keepalive_timeout_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.http2.max_pings_without_data", 0),
            ),
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self.server)
        self._http_app = http_app or web.Application()
        self.replica = f"{name}@{socket.gethostname()}:{os.getpid()}"
        replica = self.replica

        async def tag_replica(_: web.Request, response: web.StreamResponse) -> None:
            response.headers["x-tidemesh-replica"] = replica  # which replica answered (stickiness)

        self._http_app.on_response_prepare.append(tag_replica)
        ops = metrics_app(METRICS, ready=self._is_serving)
        for route in ops.router.routes():
            self._http_app.router.add_route(route.method, route.resource.canonical, route.handler)  # type: ignore[union-attr]
        self._runner: web.AppRunner | None = None
        self._gc = GcPacer()
        self._renewals: asyncio.Task[None] | None = None
        self.grpc_port = 0
        self.http_port = 0

    def add(self, register: Callable[[Any, grpc.aio.Server], None], servicer: Any, full_name: str) -> None:
        """Register a servicer, e.g. ``add(add_GatewayServiceServicer_to_server, svc, "mesh.v1.GatewayService")``."""
        register(servicer, self.server)
        self._service_names.append(full_name)

    async def _is_serving(self) -> bool:
        return self._state is HostState.SERVING

    async def __aenter__(self) -> ServiceHost:
        if self._state is not HostState.NEW:
            raise RuntimeError(f"ServiceHost is {self._state.value}; it cannot be opened again")
        reflection.enable_server_reflection(
            [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        if self.transport.secure:
            self.grpc_port = self.server.add_secure_port(self._grpc_address, self.transport.server_credentials())
        else:
            self.grpc_port = self.server.add_insecure_port(self._grpc_address)
        if self.grpc_port == 0:
            raise OSError(f"cannot bind gRPC address {self._grpc_address}")
        await self.server.start()
        if self._http_address is not None:
            host, _, port = self._http_address.rpartition(":")
            self._runner = web.AppRunner(self._http_app, access_log=None, handle_signals=False)
            await self._runner.setup()
            # Envoy opens one HTTP/1.1 connection per SSE stream or WebSocket: a burst of clients
            # overflows aiohttp's default accept queue of 128, and a dropped SYN costs a 1 s retransmit.
            site = web.TCPSite(
                self._runner,
                host or "127.0.0.1",
                int(port),
                shutdown_timeout=self._grace_s,
                backlog=_HTTP_BACKLOG,
                ssl_context=self.transport.server_ssl_context(),
            )
            await site.start()
            sockets = site._server.sockets if site._server else ()  # type: ignore[attr-defined]
            self.http_port = sockets[0].getsockname()[1] if sockets else int(port)
        for name in ("", *self._service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._state = HostState.SERVING
        self._gc.start()
        if self.transport.secure:
            self._renewals = asyncio.create_task(self.transport.follow_renewals())
        log.info("serving", extra={"grpc_port": self.grpc_port, "http_port": self.http_port})
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def begin_shutdown(self) -> None:
        """Report NOT_SERVING; keep accepting in-flight calls."""
        if self._state is HostState.SERVING:
            self._state = HostState.STOPPING
            await self._health.enter_graceful_shutdown()

    async def shutdown(self) -> None:
        """Stop within the grace period; idempotent."""
        if self._state in (HostState.STOPPED, HostState.NEW):
            self._state = HostState.STOPPED
            return
        await self.begin_shutdown()
        await self._gc.stop()
        if self._renewals is not None:
            self._renewals.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewals
        await self.server.stop(self._grace_s)
        if self._runner is not None:
            await self._runner.cleanup()
        self._state = HostState.STOPPED

    def write_ready_file(self, path: Path | None) -> None:
        """Tell a parent which ports were bound (for port 0), atomically."""
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"grpc_port": self.grpc_port, "http_port": self.http_port}))
        tmp.replace(path)
