"""Every log line passes one redaction point: no API key secret, JWT or bearer credential is written,
secret-named fields and fields a schema marks ``debug_redact`` are withheld, and control characters in
logged input (CR, LF, ANSI escapes, U+2028) can neither start a line of their own nor reach a terminal raw."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.json_format import MessageToDict

from mesh.telemetry._logging import REDACTED, ConsoleFormatter, JsonFormatter, redact, redact_message
from mesh.v1 import gateway_pb2

KEY = "tmk_0a1b2c3d4e5f_Zq9-x_Yw8vU7tS6rQ5pO4nM3lK2j"
ADMIN = "tmk_admin_b7Hk-2_mQ9zLr4TxW8cVn1Ys5Ue3Ga6Pf0Dh"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnQiOiJhY21lIn0.c2lnbmF0dXJlLWJ5dGVz"


def _record(message: object, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    if exc:
        try:
            raise ValueError(f"refused {KEY} and {JWT}")
        except ValueError:
            record.exc_info = sys.exc_info()
    return record


def _line(message: object, *args: object, exc: bool = False, **extra: object) -> dict[str, object]:
    text = JsonFormatter().format(_record(message, *args, exc=exc, **extra))
    assert "\n" not in text and "\r" not in text  # one JSON object, one line
    return json.loads(text)


@pytest.mark.parametrize("secret", [KEY, ADMIN, JWT, f"Bearer {JWT}", "ApiKey opaque-value-123"])
def test_credentials_in_messages_are_redacted(secret: str) -> None:
    """A credential in the message, its %-args, an extra field or an exception's text never appears."""
    line = _line("call with %s failed: " + secret, secret, detail=f"header was {secret}", exc=True)
    text = json.dumps(line)
    for part in (KEY.split("_", 2)[2], ADMIN.split("_", 2)[2], JWT, "opaque-value-123"):
        assert part not in text
    assert REDACTED in str(line["msg"])


def test_api_key_ids_survive_for_operators() -> None:
    """The key id (what an operator revokes by) stays; only the secret goes."""
    assert redact(f"key {KEY} refused") == f"key tmk_0a1b2c3d4e5f_{REDACTED} refused"
    assert redact("tmk_0123456789abcdefghijklmnop") == f"tmk_{REDACTED}"


def test_secret_named_fields_are_withheld_whole() -> None:
    """Fields named like secrets are withheld whatever they hold; other fields are kept."""
    line = _line("login", token="anything", api_key="x", authorization="y", password="z", tenant="acme")
    assert line["token"] == line["api_key"] == line["authorization"] == line["password"] == REDACTED
    assert line["tenant"] == "acme"


FORGED = '\r\n{"level": "info", "msg": "admin logged in"}'
# Everything that could end a line or rewrite a terminal once a line's text is shown.
CONTROLS = ["\r", "\n", "\x1b", "\x00", "\x0b", "\x0c", "\x85", "\u2028", "\u2029", "\u202e"]
HOSTILE = "x" + FORGED + "\x1b[2J\x1b[31mred\u2028next\x85nel\u202eevil\x00\x0b\x0c"


def _raw_controls(text: str) -> list[str]:
    return [char for char in CONTROLS if char in text]


def test_control_characters_in_input_never_reach_a_line_raw() -> None:
    """CR/LF (a forged line), ANSI escapes and U+2028 in the message, its args, an extra's value or keys,
    or an exception's text are written as visible escapes: the line, decoded, is still one line."""
    try:
        raise RuntimeError(f"bad id {HOSTILE}")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = _record("task " + HOSTILE + " %s", HOSTILE, label=HOSTILE, labels={HOSTILE: HOSTILE}, ids=[HOSTILE])
    record.exc_info = exc_info
    text = JsonFormatter().format(record)
    assert len(text.splitlines()) == 1
    line = json.loads(text)
    for field in ("msg", "label"):
        shown = str(line[field])
        assert _raw_controls(shown) == [], field
        assert "x\\r\\n{" in shown and "\\x1b[31mred\\u2028next\\x85nel\\u202eevil\\x00\\x0b\\x0c" in shown
    assert _raw_controls(json.dumps([line["labels"], line["ids"]], ensure_ascii=False)) == []
    # A traceback is one JSON field whose own line breaks stay; the exception's text inside it is escaped.
    exc_lines = str(line["exc"]).splitlines()
    assert exc_lines[0].startswith("Traceback") and exc_lines[-1].startswith("RuntimeError: bad id x\\r\\n{")
    assert _raw_controls(str(line["exc"]).replace("\n", "")) == []


def test_console_format_is_one_redacted_line() -> None:
    """The console format (tidemesh up's terminal) writes one line, traceback included, redacted as JSON is."""
    record = _record("call %s " + HOSTILE, KEY, exc=True, child="worker-1", note="two words" + FORGED)
    text = ConsoleFormatter().format(record)
    assert len(text.splitlines()) == 1 and _raw_controls(text) == []
    assert text.startswith(f"warning t: call tmk_0a1b2c3d4e5f_{REDACTED} x\\r\\n{{")
    assert " child=worker-1 " in text and ' note="two words\\r\\n{\\"level\\": ' in text
    assert " | Traceback (most recent call last):\\n" in text
    assert KEY.split("_", 2)[2] not in text and JWT not in text


def test_contract_marks_the_created_api_key_secret() -> None:
    """CreateApiKeyResponse.api_key is marked debug_redact: logged as a message, an argument or an extra
    field, the key is withheld whole (not even its id from the key string), the key id field stays."""
    created = gateway_pb2.CreateApiKeyResponse(key_id="0a1b2c3d4e5f", api_key=KEY)
    assert redact_message(created) == {"key_id": "0a1b2c3d4e5f", "api_key": REDACTED}
    for line in (_line(created), _line("created %s", created), _line("created", response=created)):
        text = json.dumps(line)
        assert KEY not in text and KEY.split("_", 2)[2] not in text and "0a1b2c3d4e5f" in text
    assert _line("created", response=created)["response"] == {"key_id": "0a1b2c3d4e5f", "api_key": REDACTED}


def _user_schema() -> descriptor_pool.DescriptorPool:
    """A user's task kind built at run time (issue 13): marked fields nested, in a oneof, in a map's
    message values, in a repeated field and in an Any, and a marked map and scalar at the top."""
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    file = descriptor_pb2.FileDescriptorProto(
        name="acme/kinds.proto", package="acme.kinds", syntax="proto3", dependency=["google/protobuf/any.proto"]
    )
    string, message, optional, repeated = (
        descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )

    def field(
        owner: descriptor_pb2.DescriptorProto,
        name: str,
        number: int,
        kind: int = string,
        label: int = optional,
        type_name: str = "",
        oneof: int | None = None,
        secret: bool = False,
    ) -> None:
        added = owner.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            added.type_name = type_name
        if oneof is not None:
            added.oneof_index = oneof
        added.options.debug_redact = secret

    card = file.message_type.add(name="Card")
    field(card, "number", 1, secret=True)
    field(card, "holder", 2)
    order = file.message_type.add(name="Order")
    order.oneof_decl.add(name="pay")
    field(order, "note", 1)
    field(order, "card", 2, message, type_name=".acme.kinds.Card", oneof=0)
    field(order, "voucher", 3, oneof=0, secret=True)
    field(order, "saved", 4, message, repeated, ".acme.kinds.Order.SavedEntry")
    field(order, "history", 5, message, repeated, ".acme.kinds.Card")
    field(order, "extra", 6, message, type_name=".google.protobuf.Any")
    field(order, "headers", 7, message, repeated, ".acme.kinds.Order.HeadersEntry", secret=True)
    field(order, "pin", 8, secret=True)
    for entry_name, value_type in (("SavedEntry", ".acme.kinds.Card"), ("HeadersEntry", "")):
        entry = order.nested_type.add(name=entry_name)
        entry.options.map_entry = True
        field(entry, "key", 1)
        field(entry, "value", 2, message if value_type else string, type_name=value_type)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(any_file)
    pool.Add(file)
    return pool


def test_user_schema_fields_marked_debug_redact_are_withheld_at_any_depth() -> None:
    """On a descriptor built at run time, every debug_redact field is redacted: nested, oneof, map values,
    repeated, inside an Any, a marked map and scalar; the message or its JSON form, either field names."""
    pool = _user_schema()
    card_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("acme.kinds.Card"))
    order_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("acme.kinds.Order"))
    order = order_class(note="leave at door", pin="4242", headers={"x-auth": "hdr-secret"})
    order.card.CopyFrom(card_class(number="4111-card", holder="Ada"))
    order.saved["home"].CopyFrom(card_class(number="5500-saved", holder="Ada"))
    order.history.add(number="3400-history", holder="Bob")
    order.extra.Pack(card_class(number="6011-any", holder="Cy"))
    expected_card = {"number": REDACTED, "holder": "Ada"}
    expected = {
        "note": "leave at door",
        "card": expected_card,
        "saved": {"home": expected_card},
        "history": [{"number": REDACTED, "holder": "Bob"}],
        "extra": {"@type": "type.googleapis.com/acme.kinds.Card", "number": REDACTED, "holder": "Cy"},
        "headers": REDACTED,
        "pin": REDACTED,
    }
    assert redact_message(order) == expected
    as_json = MessageToDict(order, descriptor_pool=pool)  # JSON names; the Any resolved in the user's pool
    assert redact_message(json.dumps(as_json), order.DESCRIPTOR) == expected
    line = json.dumps(_line("order %s", order, order=order))
    for secret in ("4111-card", "5500-saved", "3400-history", "6011-any", "hdr-secret", "4242"):
        assert secret not in line
    voucher = order_class(voucher="FREE-100")
    assert redact_message(voucher) == {"voucher": REDACTED}


def test_what_cannot_be_read_against_its_schema_is_withheld() -> None:
    """An Any of a type the schema's pool does not know, JSON that does not parse, or a value not shaped as
    its message or map field's JSON form is withheld whole."""
    pool = _user_schema()
    descriptor = pool.FindMessageTypeByName("acme.kinds.Order")
    unknown = {"note": "n", "extra": {"@type": "type.googleapis.com/other.Secret", "value": "s3"}}
    assert redact_message(unknown, descriptor) == {
        "note": "n",
        "extra": {"@type": "type.googleapis.com/other.Secret", "value": REDACTED},
    }
    assert redact_message("{not json", descriptor) == {"@type": "acme.kinds.Order", "value": REDACTED}
    off_schema = {"card": "4111-card", "history": ["3400-history"], "saved": "5500-saved", "note": "n"}
    assert redact_message(off_schema, descriptor) == {
        "card": REDACTED,
        "history": [REDACTED],
        "saved": REDACTED,
        "note": "n",
    }
    with pytest.raises(TypeError):
        redact_message({"note": "n"})


def test_ordinary_text_and_fields_are_left_alone() -> None:
    """Prose with the words basic or bearer, counting fields such as page_token or prompt_tokens, and
    an ApiKey header's key id pass unchanged; containers keep their shape with their secrets redacted."""
    assert redact("basic scheduling for the bearer of a task") == "basic scheduling for the bearer of a task"
    assert redact(f"ApiKey {ADMIN}") == f"ApiKey tmk_admin_{REDACTED}"
    line = _line("page", page_token="p-1", prompt_tokens=12, labels={"team": "x", "token": "t"}, ids=["a", KEY])
    assert line["page_token"] == "p-1" and line["prompt_tokens"] == 12
    assert line["labels"] == {"team": "x", "token": REDACTED}
    assert line["ids"] == ["a", f"tmk_0a1b2c3d4e5f_{REDACTED}"]
