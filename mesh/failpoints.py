"""Failpoints: named places where a test can have a process die (kill -9) at an exact moment.

A service started with ``--failpoint NAME=MARKER`` kills itself with SIGKILL the first time it
reaches `NAME`, after creating the file `MARKER` — so the process the supervisor restarts with
the same arguments finds the marker and runs on, and the test can tell the fault really fired.
Nothing is armed unless the flag is given; an unarmed failpoint costs one dict lookup.

Failpoints in the code:
    group-commit-mid-batch   half of an atomic batch is on the broker, its commit not sent
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

_ARMED: dict[str, Path] = {}


def arm(spec: str) -> None:
    """Arm ``NAME=MARKER``."""
    name, separator, marker = spec.partition("=")
    if not separator or not name or not marker:
        raise ValueError(f"--failpoint wants NAME=MARKER, got {spec!r}")
    _ARMED[name] = Path(marker)


def armed(name: str) -> bool:
    marker = _ARMED.get(name)
    return marker is not None and not marker.exists()


def reached(name: str) -> None:
    """Die here if `name` is armed and has not fired yet."""
    marker = _ARMED.get(name)
    if marker is None:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return  # fired in an earlier life of this service
    os.kill(os.getpid(), signal.SIGKILL)
