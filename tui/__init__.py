"""`tidemesh dash`: the terminal dashboard (urwid) over the mesh's public API.

`DashModel` is what it knows (pure state, updated from the status stream and task events),
`tui._views` turns it into lines, `tui._panes` and `tui._screen` draw them, and `run_dashboard`
feeds it from a `clients.sdk.Client` on a terminal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tui._model import PANE_NAMES, Alert, DashModel
from tui._motion import Motion, reduced_motion
from tui._throttle import Throttle, clamp_fps

if TYPE_CHECKING:
    from tui._app import run_dashboard
    from tui._screen import Screen, View

# What draws needs urwid: imported on first use, so the CLI's other commands start without it.
_DRAWING = {"run_dashboard": "tui._app", "Screen": "tui._screen", "View": "tui._screen"}


def __getattr__(name: str) -> Any:
    if name in _DRAWING:
        return getattr(importlib.import_module(_DRAWING[name]), name)
    raise AttributeError(f"module 'tui' has no attribute {name!r}")


__all__ = [
    "PANE_NAMES",
    "Alert",
    "DashModel",
    "Motion",
    "Screen",
    "Throttle",
    "View",
    "clamp_fps",
    "reduced_motion",
    "run_dashboard",
]
