"""Logs leave the mesh over OTLP when asked (``OTEL_LOGS_EXPORTER=otlp`` beside ``--otlp``): a real
OTLP/gRPC LogsService receiver gets the worker's records of a task, with the task, its tenant and
its trace — the trace whose spans the same collector receives."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc.aio
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from bench._otlp import SpanSink
from clients.sdk import Client
from mesh.supervisor import Supervisor, build_plan
from mesh.v1 import task_pb2
from tests.conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@dataclass
class Logged:
    service: str
    body: str
    attributes: dict[str, str]
    trace_id: str


@dataclass
class LogSink(logs_service_pb2_grpc.LogsServiceServicer):
    records: list[Logged] = field(default_factory=list)

    async def Export(self, request, context):  # type: ignore[no-untyped-def]
        for resource_logs in request.resource_logs:
            service = next(
                (a.value.string_value for a in resource_logs.resource.attributes if a.key == "service.name"), ""
            )
            for scope in resource_logs.scope_logs:
                for record in scope.log_records:
                    attributes = {
                        kv.key: str(getattr(kv.value, kv.value.WhichOneof("value"))) for kv in record.attributes
                    }
                    self.records.append(Logged(service, record.body.string_value, attributes, record.trace_id.hex()))
        return logs_service_pb2.ExportLogsServiceResponse()


@contextlib.asynccontextmanager
async def collector() -> AsyncIterator[tuple[LogSink, SpanSink, str]]:
    logs, spans, server = LogSink(), SpanSink(), grpc.aio.server()
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(logs, server)  # type: ignore[no-untyped-call]
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(spans, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield logs, spans, f"http://127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_a_task_s_log_records_reach_the_collector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with collector() as (logs, spans, endpoint):
        monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "200")  # export every 0.2 s, not 1 s
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
        plan = build_plan(tmp_path / "mesh", public_port=0, workers=1, otlp_endpoint=endpoint)
        async with Supervisor(plan), Client(f"127.0.0.1:{plan.public_port}", tenant="logged") as client:
            events = [e async for e in client.run("echo", {"text": "a logged task"})]
            assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
            task_id, trace_id = events[-1].task_id, events[-1].traceparent.split("-")[1]

            async def step_logged() -> Logged | None:
                return next(
                    (r for r in logs.records if r.body == "step finished" and r.attributes.get("task_id") == task_id),
                    None,
                )

            step = await eventually(step_logged, timeout_s=30, what="the worker's step record at the collector")

            async def the_rest_arrived() -> bool:
                spanned = any(s.span.trace_id.hex() == trace_id for s in spans.spans)
                return spanned and {r.service for r in logs.records} >= {"worker", "gateway", "scheduler"}

            await eventually(the_rest_arrived, timeout_s=30, what="the trace's spans and every service's records")
        assert step.service == "worker" and step.attributes["tenant"] == "logged"
        assert step.attributes["step"] == "echo" and step.trace_id == trace_id
