"""Admission-time validation of a TaskSpec. Every failure names the field."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from mesh.errors import InvalidArgument
from mesh.fabric._subjects import TOKEN_RE
from mesh.oip import check_infer_structure
from mesh.tasks._registry import CUSTOM_PAYLOAD, KINDS, TaskKind
from mesh.v1 import task_pb2

SCHEMA_VERSION = 1
FAN_OUT_CHILD_KINDS = frozenset({"echo", "embed"})


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int = 64 * 1024
    max_idempotency_key: int = 256
    max_labels: int = 32
    max_label_key: int = 63
    max_label_value: int = 256
    # The whole serialized spec: the payload's 64 KiB plus labels, keys and ids. A work item or
    # event carries the spec, so this keeps every message well under the broker's 1 MiB limit.
    max_spec_bytes: int = 96 * 1024
    max_stream_chunks: int = 10_000
    max_chunk_delay_ms: int = 10_000
    max_chunk_words: int = 512
    default_ttl_s: float = 24 * 3600.0
    max_fan_out: int = 1000


_TOKEN_RULE = "must be 1-64 characters of A-Z a-z 0-9 _ -"
# Label keys look like `team`, `app.kubernetes.io/name` or `tidemesh.replay_of`.
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_ECHOED_KEY_CHARS = 128
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def check_task_id(task_id: str, field: str = "task_id") -> str:
    """`task_id` if it is a well-formed task id (it becomes a subject token), else InvalidArgument."""
    if not task_id:
        raise InvalidArgument(field, "is required")
    if not TOKEN_RE.match(task_id):
        raise InvalidArgument(field, _TOKEN_RULE)
    return task_id


def validate_spec(spec: task_pb2.TaskSpec, limits: Limits, now_s: float | None = None) -> None:
    """Raise InvalidArgument for the first problem found; `spec` is left untouched."""
    now_s = time.time() if now_s is None else now_s
    if not spec.tenant:
        raise InvalidArgument("spec.tenant", "is required")
    if not TOKEN_RE.match(spec.tenant):
        raise InvalidArgument("spec.tenant", _TOKEN_RULE)
    if spec.task_id:
        check_task_id(spec.task_id, "spec.task_id")
    if not spec.kind:
        raise InvalidArgument("spec.kind", f"is required (one of: {KINDS.one_of()})")
    kind = KINDS.get(spec.kind)
    if kind is None:
        # Echo at most a bounded prefix: a megabyte of kind must not travel back in grpc-message.
        shown = spec.kind if len(spec.kind) <= 64 else f"{spec.kind[:64]}… ({len(spec.kind)} characters)"
        raise InvalidArgument("spec.kind", f"unknown task kind {shown!r} (one of: {KINDS.one_of()})")
    if spec.priority > 100:
        raise InvalidArgument("spec.priority", "must be between 0 and 100")
    if spec.priority_class not in task_pb2.PriorityClass.values():
        raise InvalidArgument("spec.priority_class", f"unknown priority class {spec.priority_class}")
    if spec.qos not in task_pb2.QosTier.values():
        raise InvalidArgument("spec.qos", f"unknown QoS tier {spec.qos}")
    if len(spec.idempotency_key) > limits.max_idempotency_key:
        raise InvalidArgument("spec.idempotency_key", f"longer than {limits.max_idempotency_key} characters")
    if kind.builtin and spec.schema_version > SCHEMA_VERSION:
        raise InvalidArgument(
            "spec.schema_version", f"version {spec.schema_version} is newer than supported {SCHEMA_VERSION}"
        )
    if spec.HasField("deadline") and spec.deadline.ToMicroseconds() / 1e6 <= now_s:
        raise InvalidArgument("spec.deadline", "is in the past")
    if len(spec.ordering_key) > limits.max_idempotency_key:
        raise InvalidArgument("spec.ordering_key", f"longer than {limits.max_idempotency_key} characters")
    _validate_labels(spec, limits)
    if spec.parent_task_id:
        check_task_id(spec.parent_task_id, "spec.parent_task_id")
    _validate_payload(spec, kind, limits)
    size = spec.ByteSize()
    if size > limits.max_spec_bytes:
        raise InvalidArgument("spec", f"is {size} bytes serialized, over the {limits.max_spec_bytes}-byte limit")


def _validate_labels(spec: task_pb2.TaskSpec, limits: Limits) -> None:
    if len(spec.labels) > limits.max_labels:
        raise InvalidArgument("spec.labels", f"more than {limits.max_labels} labels")
    for key in sorted(spec.labels):
        # JSON quoting keeps the path ASCII (it travels as gRPC metadata); a huge key is not echoed.
        field = f"spec.labels[{json.dumps(key)}]" if len(key) <= _ECHOED_KEY_CHARS else "spec.labels"
        if not 1 <= len(key) <= limits.max_label_key or not _LABEL_KEY_RE.match(key):
            raise InvalidArgument(
                field,
                f"label keys must be 1-{limits.max_label_key} characters of A-Z a-z 0-9 . _ / -, "
                "starting with a letter or digit",
            )
        value = spec.labels[key]
        if len(value) > limits.max_label_value:
            raise InvalidArgument(field, f"value longer than {limits.max_label_value} characters")
        if _CONTROL_RE.search(value):
            raise InvalidArgument(field, "value holds control characters")


def _validate_payload(spec: task_pb2.TaskSpec, kind: TaskKind, limits: Limits) -> None:
    field = kind.payload_field
    if not spec.HasField("payload") or spec.payload.WhichOneof("body") is None:
        raise InvalidArgument("spec.payload", f"is required: set payload.{field} for kind {spec.kind!r}")
    case = spec.payload.WhichOneof("body")
    if case != field:
        raise InvalidArgument(f"spec.payload.{case}", f"kind {spec.kind!r} takes payload.{field}")
    size = spec.payload.ByteSize()
    if size > limits.max_payload_bytes:
        raise InvalidArgument("spec.payload", f"is {size} bytes, over the {limits.max_payload_bytes}-byte limit")
    if field == CUSTOM_PAYLOAD:
        # The bytes are checked against the registered schema at admission (`mesh.schemas`).
        if spec.payload.custom.type_url != kind.input_type_url:
            raise InvalidArgument("spec.payload.custom.type_url", f"kind {spec.kind!r} takes {kind.input_type_url!r}")
        return
    if field == "infer":
        check_infer_structure(spec.payload.infer, "spec.payload.infer.")
    if field == "embed" and not spec.payload.embed.text.strip():
        raise InvalidArgument("spec.payload.embed.text", "is empty")
    if field == "webhook":
        url = spec.payload.webhook.url
        if not url.startswith(("http://", "https://")) or len(url) > 2048:
            raise InvalidArgument("spec.payload.webhook.url", "must be an http(s) URL of at most 2048 characters")
    if field == "fan_out":
        fan_out = spec.payload.fan_out
        if fan_out.child_kind not in FAN_OUT_CHILD_KINDS:
            raise InvalidArgument(
                "spec.payload.fan_out.child_kind", f"must be one of: {', '.join(sorted(FAN_OUT_CHILD_KINDS))}"
            )
        if not 1 <= len(fan_out.texts) <= limits.max_fan_out:
            raise InvalidArgument("spec.payload.fan_out.texts", f"must hold 1..{limits.max_fan_out} texts")
        for index, text in enumerate(fan_out.texts):
            if not text.strip():
                raise InvalidArgument(f"spec.payload.fan_out.texts[{index}]", "is empty")
    if field == "doc_embed":
        document = spec.payload.doc_embed
        if not document.text.strip():
            raise InvalidArgument("spec.payload.doc_embed.text", "is empty")
        if document.chunk_words > limits.max_chunk_words:
            raise InvalidArgument("spec.payload.doc_embed.chunk_words", f"must be ≤ {limits.max_chunk_words}")
    if field == "stream":
        stream = spec.payload.stream
        if not 1 <= stream.chunks <= limits.max_stream_chunks:
            raise InvalidArgument("spec.payload.stream.chunks", f"must be 1..{limits.max_stream_chunks}")
        if stream.chunk_delay_ms > limits.max_chunk_delay_ms:
            raise InvalidArgument("spec.payload.stream.chunk_delay_ms", f"must be ≤ {limits.max_chunk_delay_ms}")
