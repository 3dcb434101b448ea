"""The desktop app's submit form without Flet (`desktop._form`): a control per field of the kind's
input message (a built-in kind's from the generated descriptors, a user kind's from a registered
descriptor set), every value checked before sending with each error on its field, the filled form
as the payload the SDK submits, and a refusal's field path mapped back to its control."""

from __future__ import annotations

import base64

import pytest
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st

from desktop._form import (
    FormErrors,
    InputForm,
    builtin_class,
    check_submit_options,
    field_of_refusal,
    form_for,
    payload_of,
    read_form,
)
from mesh.schemas import compile_proto, message_class
from mesh.v1 import kind_pb2, task_pb2

ORDER = """syntax = "proto3";
package shop.v1;
enum Size { SIZE_UNSPECIFIED = 0; SMALL = 1; LARGE = 2; }
message Box { uint32 width = 1; }
message Order {
  string name = 1;
  uint32 count = 2;
  int64 total_cents = 3;
  double weight = 4;
  bool gift = 5;
  Size size = 6;
  repeated string tags = 7;
  repeated Size extra_sizes = 8;
  bytes note = 9;
  Box box = 10;
  map<string, string> labels = 11;
}
"""


@pytest.fixture(scope="module")
def order_form(tmp_path_factory: pytest.TempPathFactory) -> InputForm:
    """A user kind's form, from the descriptor set the schema registry would hold."""
    source = tmp_path_factory.mktemp("proto") / "shop" / "v1" / "order.proto"
    source.parent.mkdir(parents=True)
    source.write_text(ORDER)
    descriptor_set = compile_proto(source, [source.parents[2]])
    declaration = kind_pb2.KindDeclaration(name="shop.order", input_type="shop.v1.Order", description="an order")
    return form_for(declaration, message_class(descriptor_set, "shop.v1.Order"), None)


def _stream_form() -> InputForm:
    found = builtin_class("mesh.v1.StreamInput")
    assert found is not None
    case, generated = found
    return form_for(kind_pb2.KindDeclaration(name="stream", input_type="mesh.v1.StreamInput"), generated, case)


def test_a_builtin_kinds_form_is_its_payload_case() -> None:
    """stream's input, StreamInput, is TaskPayload's `stream` case: text and two whole numbers."""
    form = _stream_form()
    assert form.payload_case == "stream" and form.type_name == "mesh.v1.StreamInput"
    assert [(f.label, f.control, f.default) for f in form.fields] == [
        ("text (string)", "text", ""),
        ("chunks (uint32)", "text", "0"),
        ("chunk_delay_ms (uint32)", "text", "0"),
    ]
    assert builtin_class("shop.v1.Order") is None  # not built in: the registry has it


def test_every_field_type_gets_its_control(order_form: InputForm) -> None:
    """Scalars as text, bool a check box, an enum a choice, repeated scalars lines, messages and maps JSON."""
    controls = {f.name: (f.type_text, f.control) for f in order_form.fields}
    assert controls == {
        "name": ("string", "text"),
        "count": ("uint32", "text"),
        "total_cents": ("int64", "text"),
        "weight": ("double", "text"),
        "gift": ("bool", "bool"),
        "size": ("enum Size", "choice"),
        "tags": ("repeated string", "lines"),
        "extra_sizes": ("repeated Size", "lines"),
        "note": ("bytes", "text"),
        "box": ("message shop.v1.Box (JSON)", "json"),
        "labels": ("map (JSON object)", "json"),
    }
    size = order_form.field("size")
    assert size is not None and size.choices == ("SIZE_UNSPECIFIED", "SMALL", "LARGE")
    assert order_form.description == "an order" and order_form.payload_case is None


def test_a_filled_form_is_the_message(order_form: InputForm) -> None:
    """Each control's text becomes its field; empty numbers stay zero, empty JSON fields unset."""
    values = {
        "name": "Ada",
        "count": " 3 ",
        "total_cents": "-9223372036854775808",
        "weight": "1.5",
        "gift": True,
        "size": "LARGE",
        "tags": "first\n\n second \n",
        "extra_sizes": "SMALL\nLARGE",
        "note": base64.b64encode(b"hi").decode(),
        "box": '{"width": 4}',
        "labels": '{"a": "b"}',
    }
    order: Message = read_form(order_form, values)
    assert order.name == "Ada" and order.count == 3 and order.total_cents == -(2**63)  # type: ignore[attr-defined]
    assert order.weight == 1.5 and order.gift and order.size == 2  # type: ignore[attr-defined]
    assert list(order.tags) == ["first", " second "] and list(order.extra_sizes) == [1, 2]  # type: ignore[attr-defined]
    assert order.note == b"hi" and order.box.width == 4 and dict(order.labels) == {"a": "b"}  # type: ignore[attr-defined]
    empty = read_form(order_form, {"count": "", "box": "  "})
    assert empty.count == 0 and not empty.HasField("box")  # type: ignore[attr-defined]


def test_every_bad_field_is_named_at_once(order_form: InputForm) -> None:
    """Nothing is sent while any field is wrong; each error says its field and the rule it breaks."""
    with pytest.raises(FormErrors) as caught:
        read_form(
            order_form,
            {
                "count": "2.5",
                "total_cents": "9223372036854775808",
                "weight": "nan",
                "tags": "fine",
                "extra_sizes": "SMALL\nHUGE",
                "note": "not base64!",
                "box": "{oops",
            },
        )
    errors = caught.value.errors
    assert list(errors) == ["count", "total_cents", "weight", "extra_sizes", "note", "box"]  # the form's order
    assert errors["count"] == "count must be a whole number from 0 to 4294967295"
    assert "9223372036854775807" in errors["total_cents"]
    assert errors["weight"] == "weight must be a number, e.g. 0.5"
    assert errors["extra_sizes"].startswith("extra_sizes line 2 must be one of SIZE_UNSPECIFIED, SMALL, LARGE")
    assert errors["note"] == "note must be base64"
    assert errors["box"].startswith("box must be JSON (")


def test_json_that_does_not_fit_its_message_names_the_field(order_form: InputForm) -> None:
    with pytest.raises(FormErrors) as caught:
        read_form(order_form, {"box": '{"depth": 1}'})
    assert list(caught.value.errors) == ["box"]


def test_a_builtin_kinds_form_submits_its_payload_case() -> None:
    """The stream form's message lands in TaskPayload.stream; a user kind's message is submitted as is."""
    form = _stream_form()
    payload = payload_of(form, read_form(form, {"text": "a b", "chunks": "2", "chunk_delay_ms": ""}))
    assert payload == task_pb2.TaskPayload(stream=task_pb2.StreamInput(text="a b", chunks=2))


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_any_uint32_typed_reaches_the_message(number: int) -> None:
    form = _stream_form()
    assert read_form(form, {"chunks": str(number)}).chunks == number  # type: ignore[attr-defined]


@given(st.integers().filter(lambda n: not 0 <= n < 2**32) | st.text().filter(lambda t: not t.strip().isdigit()))
def test_no_other_text_passes_for_a_uint32(typed: int | str) -> None:
    form = _stream_form()
    text = str(typed)
    if not text.strip():
        return  # empty is zero, as proto3 has it
    with pytest.raises(FormErrors) as caught:
        read_form(form, {"chunks": text})
    assert list(caught.value.errors) == ["chunks"]


def test_the_options_beside_the_input_are_checked() -> None:
    check_submit_options("interactive", "key-1")
    with pytest.raises(FormErrors) as caught:
        check_submit_options("urgent", "k" * 257)
    assert list(caught.value.errors) == ["priority", "idempotency_key"]


@pytest.mark.parametrize(
    ("path", "control"),
    [
        ("spec.payload.stream.chunks", "chunks"),
        ("spec.payload.custom.tags[2]", "tags"),
        ("spec.kind", "kind"),
        ("spec.idempotency_key", "idempotency_key"),
        ("spec.payload.stream.unknown", ""),
        ("spec.tenant", ""),
        ("", ""),
    ],
)
def test_a_refusal_lands_on_the_control_it_names(path: str, control: str, order_form: InputForm) -> None:
    form = _stream_form() if ".stream." in path else order_form
    assert field_of_refusal(form, path) == control
