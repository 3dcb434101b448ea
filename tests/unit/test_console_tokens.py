"""The web console's CSS custom properties are the design tokens: the checked-in tokens.css is
what clients/design writes, every theme sets every role, and the built stylesheet carries them."""

from __future__ import annotations

import re
from pathlib import Path

from clients.design import ROLES, THEMES, theme
from clients.design._css import CONSOLE_CSS, css

BUILT = Path(__file__).resolve().parents[2] / "clients" / "web" / "dist" / "console" / "assets"


def test_the_checked_in_stylesheet_is_the_tokens() -> None:
    """tokens.css matches tokens.json (after a token change: python -m clients.design css, then make web)."""
    assert CONSOLE_CSS.read_text(encoding="utf-8") == css(), "run `python -m clients.design css` and `make web`"


def test_every_theme_block_sets_every_role() -> None:
    """Light by default, dark and high contrast by media query and by data-theme, all roles each time."""
    text = css()
    for name in THEMES:
        block = text.split(f':root[data-theme="{name}"]', 1)[1].split("}", 1)[0]
        assert {role: theme(name)[role] for role in ROLES} == dict(re.findall(r"--tm-([\w-]+): (#[0-9a-f]{6});", block))
    assert "@media (prefers-color-scheme: dark)" in text and "@media (prefers-contrast: more)" in text
    assert css() == text  # deterministic


def test_the_built_stylesheet_carries_the_tokens_and_reduced_motion() -> None:
    """The bundled CSS (dist/console) holds the theme colours and turns animation off under reduced motion."""
    (built,) = BUILT.glob("console-*.css")
    bundled = built.read_text(encoding="utf-8")
    for name in THEMES:
        assert theme(name)["focus"] in bundled
    assert re.search(r"@media ?\(prefers-reduced-motion: ?reduce\) ?\{[^}]*animation: ?none", bundled), bundled[-400:]
