"""Logs, metrics and trace context — one module per concern."""

from mesh.telemetry._logging import (
    REDACTED,
    bind_task,
    configure_console_logging,
    configure_logging,
    get_logger,
    one_line,
    quiet_ssl_eof_noise,
    redact,
    redact_message,
)
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
    "REDACTED",
    "Metrics",
    "bind_task",
    "client_interceptors",
    "configure_console_logging",
    "configure_logging",
    "configure_tracing",
    "current_traceparent",
    "extract_context",
    "get_logger",
    "inject_headers",
    "metrics_app",
    "one_line",
    "quiet_ssl_eof_noise",
    "redact",
    "redact_message",
    "server_interceptors",
    "step_span",
    "tracer",
]
