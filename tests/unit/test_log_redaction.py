"""Every log line passes one redaction point: no API key secret, JWT or bearer credential is written,
secret-named fields are withheld, and CR/LF in logged input cannot start a line of its own."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from mesh.telemetry._logging import REDACTED, JsonFormatter, redact

KEY = "tmk_0a1b2c3d4e5f_Zq9-x_Yw8vU7tS6rQ5pO4nM3lK2j"
ADMIN = "tmk_admin_b7Hk-2_mQ9zLr4TxW8cVn1Ys5Ue3Ga6Pf0Dh"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnQiOiJhY21lIn0.c2lnbmF0dXJlLWJ5dGVz"


def _line(message: str, *args: object, exc: bool = False, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    if exc:
        try:
            raise ValueError(f"refused {KEY} and {JWT}")
        except ValueError:
            record.exc_info = sys.exc_info()
    text = JsonFormatter().format(record)
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


def test_crlf_in_logged_input_stays_inside_its_line() -> None:
    """A value with CR/LF (a forged log line) is escaped inside the JSON string, never a line of its own."""
    forged = 'x\r\n{"level": "info", "msg": "admin logged in"}'
    line = _line("task %s", forged, task_label=forged)
    assert line["msg"] == f"task {forged}" and line["task_label"] == forged


def test_ordinary_text_and_fields_are_left_alone() -> None:
    """Prose with the words basic or bearer, counting fields such as page_token or prompt_tokens, and
    an ApiKey header's key id pass unchanged; containers keep their shape with their secrets redacted."""
    assert redact("basic scheduling for the bearer of a task") == "basic scheduling for the bearer of a task"
    assert redact(f"ApiKey {ADMIN}") == f"ApiKey tmk_admin_{REDACTED}"
    line = _line("page", page_token="p-1", prompt_tokens=12, labels={"team": "x", "token": "t"}, ids=["a", KEY])
    assert line["page_token"] == "p-1" and line["prompt_tokens"] == 12
    assert line["labels"] == {"team": "x", "token": REDACTED}
    assert line["ids"] == ["a", f"tmk_0a1b2c3d4e5f_{REDACTED}"]
