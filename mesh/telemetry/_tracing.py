"""W3C trace context across gRPC metadata and NATS headers.

Spans are recorded by an SDK tracer provider; no exporter is configured by
default (set OTEL_EXPORTER_OTLP_ENDPOINT handling here when one is wanted) —
the ids still flow through every hop and into the logs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mesh.telemetry._grpc_context import ServerContextInterceptor, light_client_interceptors

_propagator = TraceContextTextMapPropagator()
_configured = False


def configure_tracing(service: str) -> None:
    """Install the process-wide tracer provider (idempotent)."""
    global _configured
    if _configured:
        return
    from opentelemetry.sdk.resources import Resource

    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": service})))
    _configured = True


def tracer() -> trace.Tracer:
    return trace.get_tracer("tidemesh")


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Add the current trace context (``traceparent``) to a NATS header dict."""
    carrier = headers if headers is not None else {}
    _propagator.inject(carrier)
    return carrier


def extract_context(carrier: Mapping[str, str] | None) -> otel_context.Context:
    return _propagator.extract(dict(carrier or {}))


def current_traceparent() -> str:
    return inject_headers({}).get("traceparent", "")


def step_span(name: str) -> contextlib.AbstractContextManager[object]:
    """A recorded span when full spans are on; otherwise the propagated context alone (free)."""
    if _full_spans():
        return tracer().start_as_current_span(name)
    return contextlib.nullcontext()


def _full_spans() -> bool:
    return os.environ.get("TIDEMESH_OTEL_SPANS", "0") == "1"


def server_interceptors() -> list[Any]:
    return [aio_server_interceptor()] if _full_spans() else [ServerContextInterceptor()]


def client_interceptors() -> list[Any]:
    return list(aio_client_interceptors()) if _full_spans() else light_client_interceptors()
