"""Failpoints: named places where a test can have a process die (kill -9) at an exact moment.

A service started with ``--failpoint NAME=MARKER`` kills itself with SIGKILL the first time it
reaches `NAME`, after creating the file `MARKER` — so the process the supervisor restarts with
the same arguments finds the marker and runs on, and the test can tell the fault really fired.
Nothing is armed unless the flag is given; an unarmed failpoint costs one dict lookup.

`grow` and `spin` do not kill: armed, `grow` makes its process hold a lot of memory at once (and
wait there), for the supervisor's memory cap to act on, and `spin` keeps a thread of it busy on the
CPU for a while, for a CPU cap to hold.

Failpoints in the code:
    group-commit-mid-batch   half of an atomic batch is on the broker, its commit not sent
    worker-step-memory       a worker about to run a step grows by 512 MiB and waits (`grow`)
    worker-step-cpu          a worker about to run a step keeps a thread busy for 3 s (`spin`)
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
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


_HELD: list[bytes] = []


def _fire(marker: Path) -> bool:
    """Create the marker; False if an earlier life of this service already did."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


async def grow(name: str, mib: int = 512, wait_s: float = 30.0) -> None:
    """If `name` is armed and has not fired: hold `mib` MiB of resident memory (pages written,
    so they count) and wait up to `wait_s` — a supervisor enforcing a memory cap kills the process
    meanwhile; without one the memory is let go and the caller goes on."""
    marker = _ARMED.get(name)
    if marker is None or not _fire(marker):
        return
    _HELD.append(b"\x01" * (mib << 20))
    await asyncio.sleep(wait_s)
    _HELD.clear()


async def spin(name: str, seconds: float = 3.0) -> None:
    """If `name` is armed and has not fired: keep one thread busy on the CPU for `seconds` of wall
    time (the event loop runs on meanwhile), then go on."""
    marker = _ARMED.get(name)
    if marker is None or not _fire(marker):
        return

    def busy() -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            pass

    await asyncio.to_thread(busy)


def reached(name: str) -> None:
    """Die here if `name` is armed and has not fired yet."""
    marker = _ARMED.get(name)
    if marker is None or not _fire(marker):
        return  # unarmed, or fired in an earlier life of this service
    os.kill(os.getpid(), signal.SIGKILL)
