"""How the CLI colours what it prints: the theme's palette from the design tokens
(`clients.design`), the colour conventions of terminals, and states that never rest on colour.

Colour is on for a terminal and off otherwise, with the conventions in this order: ``NO_COLOR``
(set and not empty) turns it off whatever else says; ``FORCE_COLOR`` / ``CLICOLOR_FORCE`` (set,
not empty, not ``0``) turn it on even into a pipe; ``CLICOLOR=0`` and ``TERM=dumb`` turn it off.

The theme is ``--theme`` (or ``TIDEMESH_THEME``): ``light``, ``dark``, ``high-contrast`` or
``auto`` — the terminal's background asked with OSC 11 (a terminal only), then ``COLORFGBG``,
else dark. A state is always its word and a symbol (``✔ healthy``, ``✖ DOWN``); colour only adds
to them. Rendering is rich's.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import select
import sys
from collections.abc import Callable, Mapping
from typing import TextIO

from rich.console import Console
from rich.style import Style as RichStyle
from rich.text import Text

from clients.design import THEMES, luminance, theme

THEME_CHOICES = ("auto", *THEMES)
# A symbol per role, so a state reads without colour; ASCII where the output cannot take UTF-8.
SYMBOLS = {"ok": "✔", "warn": "▲", "error": "✖", "muted": "·", "accent": "▸"}
ASCII_SYMBOLS = {"ok": "+", "warn": "!", "error": "x", "muted": "-", "accent": ">"}
_OSC11 = re.compile(rb"\]11;rgb:([0-9a-fA-F]{1,4})/([0-9a-fA-F]{1,4})/([0-9a-fA-F]{1,4})")


def _set(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "") not in ("", "0")


def wants_colour(env: Mapping[str, str], isatty: bool) -> bool:
    """Whether to colour output, by the conventions in the module's order."""
    if env.get("NO_COLOR", ""):
        return False
    if _set(env, "FORCE_COLOR") or _set(env, "CLICOLOR_FORCE"):
        return True
    if env.get("CLICOLOR") == "0" or env.get("TERM") == "dumb":
        return False
    return isatty


def background_from_colorfgbg(value: str) -> str | None:
    """``COLORFGBG`` ("fg;bg", rxvt's convention): colours 7 and 15 are light backgrounds."""
    parts = value.split(";")
    if len(parts) < 2 or not parts[-1].isdigit():
        return None
    return "light" if int(parts[-1]) in (7, 15) else "dark"


def background_from_osc11(reply: bytes) -> str | None:
    """A terminal's answer to OSC 11 (``ESC ] 11 ; rgb:RRRR/GGGG/BBBB``) as light or dark."""
    found = _OSC11.search(reply)
    if found is None:
        return None
    channels = [int(c, 16) / (16 ** len(c) - 1) for c in found.groups()]
    hex_colour = "#" + "".join(f"{round(c * 255):02x}" for c in channels)
    return "light" if luminance(hex_colour) > 0.4 else "dark"


def query_background(timeout_s: float = 0.1) -> str | None:
    """Ask the controlling terminal for its background (OSC 11); None when there is no terminal
    or it does not answer within `timeout_s`."""
    try:
        import termios
        import tty

        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except (ImportError, OSError):
        return None
    try:
        saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd, termios.TCSANOW)
            os.write(fd, b"\x1b]11;?\x1b\\")
            reply = b""
            while select.select([fd], [], [], timeout_s)[0]:
                reply += os.read(fd, 64)
                if reply.endswith((b"\x1b\\", b"\x07")):
                    break
        finally:
            termios.tcsetattr(fd, termios.TCSANOW, saved)
        return background_from_osc11(reply)
    except (OSError, termios.error):
        return None
    finally:
        os.close(fd)


def resolve_theme(
    given: str | None,
    env: Mapping[str, str],
    isatty: bool,
    query: Callable[[], str | None] = query_background,
) -> str:
    """The theme to use: `given` (``--theme``), else ``TIDEMESH_THEME``, else auto-detected."""
    name = given or env.get("TIDEMESH_THEME", "") or "auto"
    if name not in THEME_CHOICES:
        raise ValueError(f"theme must be one of {', '.join(THEME_CHOICES)}, not {name!r}")
    if name != "auto":
        return name
    return (query() if isatty else None) or background_from_colorfgbg(env.get("COLORFGBG", "")) or "dark"


class Style:
    """Paints text in a theme's roles — or leaves it plain when colour is off."""

    def __init__(self, theme_name: str, colour: bool, unicode: bool = True, truecolor: bool = True) -> None:
        self.theme = theme_name
        self.colour = colour
        self.palette = theme(theme_name)
        self._symbols = SYMBOLS if unicode else ASCII_SYMBOLS
        self._console = Console(
            file=io.StringIO(),
            force_terminal=colour,
            no_color=not colour,
            color_system=("truecolor" if truecolor else "256") if colour else None,
            highlight=False,
            width=10_000,
        )

    @classmethod
    def for_stream(
        cls, stream: TextIO = sys.stdout, given: str | None = None, env: Mapping[str, str] | None = None
    ) -> Style:
        env = os.environ if env is None else env
        isatty = False
        with contextlib.suppress(AttributeError, ValueError):
            isatty = stream.isatty()
        encoding = (getattr(stream, "encoding", "") or "").lower().replace("-", "")
        return cls(
            resolve_theme(given, env, isatty),
            wants_colour(env, isatty),
            unicode=encoding.startswith("utf"),
            truecolor=env.get("COLORTERM", "") in ("truecolor", "24bit"),
        )

    def paint(self, text: str, role: str, bold: bool = False) -> str:
        if not self.colour:
            return text
        with self._console.capture() as captured:
            self._console.print(Text(text, style=RichStyle(color=self.palette[role], bold=bold)), end="")
        return captured.get()

    def state(self, word: str, role: str, width: int = 0) -> str:
        """`word` with its role's symbol, padded to `width` before any colour (tables stay aligned)."""
        return self.paint(f"{self._symbols[role]} {word}".ljust(width), role, bold=role == "error")
