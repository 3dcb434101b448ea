"""`tidemesh dash`: the terminal dashboard (urwid) over the mesh's public API.

`DashModel` is what it knows (pure state, updated from the status stream and task events),
`tui._views` turns it into lines, `tui._panes` and `tui._screen` draw them, and `run_dashboard`
feeds it from a `clients.sdk.Client` on a terminal.
"""

from tui._app import run_dashboard
from tui._model import Alert, DashModel
from tui._motion import Motion, reduced_motion
from tui._screen import PANE_NAMES, Screen, View
from tui._throttle import Throttle, clamp_fps

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
