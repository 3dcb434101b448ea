"""The design tokens as CSS custom properties, for the web console (`clients/web/src/console/tokens.css`).

Every theme is a block of ``--tm-<role>`` colours: light is the default, dark follows
``prefers-color-scheme: dark`` and high contrast ``prefers-contrast: more``, unless the page
chose one with ``data-theme`` on ``<html>`` (the console's theme switch). Spacing, type and motion
are theme-independent. The file is generated, checked in, and held to this module by a unit test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clients.design import ROLES, THEMES, theme, token_type, tokens, value

CONSOLE_CSS = Path(__file__).resolve().parents[1] / "web" / "src" / "console" / "tokens.css"
_HEADER = "/* Generated from clients/design/tokens.json by `python -m clients.design css`: do not edit. */\n"


def _scalar(path: str) -> str:
    raw: Any = value(path)
    kind = token_type(path)
    if kind in ("dimension", "duration"):
        return f"{raw['value']}{raw['unit']}"
    if kind == "fontFamily":
        names = raw if isinstance(raw, list) else [raw]
        generic = {"serif", "sans-serif", "monospace", "system-ui", "cursive", "fantasy"}
        return ", ".join(name if name in generic else f'"{name}"' for name in names)
    return str(raw)


def _group(name: str) -> list[str]:
    return [key for key in tokens()[name] if not key.startswith("$")]


def _colours(name: str, indent: str = "  ") -> str:
    colours = theme(name)
    scheme = "light" if name == "light" else "dark"
    lines = [f"{indent}color-scheme: {scheme};"]
    lines += [f"{indent}--tm-{role}: {colours[role]};" for role in ROLES]
    return "\n".join(lines)


def css() -> str:
    """The whole stylesheet (deterministic: the same tokens give the same bytes)."""
    constants = [f"  --tm-space-{key}: {_scalar(f'spacing.{key}')};" for key in _group("spacing")]
    constants += [f"  --tm-font-{key}: {_scalar(f'typography.{key}')};" for key in _group("typography")]
    constants += [f"  --tm-motion-{key}: {_scalar(f'motion.{key}')};" for key in _group("motion")]
    blocks = [_HEADER, ":root {\n" + "\n".join(constants) + "\n}\n"]
    blocks.append(':root,\n:root[data-theme="light"] {\n' + _colours("light") + "\n}\n")
    for name, query in (("dark", "prefers-color-scheme: dark"), ("high-contrast", "prefers-contrast: more")):
        blocks.append(f"@media ({query}) {{\n  :root:not([data-theme]) {{\n{_colours(name, '    ')}\n  }}\n}}\n")
    for name in THEMES:
        if name != "light":
            blocks.append(f':root[data-theme="{name}"] {{\n{_colours(name)}\n}}\n')
    return "\n".join(blocks)


def write_css(path: Path = CONSOLE_CSS) -> bool:
    """Write the stylesheet to `path`; True when its content changed."""
    text = css()
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True
