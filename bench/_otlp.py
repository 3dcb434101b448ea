"""An OTLP/gRPC trace receiver (the TraceService of opentelemetry-proto) in this process: what the
tracing bench exports to, and what the tracing tests read spans back from."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc.aio
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from bench._serve import serving


@dataclass
class Received:
    service: str
    span: trace_pb2.Span

    @property
    def attributes(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for kv in self.span.attributes:
            value = kv.value
            out[kv.key] = getattr(value, value.WhichOneof("value") or "string_value")
        return out


@dataclass
class SpanSink(trace_service_pb2_grpc.TraceServiceServicer):
    """Every span exported to it, in arrival order (`keep=False`: counted only)."""

    keep: bool = True
    spans: list[Received] = field(default_factory=list)
    count: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def Export(self, request, context):  # type: ignore[no-untyped-def]
        for resource_spans in request.resource_spans:
            service = next(
                (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), ""
            )
            for scope in resource_spans.scope_spans:
                self.count += len(scope.spans)
                if self.keep:
                    self.spans.extend(Received(service, s) for s in scope.spans)
        self.arrived.set()
        return trace_service_pb2.ExportTraceServiceResponse()

    def of_task(self, task_id: str) -> list[Received]:
        """The spans of every trace that has a span about `task_id`."""
        traces = {r.span.trace_id for r in self.spans if r.attributes.get("tidemesh.task.id") == task_id}
        return [r for r in self.spans if r.span.trace_id in traces]

    async def until(self, done: Callable[[], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            self.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"spans never arrived: {sorted({(r.service, r.span.name) for r in self.spans})}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)


@contextlib.asynccontextmanager
async def receiving(keep: bool = True, http: bool = False) -> AsyncIterator[tuple[SpanSink, str]]:
    """A receiver on a free port: (the sink, its endpoint for OTEL_EXPORTER_OTLP_ENDPOINT) —
    OTLP/gRPC, or with `http` OTLP/HTTP (protobuf bodies POSTed to /v1/traces)."""
    sink = SpanSink(keep)
    if http:
        async with _over_http(sink) as endpoint:
            yield sink, endpoint
        return
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield sink, f"http://127.0.0.1:{port}"
    finally:
        await server.stop(None)


_ID_KEYS = {"traceId", "spanId", "parentSpanId"}


def _hex_to_base64(value: Any) -> Any:
    return base64.b64encode(bytes.fromhex(value)).decode() if isinstance(value, str) else value


def _ids_as_base64(node: Any) -> Any:
    """OTLP/JSON spells trace and span ids in hex where protobuf's JSON mapping wants base64."""
    if isinstance(node, dict):
        return {k: _hex_to_base64(v) if k in _ID_KEYS else _ids_as_base64(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_ids_as_base64(v) for v in node]
    return node


@contextlib.asynccontextmanager
async def _over_http(sink: SpanSink) -> AsyncIterator[str]:
    from aiohttp import web

    async def export(request: web.Request) -> web.Response:
        body = await request.read()
        if request.content_type == "application/json":  # OTLP/JSON (Triton's exporter sends it)
            message = json_format.ParseDict(
                _ids_as_base64(json.loads(body)),
                trace_service_pb2.ExportTraceServiceRequest(),
                ignore_unknown_fields=True,
            )
        else:
            message = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        reply = await sink.Export(message, None)  # type: ignore[no-untyped-call]
        return web.Response(body=reply.SerializeToString(), content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/v1/traces", export)
    async with serving(app) as url:
        yield url
