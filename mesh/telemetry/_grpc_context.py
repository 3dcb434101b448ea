"""Light W3C trace-context interceptors for grpc.aio.

The OpenTelemetry gRPC instrumentation records a span per call, which costs about a
third of a gateway's CPU at load. tidemesh needs the context to *travel* (so logs
and task events share a trace id); these interceptors only move ``traceparent``
between metadata and the current context. With an OTLP exporter configured (or
TIDEMESH_OTEL_SPANS=1) the full instrumentation records spans instead (`_tracing`).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc
import grpc.aio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()


def _context_from(metadata: Any) -> otel_context.Context:
    """The caller's trace context, or a new trace when the call starts one (at the edge)."""
    for key, value in metadata or ():
        if key == "traceparent":
            return _propagator.extract({"traceparent": value})
    span = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=random.getrandbits(128) or 1,
            span_id=random.getrandbits(64) or 1,
            is_remote=False,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
    )
    return trace.set_span_in_context(span)


def _wrap_unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:  # type: ignore[type-arg]
        token = otel_context.attach(_context_from(context.invocation_metadata()))
        try:
            return await behavior(request, context)
        finally:
            otel_context.detach(token)

    return handler


def _wrap_stream(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    if not inspect.isasyncgenfunction(behavior):
        # A stream handler may also be a coroutine that writes with `context.write` (grpcio's own
        # health service does): await it rather than iterate it.
        return _wrap_unary(cast(Callable[..., Awaitable[Any]], behavior))  # type: ignore[return-value]

    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:  # type: ignore[type-arg]
        token = otel_context.attach(_context_from(context.invocation_metadata()))
        try:
            async for item in behavior(request, context):
                yield item
        finally:
            otel_context.detach(token)

    return handler


class ServerContextInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                # grpc.aio's stream handlers are async generators; the stubs describe sync grpc's.
                _wrap_stream(cast(Callable[..., AsyncIterator[Any]], handler.unary_stream)),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return handler  # client/bidi streaming: none in the contract yet


def _with_traceparent(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    if not carrier:
        return details
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add("traceparent", carrier["traceparent"])
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(_with_traceparent(client_call_details), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(_with_traceparent(client_call_details), request)


def light_client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    return [_UnaryUnary(), _UnaryStream()]
