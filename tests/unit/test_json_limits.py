"""The gateway's one JSON reader: depth, element and size limits, and strict payload fields."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import InvalidArgument
from mesh.tasks import payload_from_json
from services.gateway._http import _SUBMIT_FIELDS, _spec_from_json
from services.gateway._json import MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_ELEMENTS, parse_object
from services.gateway._openapi import openapi_document


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 100_000])
@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deep_nesting_is_refused_naming_the_limit(depth: int, opener: str) -> None:
    """A body nested past MAX_DEPTH (up to 10^5 levels) is InvalidArgument naming the limit, not RecursionError."""
    closer = "]" if opener == "[" else "}"
    text = '{"a":' + opener * depth + "1" + closer * depth + "}"
    with pytest.raises(InvalidArgument, match=f"deeper than {MAX_DEPTH}") as raised:
        parse_object(text, "body")
    assert raised.value.field == "body"


def test_nesting_up_to_the_limit_is_read() -> None:
    """MAX_DEPTH levels of objects and arrays are fine."""
    text = "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1)
    assert parse_object('{"a":' + text + "}", "body")["a"]


def test_brackets_inside_strings_do_not_count() -> None:
    """Only structure counts toward the depth: brackets and escaped quotes inside strings do not."""
    value = parse_object(json.dumps({"text": '\\"' + "[{" * 10_000}), "body")
    assert value["text"].endswith("[{")


def test_too_many_keys_and_items_are_refused() -> None:
    """More than MAX_ELEMENTS keys and items in one document is InvalidArgument naming the limit."""
    with pytest.raises(InvalidArgument, match=f"more than {MAX_ELEMENTS}"):
        parse_object(json.dumps({"a": list(range(MAX_ELEMENTS + 1))}), "frame")
    with pytest.raises(InvalidArgument, match=f"more than {MAX_ELEMENTS}"):
        parse_object(json.dumps({str(i): i for i in range(MAX_ELEMENTS + 1)}), "frame")


def test_oversized_documents_and_odd_json_are_invalid_input() -> None:
    """Over MAX_DOCUMENT_BYTES, bad UTF-8, duplicate keys, NaN and 5000-digit numbers are 400s, never 500s."""
    cases = {
        b"[" + b" " * MAX_DOCUMENT_BYTES + b"]": "byte limit",
        b'{"a": "\xff"}': "UTF-8",
        b'{"kind": "echo", "kind": "embed"}': "'kind' twice",
        b'{"a": NaN}': "NaN",
        b'{"a": ' + b"1" * 5000 + b"}": "4300 digits",
        b"[1]": "JSON object",
        b'{"a": ': "not JSON",
    }
    for data, message in cases.items():
        with pytest.raises(InvalidArgument, match=message):
            parse_object(data, "body")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_the_reader_agrees_with_json_within_the_limits(value: object) -> None:
    """Any document within the limits reads back as json.loads reads it."""
    text = json.dumps({"v": value})
    try:
        assert parse_object(text, "body") == json.loads(text)
    except InvalidArgument as exc:
        assert "limit" in exc.message or "twice" in exc.message


def test_unknown_top_level_submit_fields_are_refused() -> None:
    """An unknown top-level submit field is InvalidArgument naming it, like an unknown payload field."""
    with pytest.raises(InvalidArgument) as raised:
        _spec_from_json({"kind": "echo", "tenant": "t", "payload": {"text": "hi"}, "evil": 1})
    assert raised.value.field == "evil"
    with pytest.raises(InvalidArgument) as raised:
        _spec_from_json({"kind": "echo", "tenant": "t", "payload": {"text": "hi", "evil": 1}})
    assert raised.value.field == "payload.evil"


def test_empty_tenant_and_task_id_are_refused() -> None:
    """`"tenant": ""` and `"task_id": ""` are errors naming the field (leave them out to default)."""
    for field in ("tenant", "task_id"):
        with pytest.raises(InvalidArgument) as raised:
            _spec_from_json({"kind": "echo", field: ""})
        assert raised.value.field == field


@pytest.mark.parametrize("value", ["5", 5.5, True, -1, 2**32, None])
def test_payload_numbers_are_json_integers(value: object) -> None:
    """A payload number is a JSON integer in range: "5", 5.5, true, -1 and 2^32 are refused, naming the field."""
    with pytest.raises(InvalidArgument) as raised:
        payload_from_json("stream", {"text": "a", "chunks": value})
    assert raised.value.field == "payload.chunks"


def test_an_integral_json_number_is_an_integer() -> None:
    """5.0 is the integer 5, as JSON Schema's "integer" has it."""
    assert payload_from_json("stream", {"text": "a", "chunks": 5.0}).stream.chunks == 5


def test_payload_strings_and_lists_are_typed() -> None:
    """A payload string must be a string and a repeated field a list of strings."""
    with pytest.raises(InvalidArgument) as raised:
        payload_from_json("fan_out", {"child_kind": "echo", "texts": ["a", 1]})
    assert raised.value.field == "payload.texts[1]"
    with pytest.raises(InvalidArgument) as raised:
        payload_from_json("echo", {"text": ["a"]})
    assert raised.value.field == "payload.text"
    with pytest.raises(InvalidArgument) as raised:
        payload_from_json("stream", {"text": "a", "chunkDelayMs": 3})
    assert raised.value.field == "payload.chunkDelayMs"
    assert payload_from_json("stream", {"text": "a", "chunk_delay_ms": 3}).stream.chunk_delay_ms == 3


def test_the_openapi_submit_schema_lists_exactly_the_accepted_fields() -> None:
    """Every built-in kind's submit schema names the fields the server takes, and forbids others
    (`schema_version` belongs to user kinds' payloads only)."""
    submit = openapi_document()["components"]["schemas"]["SubmitTask"]
    for variant in submit["oneOf"]:
        assert set(variant["properties"]) == _SUBMIT_FIELDS - {"schema_version"}
        assert variant["additionalProperties"] is False
