"""Where the app runs: Flet's desktop client when it is here (or can be fetched), else a web
server for a browser. Flet 1.0's desktop wheel carries no client: at first run it downloads the
client archive from Flet's releases into ~/.flet/client/, or uses one named by $FLET_VIEW_PATH
(a folder holding the `flet` executable). Offline, with neither, the app serves itself to a browser
instead and says so (`fallback_note`)."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

GET_THE_CLIENT = (
    "To get Flet's desktop client, run `tidemesh desktop` once online (Flet downloads it into ~/.flet/client/), "
    "or set FLET_VIEW_PATH to a folder holding an unpacked client (its `flet` executable)"
)


@dataclass(frozen=True)
class NoDesktop:
    """Why the desktop client cannot run here."""

    reason: str


def display_missing(env: Mapping[str, str], system: str | None = None) -> NoDesktop | None:
    """On Linux Flet opens its window only with $DISPLAY (X11 or XWayland): without it Flet itself
    treats the machine as a headless server."""
    if (system or platform.system()) == "Linux" and not env.get("DISPLAY"):
        return NoDesktop("no display ($DISPLAY is not set)")
    return None


def view_path_client(env: Mapping[str, str]) -> Path | None:
    """The client $FLET_VIEW_PATH names, when its executable is there."""
    folder = env.get("FLET_VIEW_PATH", "")
    if not folder:
        return None
    for name in ("flet", "flet.exe"):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def desktop_refusal(
    env: Mapping[str, str], fetch_client: Callable[[], object], system: str | None = None
) -> NoDesktop | None:
    """None when the desktop client can start; else why not. `fetch_client` is Flet's
    `ensure_client_cached` (cached, bundled or downloaded); any failure of it is a refusal."""
    missing = display_missing(env, system)
    if missing is not None:
        return missing
    if env.get("FLET_VIEW_PATH"):
        if view_path_client(env) is not None:
            return None
        return NoDesktop(f"FLET_VIEW_PATH={env['FLET_VIEW_PATH']} holds no flet executable")
    try:
        fetch_client()
    except Exception as exc:  # urllib's URLError, an HTTP error, a bad archive: all say "no client"
        return NoDesktop(f"Flet's desktop client could not be fetched ({type(exc).__name__}: {exc})")
    return None


def fallback_note(refusal: NoDesktop) -> str:
    return (
        f"tidemesh desktop: the desktop window cannot open: {refusal.reason}; "
        f"serving the app to a browser instead. {GET_THE_CLIENT}."
    )


def fetch_flet_client() -> object:
    """Flet's own lookup: the cached client, else a download (the call that fails offline)."""
    import flet_desktop

    return flet_desktop.ensure_client_cached()


def environment() -> Mapping[str, str]:
    return os.environ
