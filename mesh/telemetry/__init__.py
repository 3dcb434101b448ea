"""Logs, metrics and trace context — one module per concern."""

from mesh.telemetry._logging import bind_task, configure_logging, get_logger
from mesh.telemetry._metrics import METRICS, Metrics, metrics_app
from mesh.telemetry._tracing import (
    client_interceptors,
    configure_tracing,
    current_traceparent,
    extract_context,
    inject_headers,
    server_interceptors,
    step_span,
    tracer,
)

__all__ = [
    "METRICS",
    "Metrics",
    "bind_task",
    "client_interceptors",
    "configure_logging",
    "configure_tracing",
    "current_traceparent",
    "extract_context",
    "get_logger",
    "inject_headers",
    "metrics_app",
    "server_interceptors",
    "step_span",
    "tracer",
]
