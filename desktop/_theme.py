"""The app's colours from the design tokens (clients/design): a Material colour scheme per theme,
as plain values, so the mapping is tested without Flet. `_app` turns them into `ft.Theme`."""

from __future__ import annotations

from dataclasses import dataclass

from clients.design import theme, value

# The CLI's --theme words → the token theme for Flet's light and dark slots ("auto" follows the
# system: light tokens in light mode, dark tokens in dark mode).
THEME_SLOTS = {
    "auto": ("light", "dark"),
    "light": ("light", "light"),
    "dark": ("dark", "dark"),
    "high-contrast": ("high-contrast", "high-contrast"),
}


# A state's token role → the Material colour role that carries it in `scheme`.
TONES = {"ok": "tertiary", "warn": "secondary", "error": "error", "accent": "primary", "muted": "onsurfacevariant"}


@dataclass(frozen=True)
class Scheme:
    """`ft.ColorScheme` keyword arguments (hex colours) and whether the theme is dark."""

    name: str
    dark: bool
    colors: dict[str, str]


def scheme(name: str) -> Scheme:
    """Material roles from the token roles: accent as primary, warn as secondary, ok as tertiary,
    error as error, surfaces from bg/surface, text from fg/muted (`TONES` maps a state's token
    role back to its Material name, so a view colours "ok" with the theme's tertiary)."""
    roles = theme(name)
    dark = name != "light"
    colors = {
        "primary": roles["accent"],
        "on_primary": roles["bg"],
        "secondary": roles["warn"],
        "on_secondary": roles["bg"],
        "surface": roles["bg"],
        "on_surface": roles["fg"],
        "on_surface_variant": roles["muted"],
        "surface_container": roles["surface"],
        "surface_container_low": roles["surface"],
        "surface_container_high": roles["surface"],
        "surface_container_highest": roles["surface"],
        "error": roles["error"],
        "on_error": roles["bg"],
        "outline": roles["muted"],
        "outline_variant": roles["muted"],
        "tertiary": roles["ok"],
        "on_tertiary": roles["bg"],
    }
    return Scheme(name, dark, colors)


def role_colour(name: str, role: str) -> str:
    """A token role's colour in a theme (ok, warn, error, muted, accent, fg, bg, surface, focus)."""
    return theme(name)[role]


def spacing(size: str) -> int:
    """A spacing token (xs, sm, md, lg) in logical pixels."""
    return int(value(f"spacing.{size}")["value"])


def body_size() -> int:
    return int(value("typography.body-size")["value"])


def fonts(family: str = "sans") -> list[str]:
    return list(value(f"typography.{family}"))
