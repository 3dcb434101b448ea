"""Structured JSON logs carrying the service, task id and trace id of the current context."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace

_task_id: contextvars.ContextVar[str] = contextvars.ContextVar("tidemesh_task_id", default="")
_service = "tidemesh"

# Attributes every LogRecord has; anything else passed via `extra=` is emitted as a field.
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": _service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        task_id = _task_id.get()
        if task_id:
            entry["task_id"] = task_id
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = f"{span.trace_id:032x}"
            entry["span_id"] = f"{span.span_id:016x}"
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send this process's logs to stderr as one JSON object per line."""
    global _service
    _service = service
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # nats-py logs every reconnect attempt at error level; keep it, but not at debug noise.
    logging.getLogger("nats").setLevel(logging.WARNING)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


@contextlib.contextmanager
def bind_task(task_id: str) -> Iterator[None]:
    """Tag every log line emitted inside the block with `task_id`."""
    token = _task_id.set(task_id)
    try:
        yield
    finally:
        _task_id.reset(token)
