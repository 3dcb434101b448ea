"""The coalescer: alone when idle, batched when busy, one answer per caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from mesh.coalesce import Coalescer, CoalescerClosed

pytestmark = pytest.mark.asyncio


class _Flushes:
    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate
        self.started = asyncio.Event()

    async def __call__(self, items: list[int]) -> Sequence[int | Exception]:
        self.batches.append(items)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_a_lone_call_goes_out_alone() -> None:
    flushes = _Flushes()
    coalescer: Coalescer[int, int] = Coalescer(flushes, max_batch=8, name="t")
    assert await coalescer.call(2) == 20
    assert await coalescer.call(4) == 40
    assert flushes.batches == [[2], [4]]


async def test_calls_arriving_during_a_flush_share_the_next_one() -> None:
    gate = asyncio.Event()
    flushes = _Flushes(gate)
    coalescer: Coalescer[int, int] = Coalescer(flushes, max_batch=8, name="t")
    first = asyncio.ensure_future(coalescer.call(0))
    await flushes.started.wait()  # the first flush has started and holds
    rest = [asyncio.ensure_future(coalescer.call(2 * i)) for i in range(1, 11)]
    gate.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [20 * i for i in range(1, 11)]
    assert flushes.batches == [[0], [2, 4, 6, 8, 10, 12, 14, 16], [18, 20]]


async def test_each_caller_gets_its_own_error() -> None:
    coalescer: Coalescer[int, int] = Coalescer(_Flushes(), max_batch=8, name="t")
    answers = await asyncio.gather(*(coalescer.call(i) for i in range(4)), return_exceptions=True)
    assert answers[0] == 0 and answers[2] == 20
    assert [str(a) for a in answers[1::2]] == ["odd 1", "odd 3"]


async def test_a_failed_flush_fails_its_whole_batch_and_the_next_goes_on() -> None:
    calls = 0

    async def flaky(items: list[int]) -> Sequence[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("broker gone")
        return items

    coalescer: Coalescer[int, int] = Coalescer(flaky, max_batch=8, name="t")
    with pytest.raises(ConnectionError):
        await coalescer.call(1)
    assert await coalescer.call(2) == 2


async def test_a_cancelled_caller_leaves_its_item_in_the_batch() -> None:
    gate = asyncio.Event()
    flushes = _Flushes(gate)
    coalescer: Coalescer[int, int] = Coalescer(flushes, max_batch=8, name="t")
    blocker = asyncio.ensure_future(coalescer.call(0))
    await flushes.started.wait()
    quitter = asyncio.ensure_future(coalescer.call(6))
    await asyncio.sleep(0)
    quitter.cancel()
    gate.set()
    await blocker
    await coalescer.aclose()
    assert flushes.batches == [[0], [6]]


async def test_closed_refuses_new_calls_after_finishing_the_handed_in() -> None:
    gate = asyncio.Event()
    coalescer: Coalescer[int, int] = Coalescer(_Flushes(gate), max_batch=8, name="t")
    handed = asyncio.ensure_future(coalescer.call(4))
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(coalescer.aclose())
    await asyncio.sleep(0)
    with pytest.raises(CoalescerClosed):
        await coalescer.call(2)
    gate.set()
    await closing
    assert await handed == 40


async def test_a_batch_stops_at_its_weight_but_always_takes_one() -> None:
    gate = asyncio.Event()
    flushes = _Flushes(gate)
    coalescer: Coalescer[int, int] = Coalescer(flushes, max_batch=8, name="t", weigh=lambda i: i, max_weight=10)
    first = asyncio.ensure_future(coalescer.call(0))
    await flushes.started.wait()
    rest = [asyncio.ensure_future(coalescer.call(i)) for i in (4, 6, 2, 12, 2)]
    gate.set()
    await asyncio.gather(first, *rest, return_exceptions=True)
    assert flushes.batches == [[0], [4, 6], [2], [12], [2]]
