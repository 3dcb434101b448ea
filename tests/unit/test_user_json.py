"""Mesh messages with user messages inside, to JSON: each Any through its registered class,
base64 where none is known, never an exception."""

from __future__ import annotations

from google.protobuf import any_pb2, struct_pb2, wrappers_pb2

from mesh.schemas import to_dict, type_urls
from mesh.v1 import deadletter_pb2, task_pb2

URL = "type.googleapis.com/google.protobuf.StringValue"


def _any(text: str) -> any_pb2.Any:
    return any_pb2.Any(type_url=URL, value=wrappers_pb2.StringValue(value=text).SerializeToString())


def test_every_any_in_an_event_or_a_letter_is_written_through_its_class() -> None:
    """Output and payload Any fields, nested in a spec inside a dead letter too, become their fields."""
    event = task_pb2.TaskEvent(
        task_id="t1",
        output=task_pb2.TaskOutput(custom=_any("out")),
        spec=task_pb2.TaskSpec(payload=task_pb2.TaskPayload(custom=_any("in"))),
    )
    rendered = to_dict(event, {URL: wrappers_pb2.StringValue})
    assert rendered["output"]["custom"] == {"@type": URL, "value": "out"}
    assert rendered["spec"]["payload"]["custom"] == {"@type": URL, "value": "in"}
    assert rendered["taskId"] == "t1"
    letter = deadletter_pb2.DeadLetter(task_id="t2", spec=event.spec)
    assert to_dict(letter, {URL: wrappers_pb2.StringValue})["spec"]["payload"]["custom"]["value"] == "in"
    assert type_urls(letter) == {URL}


def test_an_unknown_type_or_undecodable_bytes_are_base64_not_an_error() -> None:
    """No class for the URL, or bytes that are not the class: {"@type", "value": base64}."""
    event = task_pb2.TaskEvent(output=task_pb2.TaskOutput(custom=any_pb2.Any(type_url="x/acme.v1.Gone", value=b"\x01")))
    assert to_dict(event, {})["output"]["custom"] == {"@type": "x/acme.v1.Gone", "value": "AQ=="}
    broken = task_pb2.TaskEvent(output=task_pb2.TaskOutput(custom=any_pb2.Any(type_url=URL, value=b"\xff")))
    assert to_dict(broken, {URL: wrappers_pb2.StringValue})["output"]["custom"]["value"] == "/w=="


def test_a_message_without_any_is_plain_message_to_dict() -> None:
    """Built-in outputs are untouched by the user-message path."""
    event = task_pb2.TaskEvent(task_id="t", output=task_pb2.TaskOutput(text="hi"))
    assert to_dict(event, {}) == {"taskId": "t", "output": {"text": "hi"}}
    assert type_urls(struct_pb2.Struct()) == set()
