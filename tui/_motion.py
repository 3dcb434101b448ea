"""Pane transitions, cheap in a terminal: the pane the focus moves to lights its border for the
design tokens' `motion.pane`, a row that appears lights for `motion.fast`, then both settle.
Reduced motion (`--reduced-motion`, `TIDEMESH_REDUCED_MOTION=1`, always in `--accessible`)
lights nothing: the screen changes only when the mesh or the keys change it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from clients.design import value


def duration_s(name: str) -> float:
    """A motion token (`{"value": 200, "unit": "ms"}`) in seconds."""
    token = value(f"motion.{name}")
    return float(token["value"]) / (1000.0 if token["unit"] == "ms" else 1.0)


def reduced_motion(flag: bool | None, linear: bool, env: Mapping[str, str]) -> bool:
    """Whether to hold still: asked for, or in the linear (accessible) mode, or by the environment."""
    if linear or flag:
        return True
    return flag is None and env.get("TIDEMESH_REDUCED_MOTION", "") not in ("", "0")


class Motion:
    """Which things are lit now; `flash` lights one for a while (never, when not `enabled`)."""

    def __init__(self, enabled: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.pane_s = duration_s("pane")
        self.fast_s = duration_s("fast")
        self._clock = clock
        self._until: dict[str, float] = {}

    def flash(self, key: str, for_s: float) -> None:
        if self.enabled:
            self._until[key] = self._clock() + for_s

    def lit(self, key: str) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until <= self._clock():
            del self._until[key]
            return False
        return True

    def settles_in_s(self) -> float | None:
        """How long until the next lit thing settles (a redraw is due then); None: nothing lit."""
        now = self._clock()
        left = [until - now for until in self._until.values() if until > now]
        return min(left) if left else None
