"""Logs over OTLP (``OTEL_LOGS_EXPORTER=otlp``): each record carries its JSON line's fields, cleaned
by the same redaction point, with the task, the tenant and the current trace; off unless asked."""

from __future__ import annotations

import json
import logging

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

from mesh.telemetry import bind_task
from mesh.telemetry._logging import JsonFormatter, otlp_log_handler, otlp_logs

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7


def test_otlp_logs_only_when_asked() -> None:
    assert not otlp_logs({})
    assert not otlp_logs({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}), "traces alone do not send logs"
    assert not otlp_logs({"OTEL_LOGS_EXPORTER": "otlp"}), "no endpoint, nothing to send to"
    assert otlp_logs({"OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert otlp_logs({"OTEL_LOGS_EXPORTER": "console, otlp", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://c:4317"})


def test_a_record_leaves_redacted_with_its_task_tenant_and_trace() -> None:
    exporter = InMemoryLogRecordExporter()
    handler = otlp_log_handler("worker", exporter)
    lines: list[str] = []
    json_handler = logging.Handler()
    json_handler.emit = lambda record: lines.append(JsonFormatter().format(record))  # type: ignore[method-assign]
    logger = logging.getLogger("tests.log_export")
    logger.addHandler(handler)
    logger.addHandler(json_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    span = trace.NonRecordingSpan(
        trace.SpanContext(TRACE_ID, SPAN_ID, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        with bind_task("t-123", "acme"):
            logger.warning("calling with %s", "ApiKey tmk_abc123_s3cr3tvalue", extra={"password": "hunter2", "step": 2})
    finally:
        otel_context.detach(token)
        handler.provider.force_flush()
        logger.removeHandler(handler)
        logger.removeHandler(json_handler)
        handler.close()
    (exported,) = exporter.get_finished_logs()
    record = exported.log_record
    assert record.body == "calling with ApiKey tmk_abc123_[redacted]"
    assert dict(record.attributes or {}) == {
        "logger": "tests.log_export",
        "task_id": "t-123",
        "tenant": "acme",
        "password": "[redacted]",
        "step": 2,
    }
    assert (record.trace_id, record.span_id, record.severity_text) == (TRACE_ID, SPAN_ID, "WARNING")
    assert exported.resource.attributes["service.name"] == "worker"
    line = json.loads(lines[0])  # the JSON line says the same
    assert (line["task_id"], line["tenant"], line["trace_id"]) == ("t-123", "acme", f"{TRACE_ID:032x}")
    assert line["span_id"] == f"{SPAN_ID:016x}" and "hunter2" not in lines[0] and "s3cr3t" not in lines[0]
