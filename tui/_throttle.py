"""Redraws coalesced and throttled: any number of requests within one frame make one draw."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DEFAULT_FPS = 10.0
MAX_FPS = 60.0
MIN_FPS = 1.0


def clamp_fps(fps: float) -> float:
    """Frames per second within 1..60 (a NaN means the default)."""
    if fps != fps:  # NaN
        return DEFAULT_FPS
    return min(MAX_FPS, max(MIN_FPS, fps))


class Throttle:
    """Calls `draw` at most once per 1/`fps` seconds; a request while one is due joins it."""

    def __init__(
        self,
        draw: Callable[[], None],
        fps: float = DEFAULT_FPS,
        loop: asyncio.AbstractEventLoop | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._draw = draw
        self.period_s = 1.0 / clamp_fps(fps)
        self._loop = loop
        self._clock = clock
        self._last = -float("inf")
        self._due: asyncio.TimerHandle | None = None
        self.draws = 0

    def request(self) -> None:
        if self._due is not None:
            return
        loop = self._loop or asyncio.get_running_loop()
        delay = max(0.0, self._last + self.period_s - self._clock())
        self._due = loop.call_later(delay, self._fire)

    def cancel(self) -> None:
        if self._due is not None:
            self._due.cancel()
            self._due = None

    def _fire(self) -> None:
        self._due = None
        self._last = self._clock()
        self.draws += 1
        self._draw()
