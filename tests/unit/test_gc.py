"""The GC pacer ages survivors out of the collector's passes and reclaims frozen cyclic garbage on schedule."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from mesh.runtime._gc import GcPacer


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the pacer's freezing is process-wide: leave the test process as it was


def _cycle() -> _Node:
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    return first


def test_a_step_freezes_what_survives() -> None:
    """After a step the young generation is empty and the survivors are in the frozen set."""
    now = [0.0]
    pacer = GcPacer(reclaim_every_s=600, clock=lambda: now[0])
    kept = [_Node() for _ in range(1000)]
    frozen_before = gc.get_freeze_count()
    pacer.step()
    assert gc.get_freeze_count() >= frozen_before + len(kept)
    assert gc.get_count()[0] < 100


def test_frozen_cyclic_garbage_is_reclaimed_on_schedule() -> None:
    """A cycle frozen while alive and then dropped survives ordinary collections, and is freed by the
    first step after `reclaim_every_s`."""
    now = [0.0]
    pacer = GcPacer(reclaim_every_s=600, clock=lambda: now[0])
    alive = _cycle()
    node = weakref.ref(alive)
    pacer.step()  # the cycle is alive here: frozen
    del alive  # now it is garbage, held only by its own cycle
    assert node() is not None
    gc.collect()
    assert node() is not None, "frozen objects are not collected by ordinary passes"
    now[0] = 599.0
    pacer.step()
    assert node() is not None
    now[0] = 600.0
    pacer.step()
    assert node() is None, "the scheduled reclaim frees it"


def test_churn_reclaims_before_the_schedule() -> None:
    """When the frozen set has grown by a quarter since the last reclaim (streams that lived and closed),
    the next step reclaims at once, long before `reclaim_every_s`."""
    now = [0.0]
    pacer = GcPacer(reclaim_every_s=600, reclaim_growth=1.25, clock=lambda: now[0])
    pacer.step()
    base = gc.get_freeze_count()
    alive = [_cycle() for _ in range(max(1000, base))]  # more than a quarter of what is frozen
    nodes = [weakref.ref(node) for node in alive[:10]]
    pacer.step()  # frozen while alive
    del alive
    pacer.step()  # grown past 1.25x: reclaimed
    assert all(node() is None for node in nodes)


async def test_stop_gives_back_the_collector_as_it_was() -> None:
    """After start and stop, the thresholds are the process's own again and nothing is left frozen."""
    before = gc.get_threshold()
    pacer = GcPacer()
    pacer.start()
    assert gc.get_threshold() != before and gc.get_freeze_count() > 0
    await pacer.stop()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
