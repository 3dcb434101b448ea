"""Schema compatibility: a table of changes, judged by our rules and by the real `buf breaking` (WIRE_JSON)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from google.protobuf.descriptor_pb2 import FileDescriptorSet

from mesh.errors import InvalidArgument
from mesh.schemas import check, compile_proto, fingerprint, mode_from_name, mode_name
from mesh.v1 import schema_pb2

BUF = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "buf"
SUBJECT = "acme.v1.Req"
BASE = """
message Req {
  int32 width = 1;
  string name = 2;
  Inner inner = 3;
  repeated int32 sizes = 4;
  oneof choice { string a = 5; string b = 6; }
  Color color = 7;
  map<string, Inner> by_key = 8;
  int32 loose = 9;
  reserved 20 to 30;
  reserved "gone";
}
message Inner { int32 size = 1; }
message Other { int32 size = 1; }
enum Color { COLOR_UNSPECIFIED = 0; COLOR_RED = 1; COLOR_BLUE = 2; reserved 9; }
"""


def _edit(*pairs: tuple[str, str]) -> str:
    text = BASE
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


# (name, new text, compatible in BACKWARD mode, rules we must report)
CASES: list[tuple[str, str, bool, set[str]]] = [
    ("add a field", _edit(("int32 loose = 9;", "int32 loose = 9;\n  string added = 10;")), True, set()),
    (
        "delete a field, reserving number and name",
        _edit(("int32 loose = 9;", 'reserved 9; reserved "loose";')),
        True,
        set(),
    ),
    (
        "delete a field unreserved",
        _edit(("int32 loose = 9;", "")),
        False,
        {"FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED", "FIELD_NO_DELETE_UNLESS_NAME_RESERVED"},
    ),
    (
        "delete a field reserving only its number",
        _edit(("int32 loose = 9;", "reserved 9;")),
        False,
        {"FIELD_NO_DELETE_UNLESS_NAME_RESERVED"},
    ),
    (
        "rename a field",
        _edit(("int32 loose = 9;", "int32 slack = 9;")),
        False,
        {"FIELD_SAME_NAME", "FIELD_SAME_JSON_NAME"},
    ),
    (
        "change json_name",
        _edit(("int32 loose = 9;", 'int32 loose = 9 [json_name = "lax"];')),
        False,
        {"FIELD_SAME_JSON_NAME"},
    ),
    ("int32 to int64", _edit(("int32 width = 1;", "int64 width = 1;")), False, {"FIELD_SAME_TYPE"}),
    ("string to bytes", _edit(("string name = 2;", "bytes name = 2;")), False, {"FIELD_SAME_TYPE"}),
    ("another message type", _edit(("Inner inner = 3;", "Other inner = 3;")), False, {"FIELD_SAME_TYPE"}),
    (
        "move into a oneof",
        _edit(("int32 loose = 9;", ""), ("string b = 6; }", "string b = 6; int32 loose = 9; }")),
        False,
        {"FIELD_SAME_ONEOF"},
    ),
    (
        "move out of a oneof",
        _edit(("string a = 5; ", ""), ("int32 loose = 9;", "int32 loose = 9;\n  string a = 5;")),
        False,
        {"FIELD_SAME_ONEOF"},
    ),
    (
        "repeated to singular",
        _edit(("repeated int32 sizes = 4;", "int32 sizes = 4;")),
        False,
        {"FIELD_SAME_CARDINALITY"},
    ),
    (
        "singular to repeated",
        _edit(("int32 loose = 9;", "repeated int32 loose = 9;")),
        False,
        {"FIELD_SAME_CARDINALITY"},
    ),
    (
        "implicit to optional presence",
        _edit(("int32 loose = 9;", "optional int32 loose = 9;")),
        False,
        {"FIELD_SAME_PRESENCE"},
    ),
    ("add an enum value", _edit(("COLOR_BLUE = 2;", "COLOR_BLUE = 2; COLOR_GREEN = 3;")), True, set()),
    (
        "delete an enum value unreserved",
        _edit(("COLOR_BLUE = 2;", "")),
        False,
        {"ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED", "ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED"},
    ),
    (
        "delete an enum value, reserving number and name",
        _edit(("COLOR_BLUE = 2;", 'reserved 2; reserved "COLOR_BLUE";')),
        True,
        set(),
    ),
    ("rename an enum value", _edit(("COLOR_BLUE = 2;", "COLOR_AZURE = 2;")), False, {"ENUM_VALUE_SAME_NAME"}),
    (
        "nested message field type",
        _edit(("message Inner { int32 size", "message Inner { string size")),
        False,
        {"FIELD_SAME_TYPE"},
    ),
    (
        "add a field to a nested message",
        _edit(("message Inner { int32 size = 1;", "message Inner { int32 size = 1; int32 more = 2;")),
        True,
        set(),
    ),
    ("reserved range removed", _edit(("reserved 20 to 30;", "")), False, {"RESERVED_MESSAGE_NO_DELETE"}),
    (
        "reserved range narrowed",
        _edit(("reserved 20 to 30;", "reserved 20 to 25;")),
        False,
        {"RESERVED_MESSAGE_NO_DELETE"},
    ),
    ("reserved name removed", _edit(('reserved "gone";', "")), False, {"RESERVED_MESSAGE_NO_DELETE"}),
    ("enum reserved range removed", _edit(("reserved 9; }", "}")), False, {"RESERVED_ENUM_NO_DELETE"}),
    ("map value type", _edit(("map<string, Inner> by_key", "map<string, Other> by_key")), False, {"FIELD_SAME_TYPE"}),
    ("comments only", _edit(("int32 width = 1;", "// how wide\n  int32 width = 1;")), True, set()),
]

# buf's WIRE_JSON rule → the rule of ours that covers it (ours are stricter: same type, same cardinality).
COVERED_BY = {
    "FIELD_WIRE_JSON_COMPATIBLE_TYPE": "FIELD_SAME_TYPE",
    "FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY": "FIELD_SAME_CARDINALITY",
}


def _write(root: Path, body: str) -> Path:
    source = root / "acme" / "v1" / "req.proto"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(f'syntax = "proto3";\npackage acme.v1;\n{body}')
    (root / "buf.yaml").write_text("version: v2\nbreaking:\n  use: [WIRE_JSON]\n")
    return source


def _compiled(root: Path, body: str) -> FileDescriptorSet:
    return FileDescriptorSet.FromString(compile_proto(_write(root, body), [root]))


def _buf_rules(old_root: Path, new_root: Path) -> set[str]:
    """The rule ids `buf breaking new --against old` reports (WIRE_JSON)."""
    done = subprocess.run(
        [str(BUF), "breaking", str(new_root), "--against", str(old_root), "--error-format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, 100), done.stderr
    return {json.loads(line)["type"] for line in done.stdout.splitlines() if line.strip()}


@pytest.mark.parametrize(("name", "new", "compatible", "rules"), CASES, ids=[case[0] for case in CASES])
def test_backward_rules_agree_with_the_table_and_cover_buf(
    tmp_path: Path, name: str, new: str, compatible: bool, rules: set[str]
) -> None:
    """Each change is judged as the table says, with the rules it names, and flags all buf flags."""
    old_set, new_set = _compiled(tmp_path / "old", BASE), _compiled(tmp_path / "new", new)
    found = check([(1, old_set)], new_set, SUBJECT, schema_pb2.COMPATIBILITY_MODE_BACKWARD)
    ours = {violation.rule for violation in found}
    assert (not found) == compatible, [str(v) for v in found]
    assert rules <= ours
    assert all(violation.against_version == 1 for violation in found)
    buf = _buf_rules(tmp_path / "old", tmp_path / "new")
    assert {COVERED_BY.get(rule, rule) for rule in buf} <= ours, (buf, ours)
    assert not (compatible and buf), f"buf refuses a change the table calls compatible: {buf}"


def test_every_violation_is_reported_not_the_first(tmp_path: Path) -> None:
    """Many breaking changes at once come back as many violations, each with its path."""
    new = _edit(
        ("int32 width = 1;", "int64 width = 1;"), ("string name = 2;", "bytes name = 2;"), ("COLOR_BLUE = 2;", "")
    )
    found = check([(1, _compiled(tmp_path / "a", BASE))], _compiled(tmp_path / "b", new), SUBJECT, 1)
    paths = {(v.rule, v.path) for v in found}
    assert {
        ("FIELD_SAME_TYPE", "acme.v1.Req.width"),
        ("FIELD_SAME_TYPE", "acme.v1.Req.name"),
        ("ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED", "acme.v1.Color.COLOR_BLUE"),
    } <= paths


def test_only_what_the_subject_reaches_is_compared(tmp_path: Path) -> None:
    """A change to a message the subject does not use is no violation of the subject."""
    body = BASE + "message Unused { int32 x = 1; }\n"
    found = check(
        [(1, _compiled(tmp_path / "a", body))],
        _compiled(tmp_path / "b", body.replace("int32 x = 1;", "string x = 1;")),
        SUBJECT,
        schema_pb2.COMPATIBILITY_MODE_FULL_TRANSITIVE,
    )
    assert found == []


def test_forward_allows_what_old_readers_skip_and_refuses_retyping(tmp_path: Path) -> None:
    """FORWARD: an added field or enum value, or a removed field, is fine; a retyped or renamed one is not."""
    old = _compiled(tmp_path / "old", BASE)
    forward = schema_pb2.COMPATIBILITY_MODE_FORWARD
    for index, (new, compatible) in enumerate(
        [
            (_edit(("int32 loose = 9;", "int32 loose = 9;\n  string added = 10;")), True),
            (_edit(("COLOR_BLUE = 2;", "COLOR_BLUE = 2; COLOR_GREEN = 3;")), True),
            (_edit(("int32 loose = 9;", "")), True),
            (_edit(("reserved 20 to 30;", "")), True),
            (_edit(("int32 width = 1;", "int64 width = 1;")), False),
            (_edit(("int32 loose = 9;", "int32 slack = 9;")), False),
            (_edit(("repeated int32 sizes = 4;", "int32 sizes = 4;")), False),
        ]
    ):
        found = check([(1, old)], _compiled(tmp_path / f"new{index}", new), SUBJECT, forward)
        assert (not found) == compatible, (index, [str(v) for v in found])


def test_full_is_both_directions_each_violation_once(tmp_path: Path) -> None:
    """FULL refuses a removed field (BACKWARD) and says a retyped field once, not once per direction."""
    old = _compiled(tmp_path / "old", BASE)
    full = schema_pb2.COMPATIBILITY_MODE_FULL
    removed = check([(1, old)], _compiled(tmp_path / "a", _edit(("int32 loose = 9;", ""))), SUBJECT, full)
    assert {v.rule for v in removed} == {
        "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
        "FIELD_NO_DELETE_UNLESS_NAME_RESERVED",
    }
    retyped = check(
        [(1, old)], _compiled(tmp_path / "b", _edit(("int32 width = 1;", "int64 width = 1;"))), SUBJECT, full
    )
    assert [v.rule for v in retyped] == ["FIELD_SAME_TYPE"]
    added = check(
        [(1, old)],
        _compiled(tmp_path / "c", _edit(("int32 loose = 9;", "int32 loose = 9; int32 more = 10;"))),
        SUBJECT,
        full,
    )
    assert added == []


def test_transitive_modes_check_every_earlier_version(tmp_path: Path) -> None:
    """v1 has a field v2 dropped (reserved): a v3 reusing its number passes BACKWARD, not BACKWARD_TRANSITIVE."""
    v1 = _compiled(tmp_path / "v1", BASE)
    v2 = _compiled(tmp_path / "v2", _edit(("int32 loose = 9;", "")))  # v1 → v2 breaks, but v2 is what is registered
    v3 = _compiled(tmp_path / "v3", _edit(("int32 loose = 9;", "string loose = 9;")))
    history = [(1, v1), (2, v2)]
    assert check(history, v3, SUBJECT, schema_pb2.COMPATIBILITY_MODE_BACKWARD) == []
    transitive = check(history, v3, SUBJECT, schema_pb2.COMPATIBILITY_MODE_BACKWARD_TRANSITIVE)
    assert [(v.rule, v.against_version) for v in transitive] == [("FIELD_SAME_TYPE", 1)]
    forward = check(history, v3, SUBJECT, schema_pb2.COMPATIBILITY_MODE_FORWARD_TRANSITIVE)
    assert [(v.rule, v.against_version) for v in forward] == [("FIELD_SAME_TYPE", 1)]
    assert check(history, v3, SUBJECT, schema_pb2.COMPATIBILITY_MODE_FULL_TRANSITIVE)


def test_none_checks_nothing(tmp_path: Path) -> None:
    """NONE accepts any change of the subject."""
    old = _compiled(tmp_path / "a", BASE)
    new = _compiled(tmp_path / "b", _edit(("int32 width = 1;", "string width = 1;"), ("COLOR_BLUE = 2;", "")))
    assert check([(1, old)], new, SUBJECT, schema_pb2.COMPATIBILITY_MODE_NONE) == []


def test_proto2_required_fields_and_defaults(tmp_path: Path) -> None:
    """Adding a required field, or changing a proto2 default, is refused."""
    old_body = "message Req { optional int32 a = 1 [default = 3]; }"
    root = tmp_path / "p2"

    def compiled(where: str, body: str) -> FileDescriptorSet:
        source = root / where / "acme" / "v1" / "req.proto"
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f'syntax = "proto2";\npackage acme.v1;\n{body}')
        return FileDescriptorSet.FromString(compile_proto(source, [root / where]))

    old = compiled("old", old_body)
    required = compiled("req", "message Req { optional int32 a = 1 [default = 3]; required int32 b = 2; }")
    assert {v.rule for v in check([(1, old)], required, SUBJECT, 1)} == {"MESSAGE_SAME_REQUIRED_FIELDS"}
    default = compiled("def", "message Req { optional int32 a = 1 [default = 4]; }")
    assert {v.rule for v in check([(1, old)], default, SUBJECT, 1)} == {"FIELD_SAME_DEFAULT"}


def test_fingerprint_ignores_comments_and_file_order(tmp_path: Path) -> None:
    """The same schema compiled with other comments, or its files listed in another order, is one fingerprint."""
    plain = _compiled(tmp_path / "a", BASE)
    commented = _compiled(tmp_path / "b", "// a comment\n" + BASE)
    assert fingerprint(plain) == fingerprint(commented)
    reordered = FileDescriptorSet()
    reordered.file.extend(reversed(list(plain.file)))
    assert fingerprint(reordered) == fingerprint(plain)
    assert fingerprint(_compiled(tmp_path / "c", _edit(("int32 loose = 9;", "int64 loose = 9;")))) != fingerprint(plain)


def test_modes_are_spelled_as_the_cli_spells_them() -> None:
    """`backward-transitive`, `FULL`, `compatibility_mode_none` name modes; a typo is refused naming `mode`."""
    assert mode_from_name("backward-transitive") == schema_pb2.COMPATIBILITY_MODE_BACKWARD_TRANSITIVE
    assert mode_from_name("FULL") == schema_pb2.COMPATIBILITY_MODE_FULL
    assert mode_from_name("compatibility_mode_none") == schema_pb2.COMPATIBILITY_MODE_NONE
    assert mode_name(schema_pb2.COMPATIBILITY_MODE_FORWARD_TRANSITIVE) == "forward-transitive"
    with pytest.raises(InvalidArgument) as refused:
        mode_from_name("backwards")
    assert refused.value.field == "mode"
