"""Garbage-collector pacing for a long-running service that holds many connections.

CPython 3.11's collector is generational and stops the event loop for a whole pass. A gateway
holding 10 000 idle streams keeps ~3 million objects alive, and a full pass over them took up to
0.9 s (traced in `make bench`'s edge suite); with the default thresholds, passes came one after
another while streams opened. What this module does:

- At start the objects alive after start-up (modules, descriptors, the app) are frozen out of
  every pass (`gc.freeze`), and a young collection waits for 20 000 new objects, not 700.
- `GcPacer`, run by every ServiceHost, then ages what survives into the frozen set itself: every
  `freeze_every_s` it collects the young generation (a few milliseconds at most: at most the
  threshold's worth of objects) and freezes the survivors. Long-lived state — an open stream's
  request, tasks and inbox — so leaves the generations the collector walks, and the automatic
  middle and full passes stay small however many streams are open.
- What that costs: garbage in a reference cycle whose objects were frozen while still alive is
  not reclaimed until the next reclaim. (Anything without a cycle is freed by reference counting
  as usual, frozen or not.) So the pacer reclaims — unfreezes, runs one full pass, freezes again —
  every `reclaim_every_s` (10 minutes): one pause as long as a default full pass, where CPython's
  own rule takes one whenever the heap grows by a quarter — which is what stalled a ramp of
  streams. `reclaim_growth` also reclaims once the frozen set has grown by that factor since the
  last reclaim, bounding what churn can pile up; it is off by default, because a growing set of
  live streams trips it just the same: at 2x, the edge bench's p99 while 10 000 streams opened at
  250/s went from 20-25 ms to 86-120 ms, and to 150-175 ms while they were held.
- `stop` gives the process back the collector as it found it (thresholds, nothing frozen).

``TIDEMESH_GC_TRACE=<prefix>`` appends one line per collection (generation, duration) to
``<prefix>.<pid>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import time
from collections.abc import Callable

YOUNG_THRESHOLD = 20_000
MIDDLE_THRESHOLD = 4
OLD_THRESHOLD = 10


_traced = False


def tune_for_service() -> None:
    """Freeze what start-up allocated and raise the young generation's threshold; idempotent."""
    global _traced
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    if (path := os.environ.get("TIDEMESH_GC_TRACE")) and not _traced:
        _traced = True
        trace = open(f"{path}.{os.getpid()}", "a", buffering=1)  # lives as long as the process
        started: list[float] = [0.0]

        def timed(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                took = (time.perf_counter() - started[0]) * 1000
                trace.write(
                    f"{time.time():.3f} gen{info['generation']} {took:.1f}ms {gc.get_count()} {gc.get_freeze_count()}\n"
                )

        gc.callbacks.append(timed)


class GcPacer:
    """Ages survivors into the frozen set every `freeze_every_s`; a full reclaim every `reclaim_every_s`."""

    def __init__(
        self,
        freeze_every_s: float = 1.0,
        reclaim_every_s: float = 600.0,
        reclaim_growth: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._freeze_every_s = freeze_every_s
        self._reclaim_every_s = reclaim_every_s
        self._reclaim_growth = reclaim_growth
        self._clock = clock
        self._reclaimed_at = clock()
        self._frozen_after_reclaim = gc.get_freeze_count()
        self._thresholds: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def step(self) -> None:
        """One pacing step: collect the young generation, freeze what survived; reclaim when due."""
        overdue = self._clock() - self._reclaimed_at >= self._reclaim_every_s
        baseline = self._frozen_after_reclaim
        # get_freeze_count() walks the whole frozen set (tens of ms at millions of objects in 3.11):
        # asked only when a growth limit is set at all.
        grown = (
            baseline > 0
            and self._reclaim_growth != math.inf
            and gc.get_freeze_count() > baseline * self._reclaim_growth
        )
        if overdue or grown:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self._reclaimed_at = self._clock()
            self._frozen_after_reclaim = gc.get_freeze_count()
            return
        gc.collect(0)
        gc.freeze()
        if baseline == 0:  # nothing was frozen before the first step: measure growth from here
            self._frozen_after_reclaim = gc.get_freeze_count()

    def start(self) -> None:
        """Tune the collector for a service (see the module docstring) and start pacing it."""
        if self._task is None:
            self._thresholds = gc.get_threshold()
            tune_for_service()
            self._reclaimed_at = self._clock()
            self._frozen_after_reclaim = gc.get_freeze_count()
            self._task = asyncio.create_task(self._run(), name="gc-pacer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._thresholds is not None:
            gc.unfreeze()
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._freeze_every_s)
            self.step()
