"""The CLI's colour conventions, theme detection and state rendering."""

from __future__ import annotations

import io

import pytest

from clients.cli._style import (
    Style,
    background_from_colorfgbg,
    background_from_osc11,
    resolve_theme,
    wants_colour,
)


@pytest.mark.parametrize(
    ("env", "isatty", "expected"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"NO_COLOR": "1"}, True, False),
        ({"NO_COLOR": ""}, True, True),  # set but empty: not a request
        ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, True, False),  # NO_COLOR wins
        ({"FORCE_COLOR": "1"}, False, True),
        ({"FORCE_COLOR": "0"}, False, False),
        ({"CLICOLOR_FORCE": "1"}, False, True),
        ({"CLICOLOR": "0"}, True, False),
        ({"CLICOLOR": "1"}, False, False),  # CLICOLOR only allows colour where there is a terminal
        ({"TERM": "dumb"}, True, False),
        ({"TERM": "dumb", "FORCE_COLOR": "1"}, True, True),
    ],
)
def test_colour_follows_the_terminal_conventions(env: dict[str, str], isatty: bool, expected: bool) -> None:
    assert wants_colour(env, isatty) is expected


def test_auto_theme_asks_the_terminal_then_colorfgbg_then_dark() -> None:
    def light() -> str | None:
        return "light"

    def silent() -> str | None:
        return None

    assert resolve_theme(None, {}, True, light) == "light"
    assert resolve_theme(None, {"COLORFGBG": "0;15"}, True, silent) == "light"
    assert resolve_theme(None, {"COLORFGBG": "15;0"}, False, light) == "dark"  # no terminal: not asked
    assert resolve_theme(None, {}, False, light) == "dark"
    assert resolve_theme(None, {"TIDEMESH_THEME": "high-contrast"}, True, light) == "high-contrast"
    assert resolve_theme("light", {"TIDEMESH_THEME": "dark"}, True, silent) == "light"  # the flag wins
    with pytest.raises(ValueError, match="theme must be"):
        resolve_theme("neon", {}, True, silent)


def test_a_terminals_osc11_answer_reads_as_light_or_dark() -> None:
    assert background_from_osc11(b"\x1b]11;rgb:ffff/ffff/ffff\x1b\\") == "light"
    assert background_from_osc11(b"\x1b]11;rgb:1e1e/1e1e/2e2e\x07") == "dark"
    assert background_from_osc11(b"\x1b]11;rgb:fd/f6/e3\x1b\\") == "light"  # two hex digits per channel
    assert background_from_osc11(b"") is None and background_from_colorfgbg("default") is None


def test_a_state_is_a_word_and_a_symbol_and_colour_only_adds() -> None:
    plain = Style("dark", colour=False)
    assert plain.state("healthy", "ok", 10) == "✔ healthy "
    assert plain.state("DOWN", "error") == "✖ DOWN"
    assert Style("dark", colour=False, unicode=False).state("DOWN", "error") == "x DOWN"
    painted = Style("dark", colour=True).state("DOWN", "error", 10)
    assert painted.startswith("\x1b[") and "✖ DOWN    " in painted  # padded before painting: columns hold
    assert "38;2;255;143;143" in painted  # the dark theme's error colour, from the tokens
    assert "38;2;163;22;27" in Style("light", colour=True).state("DOWN", "error")


def test_style_for_a_pipe_is_plain_unless_forced() -> None:
    pipe = io.StringIO()
    assert not Style.for_stream(pipe, "dark", env={}).colour
    assert Style.for_stream(pipe, "dark", env={"FORCE_COLOR": "1"}).colour
