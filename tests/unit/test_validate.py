"""Admission validation: every rejection names the field."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import InvalidArgument
from mesh.fabric import TOKEN_RE
from mesh.tasks import KINDS, Limits, new_task_id, validate_spec
from mesh.v1 import task_pb2


def _echo(**fields: object) -> task_pb2.TaskSpec:
    spec = task_pb2.TaskSpec(
        tenant="acme", kind="echo", payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput(text="x"))
    )
    for key, value in fields.items():
        setattr(spec, key, value)
    return spec


def _field_of(spec: task_pb2.TaskSpec, limits: Limits | None = None) -> str:
    with pytest.raises(InvalidArgument) as caught:
        validate_spec(spec, limits or Limits())
    return caught.value.field


def test_valid_specs_pass() -> None:
    """A complete spec of every kind validates."""
    validate_spec(_echo(), Limits())
    validate_spec(
        task_pb2.TaskSpec(tenant="a", kind="embed", payload=task_pb2.TaskPayload(embed=task_pb2.EmbedInput(text="t"))),
        Limits(),
    )
    validate_spec(
        task_pb2.TaskSpec(
            tenant="a", kind="stream", payload=task_pb2.TaskPayload(stream=task_pb2.StreamInput(chunks=3))
        ),
        Limits(),
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"tenant": ""}, "spec.tenant"),
        ({"tenant": "has space"}, "spec.tenant"),
        ({"tenant": "a.b"}, "spec.tenant"),  # would split a NATS subject token
        ({"kind": ""}, "spec.kind"),
        ({"kind": "teleport"}, "spec.kind"),
        ({"task_id": "bad/id"}, "spec.task_id"),
        ({"priority": 101}, "spec.priority"),
        ({"priority_class": 9}, "spec.priority_class"),
        ({"qos": 7}, "spec.qos"),
        ({"idempotency_key": "k" * 300}, "spec.idempotency_key"),
        ({"schema_version": 2}, "spec.schema_version"),
        ({"parent_task_id": "a b"}, "spec.parent_task_id"),
    ],
)
def test_bad_fields_are_named(fields: dict[str, object], field: str) -> None:
    """Each malformed field is reported by its dotted path."""
    assert _field_of(_echo(**fields)) == field


def test_payload_problems_are_named() -> None:
    """Missing, mismatched, oversize and empty payloads name the payload field."""
    assert _field_of(task_pb2.TaskSpec(tenant="a", kind="echo")) == "spec.payload"
    mismatched = task_pb2.TaskSpec(
        tenant="a", kind="echo", payload=task_pb2.TaskPayload(embed=task_pb2.EmbedInput(text="x"))
    )
    assert _field_of(mismatched) == "spec.payload.embed"
    assert _field_of(_echo(), Limits(max_payload_bytes=2)) == "spec.payload"
    empty_embed = task_pb2.TaskSpec(
        tenant="a", kind="embed", payload=task_pb2.TaskPayload(embed=task_pb2.EmbedInput(text="  "))
    )
    assert _field_of(empty_embed) == "spec.payload.embed.text"
    no_chunks = task_pb2.TaskSpec(
        tenant="a", kind="stream", payload=task_pb2.TaskPayload(stream=task_pb2.StreamInput())
    )
    assert _field_of(no_chunks) == "spec.payload.stream.chunks"


def test_past_deadline_is_rejected() -> None:
    """A deadline already passed is refused at admission."""
    spec = _echo()
    spec.deadline.FromSeconds(int(time.time()) - 5)
    assert _field_of(spec) == "spec.deadline"


@given(st.text(max_size=80))
def test_unknown_kinds_never_pass(kind: str) -> None:
    """Any kind outside the catalog is rejected, naming spec.kind."""
    if kind in KINDS:
        return
    assert _field_of(_echo(kind=kind)) == "spec.kind"


@given(st.integers(min_value=0, max_value=2**47), st.integers(min_value=1, max_value=2**20))
def test_task_ids_sort_by_time_and_are_subject_safe(earlier_ms: int, gap_ms: int) -> None:
    """Ids from a later millisecond sort after earlier ones and fit a NATS subject token."""
    first, second = new_task_id(earlier_ms), new_task_id(earlier_ms + gap_ms)
    assert first < second
    assert len(first) == 26 and TOKEN_RE.match(first)


def _infer(**payload: object) -> task_pb2.TaskSpec:
    fields: dict[str, object] = {
        "model": "scaler",
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 1], "contents": {"fp32_contents": [1.0, 2.0]}}],
    }
    fields.update(payload)
    return task_pb2.TaskSpec(
        tenant="acme", kind="infer", payload=task_pb2.TaskPayload(infer=task_pb2.InferInput(**fields))
    )


def test_an_infer_payload_is_checked_whatever_its_model() -> None:
    """Without the model's signature (the gateway checks that), admission still refuses what no
    model could take: no model, no tensor, an unknown datatype, a size that does not fit its shape."""
    validate_spec(_infer(), Limits())
    prefix = "spec.payload.infer."
    assert _field_of(_infer(model="")) == prefix + "model"
    assert _field_of(_infer(inputs=[])) == prefix + "inputs"
    assert _field_of(_infer(inputs=[{"name": "X", "datatype": "FP8", "shape": [1]}])) == prefix + "inputs[0].datatype"
    assert _field_of(_infer(inputs=[{"name": "", "datatype": "FP32", "shape": [1]}])) == prefix + "inputs[0].name"
    short = [{"name": "X", "datatype": "FP32", "shape": [2, 2], "contents": {"fp32_contents": [1.0]}}]
    assert _field_of(_infer(inputs=short)) == prefix + "inputs[0].contents.fp32_contents"
    twice = [{"name": "X", "datatype": "INT32", "shape": [1], "contents": {"int_contents": [1]}}] * 2
    assert _field_of(_infer(inputs=twice)) == prefix + "inputs[1].name"
    raw = _infer(inputs=[{"name": "X", "datatype": "FP16", "shape": [2]}], raw_input_contents=[b"\0\0"])
    assert _field_of(raw) == prefix + "raw_input_contents[0]"  # 2 FP16 values need 4 bytes
    assert _field_of(_infer(outputs=[""])) == prefix + "outputs[0]"
