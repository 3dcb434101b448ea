"""The one JSON reader of the gateway's REST bodies and WebSocket frames, and its limits.

`json.loads` recurses once per nesting level and takes any number of keys: a body nested 10^5
deep raised RecursionError (HTTP 500, a dropped WebSocket). Here the size is bounded by the
transport (aiohttp's `client_max_size` and `max_msg_size`, both `MAX_DOCUMENT_BYTES`), and depth
and element count by a scan of the text without recursion before it is decoded.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mesh.errors import InvalidArgument

MAX_DOCUMENT_BYTES = 1 << 20  # a REST body or a WebSocket frame; payloads are limited to 64 KiB further in
MAX_DEPTH = 32  # objects and arrays inside one another
MAX_ELEMENTS = 10_000  # keys and array items in one document, all levels together

# A JSON string (escapes included) matched without backtracking; what is left holds the structure.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def parse_object(data: str | bytes, what: str) -> dict[str, Any]:
    """The JSON object in `data`; anything else, or one over the limits, is InvalidArgument(`what`)."""
    if isinstance(data, bytes):
        if len(data) > MAX_DOCUMENT_BYTES:
            raise InvalidArgument(what, f"is {len(data)} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(what, f"not UTF-8 text: byte {exc.start}") from exc
    else:
        text = data
        if len(text) > MAX_DOCUMENT_BYTES:
            raise InvalidArgument(what, f"is over the {MAX_DOCUMENT_BYTES}-byte limit")
    _check_shape(text, what)
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(what, f"not JSON: {exc.msg} at position {exc.pos}") from exc
    except _DuplicateKey as exc:
        raise InvalidArgument(what, f"names {exc.key!r} twice") from exc
    except ValueError as exc:  # e.g. an integer of more than 4300 digits, NaN, Infinity
        raise InvalidArgument(what, f"not JSON this gateway accepts: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidArgument(what, "must be a JSON object")
    return value


def _check_shape(text: str, what: str) -> None:
    """Depth and element count from the text outside strings (no recursion, linear time)."""
    structure = _STRING.sub('""', text)
    depth = 0
    for bracket in _BRACKETS.finditer(structure):
        if bracket.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidArgument(what, f"nests objects and arrays deeper than {MAX_DEPTH} levels (the limit)")
        else:
            depth -= 1  # a stray closer makes the text invalid JSON, which json.loads reports
    # Every element but a container's first follows a comma: commas + containers bound keys + items.
    elements = structure.count(",") + structure.count("[") + structure.count("{")
    if elements > MAX_ELEMENTS:
        raise InvalidArgument(what, f"holds more than {MAX_ELEMENTS} keys and items (the limit)")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object from its pairs; a key given twice is refused (which value counts would be a guess)."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def reject_unknown(value: dict[str, Any], known: frozenset[str], where: str = "") -> None:
    """InvalidArgument naming the first key of `value` outside `known` (`where` prefixes the field)."""
    for key in value:
        if key not in known:
            raise InvalidArgument(f"{where}{key}", f"unknown field (known: {', '.join(sorted(known))})")
