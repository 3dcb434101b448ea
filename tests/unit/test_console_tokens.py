"""The web console's CSS custom properties are the design tokens: the checked-in tokens.css is
what clients/design writes, and every theme sets every role."""

from __future__ import annotations

import re

from clients.design import ROLES, THEMES, theme
from clients.design._css import CONSOLE_CSS, css


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
