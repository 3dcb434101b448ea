"""tidemesh's design tokens (`tokens.json`, the W3C Design Tokens Community Group format): one
source of colours, spacing, typography and motion for every surface — the CLI's palette here,
the urwid dashboard's and the web console's next.

A token is an object with ``$value`` (and a ``$type``, inherited from its nearest group); a value
``"{group.name}"`` is an alias of another token. `theme(name)` gives a theme's roles (``bg``,
``fg``, ``muted``, ``accent``, ``ok``, ``warn``, ``error``, ``focus``, ``surface``) as hex colours,
aliases resolved. `TEXT_PAIRS` and `UI_PAIRS` are the foreground/background pairs the surfaces
draw; `contrast(a, b)` is the WCAG 2 contrast ratio the tests hold them to (text 4.5:1, focus
and UI marks 3:1, and 7:1 for everything in the high-contrast theme).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

TOKENS = Path(__file__).with_name("tokens.json")
THEMES = ("dark", "light", "high-contrast")
ROLES = ("bg", "surface", "fg", "muted", "accent", "ok", "warn", "error", "focus")
# What the surfaces draw: text roles on either background, and the focus mark.
TEXT_PAIRS = tuple((fg, bg) for bg in ("bg", "surface") for fg in ("fg", "muted", "accent", "ok", "warn", "error"))
UI_PAIRS = (("focus", "bg"), ("focus", "surface"))
MINIMUM = {"text": 4.5, "ui": 3.0, "high-contrast": 7.0}


@cache
def tokens() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TOKENS.read_text(encoding="utf-8"))
    return data


def _node(path: str) -> dict[str, Any]:
    node: Any = tokens()
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"no design token {path!r}")
        node = node[part]
    if not isinstance(node, dict) or "$value" not in node:
        raise KeyError(f"{path!r} is a group, not a design token")
    return node


def value(path: str, _seen: tuple[str, ...] = ()) -> Any:
    """A token's value, its aliases followed (a cycle is an error naming it)."""
    if path in _seen:
        raise ValueError(f"design token alias cycle: {' -> '.join((*_seen, path))}")
    raw = _node(path)["$value"]
    if isinstance(raw, str) and raw.startswith("{") and raw.endswith("}"):
        return value(raw[1:-1], (*_seen, path))
    return raw


def token_type(path: str) -> str:
    """A token's ``$type``: its own, else its nearest group's."""
    node: Any = tokens()
    found = node.get("$type", "")
    for part in path.split("."):
        node = node[part]
        found = node.get("$type", found)
    return str(found)


@cache
def theme(name: str) -> dict[str, str]:
    """A theme's colour roles as ``#rrggbb``."""
    if name not in THEMES:
        raise ValueError(f"theme must be one of {', '.join(THEMES)}, not {name!r}")
    return {role: str(value(f"theme.{name}.{role}")).lower() for role in ROLES}


def rgb(hex_colour: str) -> tuple[int, int, int]:
    digits = hex_colour.lstrip("#")
    if len(digits) != 6:
        raise ValueError(f"not a #rrggbb colour: {hex_colour!r}")
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def luminance(hex_colour: str) -> float:
    """WCAG 2 relative luminance."""

    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb(hex_colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio, 1..21."""
    a, b = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (a + 0.05) / (b + 0.05)
