"""The design tokens: well-formed (W3C Design Tokens format), aliases resolved, and every
foreground/background pair each theme draws meeting its WCAG contrast ratio."""

from __future__ import annotations

import re

import pytest

from clients.design import MINIMUM, ROLES, TEXT_PAIRS, THEMES, UI_PAIRS, contrast, theme, token_type, tokens, value


@pytest.mark.parametrize("name", THEMES)
def test_every_pair_a_theme_draws_meets_its_contrast_ratio(name: str) -> None:
    """Text 4.5:1, focus and UI marks 3:1 — and 7:1 for all of them in high contrast."""
    colours = theme(name)
    high = name == "high-contrast"
    failing = [
        f"{fg} on {bg}: {contrast(colours[fg], colours[bg]):.2f}"
        for pairs, kind in ((TEXT_PAIRS, "text"), (UI_PAIRS, "ui"))
        for fg, bg in pairs
        if contrast(colours[fg], colours[bg]) < (MINIMUM["high-contrast"] if high else MINIMUM[kind])
    ]
    assert not failing, f"{name}: {failing}"


def test_the_contrast_ratio_is_wcags() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the classic just-failing grey
    assert contrast("#ffffff", "#ffffff") == pytest.approx(1.0)


def test_tokens_are_well_formed_and_themes_alias_the_palette() -> None:
    """Every theme has every role, as an alias of the base palette resolving to #rrggbb; types
    are inherited from groups; a broken alias or a group read as a token is an error."""
    for name in THEMES:
        raw = tokens()["theme"][name]
        assert set(raw) == set(ROLES)
        for role in ROLES:
            assert re.fullmatch(r"\{color\.base\.[\w.-]+\}", raw[role]["$value"]), (name, role)
            assert re.fullmatch(r"#[0-9a-f]{6}", theme(name)[role])
            assert token_type(f"theme.{name}.{role}") == "color"
    assert token_type("motion.fast") == "duration" and value("motion.fast") == {"value": 120, "unit": "ms"}
    assert token_type("typography.mono") == "fontFamily"
    with pytest.raises(KeyError, match="no design token"):
        value("color.base.nope")
    with pytest.raises(KeyError, match="is a group"):
        value("color.base")
    with pytest.raises(ValueError, match="theme must be"):
        theme("sepia")
