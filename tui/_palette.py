"""The dashboard's urwid palette, from the design tokens (`clients.design`): one entry per role the
views draw, in a theme's colours, or monochrome (NO_COLOR) where focus is reverse video alone."""

from __future__ import annotations

from clients.design import theme

# The roles a line's markup names (see `tui._views`), plus the dashboard's own.
TEXT_ROLES = ("muted", "accent", "ok", "warn", "error")
# Every foreground/background pair the dashboard draws: text on the body, the header bar on the
# surface, and the focused row in reverse (the background colour on the focus colour).
TEXT_PAIRS = (
    ("fg", "bg"),
    *((role, "bg") for role in TEXT_ROLES),
    ("fg", "surface"),
    ("muted", "surface"),
    ("bg", "focus"),
)
# The focused pane's border and title.
UI_PAIRS = (("focus", "bg"),)

PaletteEntry = tuple[str, str, str, str, str, str]


def palette(theme_name: str | None) -> list[PaletteEntry]:
    """urwid palette entries (name, 16-colour fg/bg, mono, high-colour fg/bg); `theme_name` None
    is monochrome: nothing but bold and reverse video."""
    if theme_name is None:
        mono = {"focus": "standout", "header": "standout", "heading": "bold", "error": "bold", "warn": "bold"}
        mono |= {"changed": "bold", "flash": "bold"}
        names = ("body", *TEXT_ROLES, "header", "heading", "focus", "border", "changed", "flash")
        return [(name, "default", "default", mono.get(name, ""), "default", "default") for name in names]
    colours = theme(theme_name)
    bg, surface = colours["bg"], colours["surface"]
    entries: list[PaletteEntry] = [
        ("body", "default", "default", "", colours["fg"], bg),
        *((role, "default", "default", "", colours[role], bg) for role in TEXT_ROLES),
        ("header", "default", "default", "standout", colours["fg"], surface),
        ("heading", "default", "default", "bold", f"{colours['fg']},bold", bg),
        ("focus", "default", "default", "standout", bg, colours["focus"]),
        ("border", "default", "default", "bold", colours["focus"], bg),
        # Motion (`tui._motion`): a row that just appeared, on the surface colour; the border of
        # the pane the focus just reached, in the accent colour.
        ("changed", "default", "default", "bold", colours["fg"], surface),
        ("flash", "default", "default", "bold", colours["accent"], bg),
    ]
    return entries
