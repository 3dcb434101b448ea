"""Where `tidemesh desktop` runs: Flet's window when its client is here or can be fetched, else
the browser, with a message that says why and how to get the client; and the tokens' themes as
Material colour schemes."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.design import THEMES, theme
from desktop._launch import GET_THE_CLIENT, NoDesktop, desktop_refusal, fallback_note
from desktop._theme import THEME_SLOTS, TONES, scheme

DISPLAY = {"DISPLAY": ":0"}


def _unreachable() -> object:
    raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")


def test_a_cached_or_fetched_client_opens_the_window() -> None:
    """With a display and a client Flet finds (cache or download), there is no refusal."""
    assert desktop_refusal(DISPLAY, lambda: Path("/cache"), system="Linux") is None


def test_offline_without_a_client_the_app_falls_back_and_says_how_to_get_one() -> None:
    """A failed download is a refusal; the note names the reason, the fallback and FLET_VIEW_PATH."""
    refusal = desktop_refusal(DISPLAY, _unreachable, system="Linux")
    assert refusal is not None and "could not be fetched" in refusal.reason and "name resolution" in refusal.reason
    note = fallback_note(refusal)
    assert "serving the app to a browser instead" in note and GET_THE_CLIENT in note and "FLET_VIEW_PATH" in note


def test_a_headless_linux_never_tries_the_download() -> None:
    """No $DISPLAY (Flet's own test for a headless Linux): refused before any fetch; other systems need none."""
    fetched: list[bool] = []
    refusal = desktop_refusal({}, lambda: fetched.append(True), system="Linux")
    assert refusal == NoDesktop("no display ($DISPLAY is not set)") and not fetched
    assert desktop_refusal({"WAYLAND_DISPLAY": "wayland-0"}, lambda: None, system="Linux") is not None
    assert desktop_refusal({}, lambda: None, system="Darwin") is None


def test_flet_view_path_is_used_when_it_holds_the_client(tmp_path: Path) -> None:
    """FLET_VIEW_PATH with a `flet` executable opens the window without a fetch; without one it is refused."""
    env = {**DISPLAY, "FLET_VIEW_PATH": str(tmp_path)}
    refusal = desktop_refusal(env, _unreachable, system="Linux")
    assert refusal is not None and "holds no flet executable" in refusal.reason
    (tmp_path / "flet").write_text("#!/bin/sh\n")
    assert desktop_refusal(env, _unreachable, system="Linux") is None


@pytest.mark.parametrize("name", THEMES)
def test_each_theme_is_a_material_scheme_of_the_tokens_colours(name: str) -> None:
    """The scheme's surface, text, primary and error are the theme's bg, fg, accent and error tokens."""
    roles, chosen = theme(name), scheme(name)
    assert chosen.colors["surface"] == roles["bg"] and chosen.colors["on_surface"] == roles["fg"]
    assert chosen.colors["primary"] == roles["accent"] and chosen.colors["error"] == roles["error"]
    assert chosen.dark == (name != "light")
    for tone, material in TONES.items():  # every state tone lands on a role the scheme sets
        key = {"onsurfacevariant": "on_surface_variant"}.get(material, material)
        assert chosen.colors[key] == roles[tone]


def test_every_cli_theme_word_has_both_slots() -> None:
    """auto pairs light with dark; light, dark and high-contrast pin both of Flet's slots."""
    assert THEME_SLOTS["auto"] == ("light", "dark")
    assert all(set(slots) <= set(THEMES) for slots in THEME_SLOTS.values())
