"""Strict decoding of user payloads, and validation of the descriptor sets they are decoded with."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor_pb2 import FileDescriptorSet
from google.protobuf.message import Message

from mesh.errors import InvalidArgument
from mesh.schemas import (
    compile_proto,
    decode_strict,
    descriptor_set_of,
    from_json,
    load_descriptor_set,
    message_class,
    to_json,
)
from mesh.v1 import schema_pb2

PROTO = """
syntax = "proto3";
package acme.v1;
import "google/protobuf/timestamp.proto";
message Item { int32 size = 1; string label = 2; }
message Custom {
  repeated Item items = 1;
  map<string, Item> by_name = 2;
  Item main = 3;
  int64 count = 4;
  google.protobuf.Timestamp at = 5;
  string display_name = 6;
}
"""
PATH = "spec.payload.custom"


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = tmp_path_factory.mktemp("proto")
    source = root / "acme" / "v1" / "custom.proto"
    source.parent.mkdir(parents=True)
    source.write_text(PROTO)
    return compile_proto(source, [root])


@pytest.fixture(scope="module")
def custom(descriptor_set: bytes) -> type[Message]:
    return message_class(descriptor_set, "acme.v1.Custom")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    """One field on the wire; `payload` is already encoded for its wire type (length added for type 2)."""
    body = _varint(len(payload)) + payload if wire_type == 2 else payload
    return _varint(number << 3 | wire_type) + body


def _item(custom: type[Message], **fields: object) -> bytes:
    item_type = custom.DESCRIPTOR.fields_by_name["items"].message_type
    return message_class_of(item_type)(**fields).SerializeToString()


def message_class_of(descriptor: object) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)  # type: ignore[arg-type]


def test_a_well_formed_payload_decodes(custom: type[Message]) -> None:
    """A payload written with the same schema decodes to the same message."""
    message = custom(count=3, display_name="x")
    message.items.add(size=1)  # type: ignore[attr-defined]
    message.by_name["a"].size = 2  # type: ignore[attr-defined]
    decoded = decode_strict(custom, message.SerializeToString(), PATH)
    assert decoded == message


def test_an_unknown_field_number_is_named(custom: type[Message]) -> None:
    """A field number the schema lacks is refused with the path and the number."""
    data = _field(99, 0, _varint(7))
    with pytest.raises(InvalidArgument) as refused:
        decode_strict(custom, data, PATH)
    assert refused.value.field == f"{PATH}.99"
    assert "unknown field number 99" in refused.value.reason


def test_a_known_field_with_the_wrong_wire_type_is_refused(custom: type[Message]) -> None:
    """A string sent where an int32 belongs — which protobuf keeps as an unknown field — names that field."""
    items = b"".join(_field(1, 2, _item(custom, size=n)) for n in (1, 2))
    bad_item = _item(custom, label="ok") + _field(1, 2, b"not a number")
    data = items + _field(1, 2, bad_item)
    parsed = custom()
    parsed.ParseFromString(data)  # protobuf itself accepts it without a word
    with pytest.raises(InvalidArgument) as refused:
        decode_strict(custom, data, PATH)
    assert refused.value.field == f"{PATH}.items[2].size"
    assert "wire type length-delimited" in refused.value.reason


def test_unknown_fields_inside_map_values_and_singular_messages_are_found(custom: type[Message]) -> None:
    """The walk reaches map values and nested singular messages too."""
    entry = _field(1, 2, b"k") + _field(2, 2, _item(custom, size=1) + _field(7, 0, _varint(1)))
    with pytest.raises(InvalidArgument) as in_map:
        decode_strict(custom, _field(2, 2, entry), PATH)
    assert in_map.value.field == f"{PATH}.by_name['k'].7"
    with pytest.raises(InvalidArgument) as in_main:
        decode_strict(custom, _field(3, 2, _field(2, 0, _varint(5))), PATH)
    assert in_main.value.field == f"{PATH}.main.label"


def test_undecodable_bytes_are_invalid_argument(custom: type[Message]) -> None:
    """Bytes that are no protobuf message at all name the payload's path."""
    with pytest.raises(InvalidArgument) as refused:
        decode_strict(custom, b"\x0a\xff\xff\xff\x0f", PATH)
    assert refused.value.field == PATH
    assert "acme.v1.Custom" in refused.value.reason


def test_json_accepts_proto_and_json_names_and_round_trips(custom: type[Message]) -> None:
    """Both `display_name` and `displayName` are accepted; to_json keeps proto names."""
    by_proto = from_json(custom, {"display_name": "a", "count": "5", "items": [{"size": 1}]}, PATH)
    by_json = from_json(custom, {"displayName": "a", "count": 5, "items": [{"size": 1}]}, PATH)
    assert by_proto == by_json
    data = to_json(by_proto)
    assert data["display_name"] == "a" and data["count"] == "5" and data["items"] == [{"size": 1, "label": ""}]
    assert from_json(custom, data, PATH) == by_proto


def test_json_unknown_keys_name_their_path(custom: type[Message]) -> None:
    """An unknown key, at the top or deep inside, is named `path.key`."""
    with pytest.raises(InvalidArgument) as top:
        from_json(custom, {"colour": "red"}, PATH)
    assert top.value.field == f"{PATH}.colour"
    with pytest.raises(InvalidArgument) as deep:
        from_json(custom, {"items": [{"size": 1}, {"size": 2}, {"sise": 3}]}, PATH)
    assert deep.value.field == f"{PATH}.items[2].sise"
    with pytest.raises(InvalidArgument) as twice:
        from_json(custom, {"display_name": "a", "displayName": "b"}, PATH)
    assert twice.value.field == f"{PATH}.displayName"


def test_json_type_errors_name_the_field(custom: type[Message]) -> None:
    """A value of the wrong type is refused naming its field."""
    with pytest.raises(InvalidArgument) as nested:
        from_json(custom, {"items": [{"size": 1}, {"size": "big"}]}, PATH)
    assert nested.value.field == f"{PATH}.items[1].size"
    with pytest.raises(InvalidArgument) as timestamp:
        from_json(custom, {"at": "yesterday"}, PATH)
    assert timestamp.value.field == f"{PATH}.at"
    with pytest.raises(InvalidArgument) as not_object:
        from_json(custom, ["a"], PATH)
    assert not_object.value.field == PATH


def test_a_set_missing_an_import_is_refused_naming_it(descriptor_set: bytes) -> None:
    """A set without a (non-well-known) file it imports names that file."""
    fds = FileDescriptorSet.FromString(descriptor_set)
    main = next(f for f in fds.file if f.name == "acme/v1/custom.proto")
    main.dependency.append("acme/v1/shared.proto")
    with pytest.raises(InvalidArgument) as refused:
        load_descriptor_set(fds.SerializeToString(), "acme.v1.Custom")
    assert refused.value.field == "descriptor_set"
    assert "acme/v1/shared.proto" in refused.value.reason and "--include_imports" in refused.value.reason


def test_a_missing_well_known_import_is_supplied(descriptor_set: bytes) -> None:
    """A set without google/protobuf/timestamp.proto still loads: the runtime holds that file."""
    fds = FileDescriptorSet.FromString(descriptor_set)
    kept = [f for f in fds.file if not f.name.startswith("google/")]
    slim = FileDescriptorSet(file=kept)
    loaded = load_descriptor_set(slim.SerializeToString(), "acme.v1.Custom")
    assert "google/protobuf/timestamp.proto" in {f.name for f in loaded.file}


def test_junk_and_unknown_subjects_are_refused(descriptor_set: bytes) -> None:
    """Bytes that are not a descriptor set, an empty one, and a subject it lacks each say so."""
    for junk in (b"\xff\xff\xff", b"hello world", b""):
        with pytest.raises(InvalidArgument) as refused:
            load_descriptor_set(junk, "acme.v1.Custom")
        assert refused.value.field == "descriptor_set"
    with pytest.raises(InvalidArgument) as unknown:
        load_descriptor_set(descriptor_set, "acme.v1.Nope")
    assert unknown.value.field == "subject" and "acme.v1.Nope" in unknown.value.reason
    for bad in ("", "acme v1", "acme..Req", "acme.>", "1acme.Req"):
        with pytest.raises(InvalidArgument) as named:
            load_descriptor_set(descriptor_set, bad)
        assert named.value.field == "subject"


def test_a_file_that_does_not_build_is_refused(descriptor_set: bytes) -> None:
    """A field whose type the set does not define is refused with the builder's reason."""
    fds = FileDescriptorSet.FromString(descriptor_set)
    main = next(f for f in fds.file if f.name == "acme/v1/custom.proto")
    main.message_type[0].field.add(name="ghost", number=9, type=11, type_name=".acme.v1.Ghost", label=1)
    with pytest.raises(InvalidArgument) as refused:
        load_descriptor_set(fds.SerializeToString(), "acme.v1.Item")
    assert refused.value.field == "descriptor_set" and "acme/v1/custom.proto" in refused.value.reason


def test_compile_errors_carry_protocs_message(tmp_path: Path) -> None:
    """A .proto that does not compile is InvalidArgument with protoc's own words (file and line)."""
    source = tmp_path / "bad.proto"
    source.write_text('syntax = "proto3";\nmessage A { int32 x = 1; strin y = 2; }\n')
    with pytest.raises(InvalidArgument) as refused:
        compile_proto(source)
    assert refused.value.field == "proto"
    assert "bad.proto:2" in refused.value.reason and "strin" in refused.value.reason


def test_a_generated_class_gives_its_set_with_imports() -> None:
    """descriptor_set_of a generated class holds its file and its imports, and loads as its subject."""
    data = descriptor_set_of(schema_pb2.SchemaVersion)
    names = {f.name for f in load_descriptor_set(data, "mesh.v1.SchemaVersion").file}
    assert names == {"mesh/v1/schema.proto", "google/protobuf/timestamp.proto"}
    rebuilt = message_class(data, "mesh.v1.SchemaVersion")
    assert rebuilt is not schema_pb2.SchemaVersion  # a private pool: no clash with the generated class
    assert message_class(data, "mesh.v1.SchemaVersion") is rebuilt  # cached
    sample = schema_pb2.SchemaVersion(subject="a.B", version=2, registered=timestamp_pb2.Timestamp(seconds=5))
    assert decode_strict(rebuilt, sample.SerializeToString(), "x").SerializeToString() == sample.SerializeToString()


def test_a_proto_compiled_by_protoc_and_its_generated_module_are_one_version() -> None:
    """protoc's descriptor set spells default json_names, a generated module's omits them: the
    canonical form (and so the fingerprint) is the same, so registering both ways is one version."""
    import sys
    from pathlib import Path

    from mesh.schemas import compile_proto, descriptor_set_of, fingerprint, load_descriptor_set

    example = Path(__file__).resolve().parents[2] / "examples" / "textpipe"
    sys.path.insert(0, str(example / "python"))
    try:
        from textpipe.v1.textpipe_pb2 import CountRequest
    finally:
        sys.path.remove(str(example / "python"))
    compiled = compile_proto(example / "proto" / "textpipe" / "v1" / "textpipe.proto", [example / "proto"])
    generated = descriptor_set_of(CountRequest)
    subject = "textpipe.v1.CountRequest"
    assert fingerprint(load_descriptor_set(compiled, subject)) == fingerprint(load_descriptor_set(generated, subject))
