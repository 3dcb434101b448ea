"""Tracing: W3C trace context across gRPC metadata, NATS messages and task events, and spans that
leave the mesh over OTLP.

Configured by the standard OpenTelemetry variables, read once per process (`configure_tracing`):

- ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` turn the exporter on
  (``tidemesh up --otlp ENDPOINT`` sets the first for every process); ``OTEL_EXPORTER_OTLP_PROTOCOL``
  (``grpc``, the default, or ``http/protobuf``), ``_HEADERS``, ``_CERTIFICATE``, ``_COMPRESSION``
  and ``_TIMEOUT`` are the exporter's own; ``OTEL_TRACES_EXPORTER=none`` turns it off again.
- ``OTEL_SERVICE_NAME`` overrides the component's name (``gateway``, ``worker``, …; the namespace
  is ``tidemesh``); ``OTEL_RESOURCE_ATTRIBUTES`` adds attributes.
- ``OTEL_TRACES_SAMPLER`` / ``_ARG``: head sampling, by default ``parentbased_traceidratio`` at
  1.0 (every task). Whatever the ratio, an attempt that fails, is retried or is dead-lettered is
  kept: the worker records a span for it marked ``tidemesh.keep`` that the sampler always takes
  (a head-sampled mesh cannot go back for the spans of a trace it dropped, so this is the
  documented stand-in for a tail decision: the failure's own span, in the task's trace).

With an exporter (or ``TIDEMESH_OTEL_SPANS=1``) every hop records spans — gRPC servers and
clients, admission, the JetStream hop as a producer span and a consumer span (OpenTelemetry's
messaging conventions: the consumer's parent is the producer, whose context the work item
carries), each worker step; without one only the context moves (free), so logs and task events
still share a task's trace id.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
    _get_from_env_or_default,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from mesh.telemetry._grpc_context import ServerContextInterceptor, light_client_interceptors

_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_full: bool | None = None  # decided once configured
KEEP = "tidemesh.keep"  # a span attribute: always sampled (failures, retries, dead letters)


class KeepMarked(Sampler):
    """`base`'s decision, except that a span started with ``tidemesh.keep`` is always recorded."""

    def __init__(self, base: Sampler) -> None:
        self._base = base

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if attributes and attributes.get(KEEP):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return self._base.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"KeepMarked({self._base.get_description()})"


def exporting(environ: Mapping[str, str] | None = None) -> bool:
    """Whether spans leave the process (an OTLP endpoint is set and the exporter not turned off)."""
    env = os.environ if environ is None else environ
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return bool(endpoint) and env.get("OTEL_TRACES_EXPORTER", "otlp").strip() != "none"


def _sampler() -> Sampler:
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return KeepMarked(_get_from_env_or_default())
    ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
    return KeepMarked(ParentBased(TraceIdRatioBased(ratio)))


def _exporter() -> Any:
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
    else:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: expected grpc or http/protobuf, got {protocol!r}")
    return OTLPSpanExporter()  # endpoint, headers, certificate, compression, timeout: from the environment


def configure_tracing(service: str) -> None:
    """Install the process-wide tracer provider, exporting over OTLP when configured (idempotent)."""
    global _provider, _full
    if _provider is not None:
        return
    _full = None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"service.namespace": "tidemesh"}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = service
    _provider = TracerProvider(resource=Resource.create(attributes), sampler=_sampler())
    if exporting():
        _provider.add_span_processor(BatchSpanProcessor(_exporter()))
    trace.set_tracer_provider(_provider)
    _full = full_spans()


def shutdown_tracing() -> None:
    """Send what is buffered (at a process's end)."""
    if _provider is not None:
        _provider.shutdown()


def tracer() -> trace.Tracer:
    return trace.get_tracer("tidemesh")


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Add the current trace context (``traceparent``) to a NATS header dict."""
    carrier = headers if headers is not None else {}
    _propagator.inject(carrier)
    return carrier


def extract_context(carrier: Mapping[str, str] | None) -> otel_context.Context:
    return _propagator.extract(dict(carrier or {}))


def context_of(traceparent: str) -> otel_context.Context:
    return extract_context({"traceparent": traceparent} if traceparent else None)


def current_traceparent() -> str:
    return inject_headers({}).get("traceparent", "")


def full_spans() -> bool:
    """Whether spans are recorded: with an exporter, or ``TIDEMESH_OTEL_SPANS=1``."""
    if _full is not None:
        return _full
    return exporting() or os.environ.get("TIDEMESH_OTEL_SPANS", "0") == "1"


SpanAttributes = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None


@contextlib.contextmanager
def span(
    name: str,
    attributes: SpanAttributes = None,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: str | None = None,
    keep: bool = False,
    new_trace: bool = False,
    link_to: Sequence[str] = (),
) -> Iterator[trace.Span | None]:
    """A recorded span (child of `parent`, a traceparent, when given) when full spans are on;
    otherwise only `parent`'s context is made current (free). Yields the span (None when off).
    `attributes` may be a function, called only when the span is recorded (hot paths pass one).
    A MeshError or any exception ends it with an error status; `keep` records it whatever the
    sampler's ratio. `new_trace` starts a trace of its own, linked to the current span (one task
    of a batch call: one trace per task, each pointing at the call that brought it); `link_to`
    (traceparents) are other spans it serves too (the other requests of one model batch)."""
    batch_link = [Link(trace.get_current_span().get_span_context())] if new_trace else []
    context = otel_context.Context() if new_trace else context_of(parent) if parent is not None else None
    if not full_spans():
        token = otel_context.attach(context) if context is not None else None
        try:
            yield None
        finally:
            if token is not None:
                otel_context.detach(token)
        return
    given = attributes() if callable(attributes) else attributes
    attrs = {k: v for k, v in (given or {}).items() if v not in (None, "")}
    if keep:
        attrs[KEEP] = True
    links = [Link(trace.get_current_span(context).get_span_context())] if kind is SpanKind.CONSUMER and context else []
    links += [link for link in batch_link if link.context.is_valid]
    for other in link_to:
        served = trace.get_current_span(context_of(other)).get_span_context()
        if served.is_valid:
            links.append(Link(served))
    with tracer().start_as_current_span(
        name, context=context, kind=kind, attributes=attrs, links=links, record_exception=True
    ) as current:
        yield current


def messaging_attributes(operation: str, destination: str, **more: Any) -> dict[str, Any]:
    """OpenTelemetry's messaging attributes of one JetStream hop: `operation` is ``send`` (a
    producer's publish) or ``process`` (a consumer's)."""
    attributes = {
        "messaging.system": "nats",
        "messaging.operation.type": operation,
        "messaging.destination.name": destination,
    }
    attributes.update({f"messaging.{key}": value for key, value in more.items()})
    return attributes


def task_attributes(spec: Any, **more: Any) -> dict[str, Any]:
    """The attributes every span about a task carries (`spec`: a TaskSpec), plus `more`
    (``step``, ``pool``, ``attempt``), under ``tidemesh.*``."""
    from mesh.priority import class_name

    attributes = {
        "tidemesh.task.id": spec.task_id,
        "tidemesh.tenant": spec.tenant,
        "tidemesh.kind": spec.kind,
        "tidemesh.priority_class": class_name(spec.priority_class),
    }
    attributes.update({f"tidemesh.{key}": value for key, value in more.items()})
    return attributes


def failed(current: trace.Span | None, error: BaseException | str) -> None:
    """Mark `current` (from `span`) as failed, with the error's class and message."""
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, str(error)))
        current.set_attribute("error.type", getattr(error, "error_class", "") or type(error).__name__)


def fail_current(error: BaseException | str) -> None:
    """Mark the span now current (if one is recorded) as failed."""
    if full_spans():
        failed(trace.get_current_span(), error)


def server_interceptors() -> list[Any]:
    return [aio_server_interceptor()] if full_spans() else [ServerContextInterceptor()]


def client_interceptors() -> list[Any]:
    return list(aio_client_interceptors()) if full_spans() else light_client_interceptors()
