"""Structured JSON logs carrying the service, task id and trace id of the current context.

Every line passes one redaction point (`redact`), whatever logged it — our code, a library, an
exception's text: API keys keep only their id (``tmk_<id>_…``), JWTs and bearer credentials are
replaced, and a field whose name says it holds a secret (``token``, ``password``, ``api_key``,
``authorization``, …) is withheld whole. Lines are JSON, so a CR or LF in logged input is an
escape inside a string, never a line of its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace

_task_id: contextvars.ContextVar[str] = contextvars.ContextVar("tidemesh_task_id", default="")
_service = "tidemesh"

# tmk_<id>_<secret> (the id has no underscore): the id is what operators need; the secret is
# never written. A tmk_ string too long to be an id alone is withheld whole (a malformed key).
_API_KEY = re.compile(r"(tmk_[A-Za-z0-9]+)_[A-Za-z0-9_-]+")
_API_KEY_ODD = re.compile(r"tmk_[A-Za-z0-9-]{16,}")
# A JWT: three base64url segments, the first a JSON header ('{"' encodes as eyJ).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# An Authorization value: the scheme as HTTP writes it (case-sensitive, so prose such as "basic
# scheduling" is left alone), unless what follows is an API key already reduced to its id.
_SCHEME = re.compile(r"\b(Bearer|ApiKey|Basic)\s+(?!tmk_)[^\s\"',;]+")
# Fields withheld whole: named for a secret, the name alone (page_token or prompt_tokens are not).
_SECRET_FIELD = re.compile(
    r"(access_|refresh_|id_|bearer_)?token|secret|password|passwd|api_?key|authorization|cookie|credentials?",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """`text` with every credential-shaped substring replaced."""
    text = _API_KEY.sub(r"\1_" + REDACTED, text)
    text = _API_KEY_ODD.sub("tmk_" + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    return _SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def _clean(key: str, value: Any) -> Any:
    if _SECRET_FIELD.fullmatch(key):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(key, item) for item in value]
    return redact(str(value))


# Attributes every LogRecord has; anything else passed via `extra=` is emitted as a field.
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": _service,
            "logger": record.name,
            "msg": redact(record.getMessage()),
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
                entry[key] = _clean(key, value)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
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
