"""Garbage-collector settings for a long-running service that holds many connections.

CPython's default (collect the youngest generation every 700 net new container objects, the
whole heap whenever it has grown by a quarter) is tuned for short scripts. A gateway holding
10 000 idle streams keeps a few million objects alive; while they open, the default settings
ran the collector over and over (a quarter of the gateway's CPU in the ramp, by py-spy) and each
full pass stops the event loop for as long as it takes to visit the whole heap. So: the objects
alive at start-up (modules, descriptors, the app) are frozen out of every pass, and a young
collection waits for 50 000 new objects, so that far fewer of the short-lived ones (one request's
futures, frames and buffers) survive long enough to be promoted and visited again by full passes.
Cyclic garbage is still collected; it waits a little longer.
"""

from __future__ import annotations

import gc
import os
import time

YOUNG_THRESHOLD = 20_000
MIDDLE_THRESHOLD = 4
OLD_THRESHOLD = 10


def tune_for_service() -> None:
    """Freeze what start-up allocated and raise the young generation's threshold; idempotent."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    if path := os.environ.get("TIDEMESH_GC_TRACE"):
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
