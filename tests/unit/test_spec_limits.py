"""The whole TaskSpec is bounded: labels, keys, ids and total size; each rejection names the field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import InvalidArgument
from mesh.tasks import Limits, validate_spec
from mesh.v1 import task_pb2

LIMITS = Limits()


def _echo(text: str = "x", **labels: str) -> task_pb2.TaskSpec:
    return task_pb2.TaskSpec(
        tenant="acme",
        kind="echo",
        payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput(text=text)),
        labels=labels,
    )


def _rejected(spec: task_pb2.TaskSpec) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        validate_spec(spec, LIMITS)
    return caught.value


def test_ordinary_labels_pass() -> None:
    """Labels within the limits, including the mesh's own replay label, validate."""
    spec = _echo(team="search", env="prod")
    spec.labels["tidemesh.replay_of"] = "01hzzzzzzzzzzzzzzzzzzzzzzz"
    spec.labels["app.kubernetes.io/name"] = "x" * LIMITS.max_label_value
    validate_spec(spec, LIMITS)


@pytest.mark.parametrize("size", [900 * 1024, 2 * 1024 * 1024])
def test_huge_label_value_names_the_label(size: int) -> None:
    """A 900 KB or 2 MB label value is INVALID_ARGUMENT on that label, not a broker error."""
    error = _rejected(_echo(foo="v" * size))
    assert error.field == 'spec.labels["foo"]'
    assert "longer than" in error.reason


def test_too_many_labels() -> None:
    """More labels than the limit name the labels map."""
    spec = _echo(**{f"k{i}": "v" for i in range(LIMITS.max_labels + 1)})
    assert _rejected(spec).field == "spec.labels"


@pytest.mark.parametrize("key", ["", "has space", "-lead", "ключ", "a\nb", "k" * 64])
def test_bad_label_keys(key: str) -> None:
    """Empty, over-long or out-of-alphabet label keys are rejected naming the label."""
    error = _rejected(_echo(**{key: "v"}))
    assert error.field.startswith("spec.labels")
    assert error.field.isascii()  # it travels as gRPC metadata


def test_huge_label_key_is_not_echoed() -> None:
    """A megabyte-long key is named as the labels map, not copied into the error."""
    error = _rejected(_echo(**{"k" * 1_000_000: "v"}))
    assert error.field == "spec.labels" and len(error.message) < 300


def test_control_characters_in_a_label_value() -> None:
    """A label value with control characters is rejected."""
    assert _rejected(_echo(foo="a\x00b")).field == 'spec.labels["foo"]'


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("idempotency_key", "k" * 257, "spec.idempotency_key"),
        ("ordering_key", "k" * 257, "spec.ordering_key"),
        ("task_id", "t" * 65, "spec.task_id"),
        ("parent_task_id", "t" * 65, "spec.parent_task_id"),
    ],
)
def test_id_and_key_lengths(field: str, value: str, named: str) -> None:
    """Ids and keys over their length limit are rejected naming them."""
    spec = _echo()
    setattr(spec, field, value)
    assert _rejected(spec).field == named


def test_total_spec_size_is_bounded() -> None:
    """A spec whose parts are each within limits but whose sum is over the total is rejected as `spec`."""
    limits = Limits(max_spec_bytes=8 * 1024)
    spec = _echo(text="x" * 6000, **{f"k{i}": "v" * 200 for i in range(20)})
    with pytest.raises(InvalidArgument) as caught:
        validate_spec(spec, limits)
    assert caught.value.field == "spec"


@given(
    st.dictionaries(st.text(min_size=0, max_size=80), st.text(min_size=0, max_size=400), max_size=LIMITS.max_labels + 4)
)
def test_any_spec_that_passes_fits_the_broker(labels: dict[str, str]) -> None:
    """Whatever the labels, a spec either fails naming a field or serializes within the spec limit."""
    spec = _echo(text="x" * (LIMITS.max_payload_bytes - 16))
    spec.labels.update(labels)
    try:
        validate_spec(spec, LIMITS)
    except InvalidArgument as exc:
        assert exc.field.startswith("spec") and exc.field.isascii()
        return
    assert spec.ByteSize() <= LIMITS.max_spec_bytes < 1024 * 1024


def test_an_unknown_kind_is_echoed_bounded() -> None:
    """A 2 MB unknown kind is refused naming spec.kind, its message short enough for grpc-message."""
    spec = _echo()
    spec.kind = "k" * (2 << 20)
    error = _rejected(spec)
    assert error.field == "spec.kind" and len(error.message) < 400 and str(2 << 20) in error.message
