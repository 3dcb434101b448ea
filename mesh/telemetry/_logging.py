"""Structured JSON logs carrying the service, task id, tenant, and trace and span ids of the
current context — to stderr, and over OTLP too when ``OTEL_LOGS_EXPORTER=otlp`` (the collector of
the traces, ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``_LOGS_ENDPOINT``; ``OTEL_EXPORTER_OTLP_PROTOCOL``
grpc or http/protobuf), each record the same cleaned fields as its JSON line.

Every line passes one redaction point, whatever logged it — our code, a library, an exception's
text: API keys keep only their id (``tmk_<id>_…``), JWTs and bearer credentials are replaced, a
field whose name says it holds a secret (``token``, ``password``, ``api_key``, ``authorization``,
…) is withheld whole, and a protobuf message — passed as an argument or an extra field, or through
`redact_message` — is logged in its JSON form with every field its schema marks
``[debug_redact = true]`` replaced. Control characters in logged input (CR, LF, the ESC of ANSI
sequences, U+2028/U+2029, …) are written as visible escapes, so input can neither start a forged
line nor rewrite a terminal, in the JSON lines and in the console format alike.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from opentelemetry import trace

_task_id: contextvars.ContextVar[str] = contextvars.ContextVar("tidemesh_task_id", default="")
_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tidemesh_tenant", default="")
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


# What could end a line or rewrite a terminal once a line is decoded and shown: C0 and C1 controls
# (CR, LF, ESC, NEL, …), DEL, the Unicode line and paragraph separators, and the bidirectional
# overrides that reorder what a reader sees.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_LF = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def one_line(text: str) -> str:
    """`text` with every control character written as a visible escape (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return _CONTROL.sub(_escape, text)


def redact(text: str) -> str:
    """`text` with every credential-shaped substring replaced."""
    text = _API_KEY.sub(r"\1_" + REDACTED, text)
    text = _API_KEY_ODD.sub("tmk_" + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    return _SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def _text(value: str) -> str:
    return one_line(redact(value))


def redact_message(value: Message | Mapping[str, Any] | str, descriptor: Descriptor | None = None) -> dict[str, Any]:
    """The JSON form of a protobuf message with every field whose schema says ``[debug_redact = true]``
    replaced by REDACTED, at any depth: nested messages, oneof members, repeated fields, map values and
    ``Any`` bodies. `value` is a message, or its JSON form (a dict or a JSON string, proto or JSON field
    names) together with the `descriptor` it was written from.

    It reads only the descriptor, so it works on any schema: the contract's, or one built at run time
    from a user's task kind, whose fields marked ``debug_redact`` then never reach a log. What cannot be
    read against its schema (bad JSON, an ``Any`` of an unknown type) is withheld whole. Strings that
    look like credentials are redacted anyway once the result is logged.
    """
    schema: Any  # generated messages' descriptors are upb's class, a built one is descriptor.Descriptor
    if isinstance(value, Message):
        schema = value.DESCRIPTOR
        try:
            doc: Any = json_format.MessageToDict(
                value, preserving_proto_field_name=True, descriptor_pool=schema.file.pool
            )
        except (TypeError, json_format.Error):  # an Any whose type this process does not know
            return _withheld(schema.full_name)
    elif descriptor is None:
        raise TypeError("redact_message needs the descriptor of a message given in its JSON form")
    else:
        schema = descriptor
        try:
            doc = json.loads(value) if isinstance(value, str) else value
        except ValueError:
            return _withheld(schema.full_name)
    if not isinstance(doc, Mapping):
        return _withheld(schema.full_name)
    return _redact_fields(doc, schema)


def _withheld(type_name: str) -> dict[str, Any]:
    return {"@type": type_name, "value": REDACTED}


@lru_cache(maxsize=1024)
def _fields_of(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """A message's fields by proto name and by JSON name (its JSON form may use either)."""
    fields: dict[str, FieldDescriptor] = {}
    for field in descriptor.fields:
        fields[field.json_name] = field
        fields[field.name] = field
    return fields


def _redact_fields(doc: Mapping[str, Any], descriptor: Descriptor) -> dict[str, Any]:
    fields = _fields_of(descriptor)
    out: dict[str, Any] = {}
    for key, value in doc.items():
        field = fields.get(key)
        if field is None:
            out[key] = value  # not in the schema, so not marked; logging still cleans it by shape and name
        elif field.GetOptions().debug_redact:
            out[key] = REDACTED
        elif field.message_type is None:
            out[key] = value
        elif field.message_type.GetOptions().map_entry:
            out[key] = _redact_map(value, field.message_type.fields_by_name["value"], descriptor)
        elif isinstance(value, list):
            out[key] = [_redact_value(item, field.message_type, descriptor) for item in value]
        else:
            out[key] = _redact_value(value, field.message_type, descriptor)
    return out


def _redact_map(value: Any, entry_value: FieldDescriptor, outer: Descriptor) -> Any:
    if not isinstance(value, Mapping):
        return REDACTED  # not a map's JSON form: nothing says what it holds
    if entry_value.GetOptions().debug_redact:
        return {k: REDACTED for k in value}
    if entry_value.message_type is None:
        return value
    return {k: _redact_value(v, entry_value.message_type, outer) for k, v in value.items()}


def _redact_value(value: Any, descriptor: Descriptor, outer: Descriptor) -> Any:
    if descriptor.full_name == "google.protobuf.Any":
        return _redact_any(value, outer)
    if descriptor.full_name.startswith("google.protobuf.") or value is None:
        return value  # well-known types have their own JSON forms and no marked fields
    if not isinstance(value, Mapping):
        return REDACTED  # not a message's JSON form: nothing says what it holds
    return _redact_fields(value, descriptor)


def _redact_any(value: Any, outer: Descriptor) -> Any:
    type_url = value.get("@type", "") if isinstance(value, Mapping) else ""
    if not type_url or not isinstance(type_url, str):
        return value if value in ({}, None) else _withheld("google.protobuf.Any")
    name = type_url.rsplit("/", 1)[-1]
    inner = None
    for pool in (outer.file.pool, descriptor_pool.Default()):
        try:
            inner = pool.FindMessageTypeByName(name)
            break
        except KeyError:
            continue
    if inner is None:
        return _withheld(type_url)
    if name.startswith("google.protobuf."):
        return value  # {"@type": ..., "value": <the well-known type's JSON form>}
    body = _redact_fields({k: v for k, v in value.items() if k != "@type"}, inner)
    return {"@type": type_url, **body}


def _compact(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), default=str)


def _clean(key: str, value: Any) -> Any:
    if _SECRET_FIELD.fullmatch(key):
        return REDACTED
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, Message):
        return _clean(key, redact_message(value))
    if isinstance(value, Mapping):
        return {_text(str(k)): _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(key, item) for item in value]
    return _text(str(value))


def _message(record: logging.LogRecord) -> str:
    """`record.getMessage()`, with protobuf messages (the format or its arguments) in redacted JSON form."""
    msg = _compact(redact_message(record.msg)) if isinstance(record.msg, Message) else str(record.msg)
    args: Any = record.args
    if args:
        if isinstance(args, Mapping):
            args = {k: _compact(redact_message(v)) if isinstance(v, Message) else v for k, v in args.items()}
        else:
            args = tuple(_compact(redact_message(a)) if isinstance(a, Message) else a for a in args)
        msg = msg % args
    return msg


# Attributes every LogRecord has; anything else passed via `extra=` is emitted as a field.
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _exception_text(formatter: logging.Formatter, exc_info: Any) -> str:
    """The formatted traceback with each exception's text and notes (in the chain and groups) on one line."""
    text = formatter.formatException(exc_info)
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc_info[1]]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        notes = getattr(exc, "__notes__", None)
        for part in [_safe_str(exc), *(map(_safe_str, notes) if isinstance(notes, list) else ())]:
            if _CONTROL.search(part):
                text = text.replace(part, one_line(part))
        pending += [exc.__cause__, exc.__context__, *getattr(exc, "exceptions", ())]
    return text


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the line; the traceback says <exception str() failed>
        return ""


def _fields(record: logging.LogRecord, formatter: logging.Formatter, *, block_text: bool) -> dict[str, Any]:
    """A record as cleaned fields; a traceback keeps its line breaks only if `block_text`."""
    entry: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "service": _service,
        "logger": record.name,
        "msg": _text(_message(record)),
    }
    task_id = _task_id.get()
    if task_id:
        entry["task_id"] = _text(task_id)
    tenant = _tenant.get()
    if tenant:
        entry["tenant"] = _text(tenant)
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        entry["trace_id"] = f"{span.trace_id:032x}"
        entry["span_id"] = f"{span.span_id:016x}"
    for key, value in record.__dict__.items():
        if key not in _RESERVED and not key.startswith("_"):
            entry[_text(key)] = _clean(key, value)
    # A traceback is one field; inside a JSON string its own line breaks are escapes and stay, for
    # reading. The exception's text and notes in it are input: escaped whole, line breaks included.
    blocks = {"exc": _exception_text(formatter, record.exc_info) if record.exc_info else "", "stack": record.stack_info}
    for key, block in blocks.items():
        if block:
            text = redact(block)
            entry[key] = _CONTROL_BUT_LF.sub(_escape, text) if block_text else one_line(text)
    return entry


class JsonFormatter(logging.Formatter):
    """One JSON object per line, every field through the redaction point."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record, self, block_text=True), default=str)


# A value written as is in the console format; other strings are quoted, containers written as JSON.
_BARE = re.compile(r"[\w.:/@+-]{1,200}")


def _console_value(value: Any) -> str:
    if not isinstance(value, str):
        return _compact(value)
    return value if _BARE.fullmatch(value) else '"' + value.replace('"', '\\"') + '"'


class ConsoleFormatter(logging.Formatter):
    """``<level> <logger>: <msg> key=value … | <traceback>`` on one line for a terminal, through the same
    redaction point; the traceback's line breaks are written as ``\\n``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = _fields(record, self, block_text=False)
        parts = [f"{entry.pop('level')} {entry.pop('logger')}: {entry.pop('msg')}"]
        blocks = [entry.pop(key) for key in ("exc", "stack") if key in entry]
        for key in ("ts", "service", "span_id"):
            entry.pop(key, None)
        parts += [f"{key}={_console_value(value)}" for key, value in entry.items()]
        parts += [f"| {block}" for block in blocks]
        return " ".join(parts)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send this process's logs to stderr as one JSON object per line (and over OTLP, if asked)."""
    _install(service, level, JsonFormatter())
    if otlp_logs():
        logging.getLogger().addHandler(otlp_log_handler(service))
    # nats-py logs every reconnect attempt at error level; keep it, but not at debug noise.
    logging.getLogger("nats").setLevel(logging.WARNING)


def configure_console_logging(service: str, level: str = "WARNING") -> None:
    """Send this process's logs to stderr one readable line each (a CLI in a terminal, e.g. ``tidemesh up``)."""
    _install(service, level, ConsoleFormatter())


class _SslEofNoise(logging.Filter):
    """asyncio warns on every TLS connection nats-py closes ("returning true from eof_received()
    has no effect when using ssl": its protocol asks to half-close, which TLS cannot): not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "asyncio" and record.getMessage().startswith("returning true from eof_received()"))


def quiet_ssl_eof_noise() -> None:
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _SslEofNoise) for f in logger.filters):
        logger.addFilter(_SslEofNoise())


def _install(service: str, level: str, formatter: logging.Formatter) -> None:
    global _service
    _service = service
    quiet_ssl_eof_noise()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


@contextlib.contextmanager
def bind_task(task_id: str, tenant: str = "") -> Iterator[None]:
    """Tag every log line emitted inside the block with `task_id` (and `tenant`, when given)."""
    token = _task_id.set(task_id)
    tenant_token = _tenant.set(tenant) if tenant else None
    try:
        yield
    finally:
        if tenant_token is not None:
            _tenant.reset(tenant_token)
        _task_id.reset(token)


# --- OTLP -------------------------------------------------------------------------------------------


def otlp_logs(environ: Mapping[str, str] | None = None) -> bool:
    """Whether log records also leave over OTLP: ``OTEL_LOGS_EXPORTER=otlp`` and an endpoint."""
    env = os.environ if environ is None else environ
    endpoint = env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return bool(endpoint) and "otlp" in env.get("OTEL_LOGS_EXPORTER", "").replace(" ", "").split(",")


def _log_exporter() -> Any:
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # type: ignore[assignment]
    else:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: expected grpc or http/protobuf, got {protocol!r}")
    return OTLPLogExporter()  # endpoint, headers, certificate, compression, timeout: from the environment


_SEVERITY = {"DEBUG": 5, "INFO": 9, "WARNING": 13, "ERROR": 17, "CRITICAL": 21}  # OTel's SeverityNumber


class OtlpLogHandler(logging.Handler):
    """Emits each record as an OpenTelemetry log record with the fields of its JSON line — through
    the same redaction point — the message as its body, the rest as attributes, and the trace and
    span ids of the current context."""

    def __init__(self, service: str, exporter: Any = None) -> None:
        super().__init__()
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.resources import Resource

        attributes = {"service.namespace": "tidemesh"}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = service
        self.provider = LoggerProvider(resource=Resource.create(attributes))
        self.provider.add_log_record_processor(BatchLogRecordProcessor(exporter or _log_exporter()))
        self._logger = self.provider.get_logger("tidemesh")
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        from opentelemetry._logs import LogRecord, SeverityNumber

        if record.name.startswith("opentelemetry"):
            return  # the exporter's own complaints would feed themselves back through it
        try:
            fields = _fields(record, self._formatter, block_text=True)
            body = fields.pop("msg")
            for key in ("ts", "level", "service", "trace_id", "span_id"):
                fields.pop(key, None)  # carried by the record itself and its resource
            attributes = {
                key: value if isinstance(value, (str, bool, int, float)) else _compact(value)
                for key, value in fields.items()
                if value is not None
            }
            span = trace.get_current_span().get_span_context()
            self._logger.emit(
                LogRecord(
                    timestamp=int(record.created * 1e9),
                    trace_id=span.trace_id if span.is_valid else None,
                    span_id=span.span_id if span.is_valid else None,
                    trace_flags=span.trace_flags if span.is_valid else None,
                    severity_text=record.levelname,
                    severity_number=SeverityNumber(_SEVERITY.get(record.levelname, 9)),
                    body=body,
                    attributes=attributes,
                )
            )
        except Exception:  # a log line must never take the process down
            self.handleError(record)

    def close(self) -> None:
        self.provider.shutdown()
        super().close()


def otlp_log_handler(service: str, exporter: Any = None) -> OtlpLogHandler:
    """A handler sending records over OTLP (`exporter`: the environment's OTLP exporter by default)."""
    return OtlpLogHandler(service, exporter)
