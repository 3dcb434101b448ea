"""Who may call which internal RPC: one allow-list, checked on every call by `CallerPolicy`.

The caller is the workload identity of its client certificate (mutual TLS; see `_tls`).
A method not listed is refused to everyone; ``*`` in a method's place covers a service.
Health checks and reflection answer any mesh identity (the supervisor and Envoy probe them).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
import grpc.aio

from mesh.security._tls import peer_component

# Every component that holds a leaf of the mesh's root.
MESH = frozenset({"scheduler", "inference", "worker", "gateway", "envoy", "supervisor", "cli"})

CALLERS: Mapping[str, frozenset[str]] = {
    # Admission belongs to the gateway (it has checked the caller's credential and tenant).
    "/mesh.v1.SchedulerService/AdmitTask": frozenset({"gateway"}),
    # ...and to workers for the children of an orchestration task they are running.
    "/mesh.v1.SchedulerService/AdmitTasks": frozenset({"gateway", "worker"}),
    "/mesh.v1.SchedulerService/AdmitEach": frozenset({"gateway"}),
    "/mesh.v1.SchedulerService/AbortTask": frozenset({"gateway"}),
    "/mesh.v1.SchedulerService/GetQueueStatus": frozenset({"gateway", "cli", "supervisor"}),
    "/mesh.v1.SchedulerService/GetLoadReport": frozenset({"gateway", "cli", "supervisor"}),
    "/mesh.v1.WorkerService/RegisterWorker": frozenset({"worker"}),
    "/mesh.v1.WorkerService/Heartbeat": frozenset({"worker"}),
    "/mesh.v1.WorkerService/ListWorkers": frozenset({"gateway", "cli", "supervisor"}),
    # Workers run models for tasks; the gateway relays callers with a credential (see below).
    "/mesh.v1.InferenceService/*": frozenset({"worker", "cli", "gateway"}),
    # The public API is reached through Envoy only (it terminates the callers' TLS).
    "/mesh.v1.GatewayService/*": frozenset({"envoy"}),
    "/mesh.v1.KindService/*": frozenset({"envoy"}),
    "/mesh.v1.SchemaService/*": frozenset({"envoy"}),
    "/mesh.v1.AuditService/*": frozenset({"envoy"}),
    "/mesh.v1.ConfigService/*": frozenset({"envoy"}),
    "/mesh.v1.AccessService/*": frozenset({"envoy"}),
    "/grpc.health.v1.Health/*": MESH,
    "/grpc.reflection.v1alpha.ServerReflection/*": MESH,
    "/grpc.reflection.v1.ServerReflection/*": MESH,
}

# A service two kinds of server serve, each for its own callers. Workers in any language attach
# through the front door with a credential of the `work` role: Envoy calls the gateway, which
# checks the credential and relays the stream to a worker process hosting sessions.
CALLERS_BY_SERVER: Mapping[str, Mapping[str, frozenset[str]]] = {
    # The same for inference: callers reach their models through Envoy and the gateway's relay.
    "gateway": {
        "/mesh.v1.WorkerSessionService/*": frozenset({"envoy"}),
        "/mesh.v1.InferenceService/*": frozenset({"envoy"}),
    },
    "worker": {"/mesh.v1.WorkerSessionService/*": frozenset({"gateway"})},
}


def callers_for(server: str) -> Mapping[str, frozenset[str]]:
    """The allow-list a `server` (the component running it) enforces."""
    return {**CALLERS, **CALLERS_BY_SERVER.get(server, {})}


def allowed_callers(method: str, callers: Mapping[str, frozenset[str]] = CALLERS) -> frozenset[str]:
    if method in callers:
        return callers[method]
    service = method.rpartition("/")[0]
    return callers.get(f"{service}/*", frozenset())


Behavior = Callable[..., Any]


def _guard(behavior: Behavior, method: str, allowed: frozenset[str]) -> Behavior:
    async def check(context: grpc.aio.ServicerContext[Any, Any]) -> None:
        caller = peer_component(context)
        if caller not in allowed:
            who = caller or "a caller without a mesh identity"
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{who} may not call {method}")

    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            await check(context)
            async for reply in behavior(request, context):
                yield reply

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await check(context)
        result = behavior(request, context)
        return await result if isinstance(result, Awaitable) else result

    return call


_FACTORIES = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


class CallerPolicy(grpc.aio.ServerInterceptor):
    """Refuses (PERMISSION_DENIED) a call whose caller identity the allow-list does not name."""

    def __init__(self, callers: Mapping[str, frozenset[str]] = CALLERS) -> None:
        self._callers = callers

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method
        allowed = allowed_callers(method, self._callers)
        for attr, factory in _FACTORIES:
            behavior = getattr(handler, attr)
            if behavior is not None:
                return factory(
                    _guard(behavior, method, allowed), handler.request_deserializer, handler.response_serializer
                )
        return handler
