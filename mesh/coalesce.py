"""Coalescing: concurrent calls from many callers gathered into one call of a batch operation.

The one place tidemesh decides when to flush: a call that finds no flush in flight starts one on
the next loop turn (so at low load it goes out alone, without waiting), and every call that
arrives while a flush is in flight waits for the next one — the busier the mesh, the larger
the batches, without a timer. Used for the broker's group commit (`mesh.fabric._commit`) and for
the gateway's admissions (`services.gateway._admit`).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[Sequence[R | Exception]]]


class CoalescerClosed(Exception):
    """The coalescer was closed: it takes no new calls."""


class CoalescerState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass
class _Call(Generic[T, R]):
    item: T
    done: asyncio.Future[R] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Coalescer(Generic[T, R]):
    """`await coalescer.call(item)` is answered by `flush([..., item, ...])[its index]`.

    `flush` returns one result or exception per item, in order; if it raises, every item of
    that batch gets the exception. A caller that is cancelled leaves its item in its batch (a
    write handed in is finished, not half-done). `aclose()` refuses new calls and waits for the
    ones handed in."""

    def __init__(
        self,
        flush: Flush[T, R],
        *,
        max_batch: int,
        name: str,
        weigh: Callable[[T], int] | None = None,
        max_weight: int = 0,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._weigh = weigh
        self._max_weight = max_weight
        self._name = name
        self._pending: list[_Call[T, R]] = []
        self._drain: asyncio.Task[None] | None = None
        self.state = CoalescerState.OPEN

    async def aclose(self) -> None:
        self.state = CoalescerState.CLOSED
        if self._drain is not None:
            await asyncio.shield(self._drain)

    async def call(self, item: T) -> R:
        if self.state is CoalescerState.CLOSED:
            raise CoalescerClosed(self._name)
        call: _Call[T, R] = _Call(item)
        call.done.add_done_callback(_retrieve)  # a caller that gave up leaves no unread error
        self._pending.append(call)
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._drain_pending(), name=self._name)
        return await asyncio.shield(call.done)

    def _batch_size(self) -> int:
        """How many pending calls the next batch takes: up to `max_batch`, and while their
        weight stays within `max_weight` (always at least one)."""
        if self._weigh is None or not self._max_weight:
            return self._max_batch
        total = 0
        for size, call in enumerate(self._pending[: self._max_batch]):
            total += self._weigh(call.item)
            if total > self._max_weight and size:
                return size
        return self._max_batch

    async def _drain_pending(self) -> None:
        while self._pending:
            size = self._batch_size()
            batch, self._pending = self._pending[:size], self._pending[size:]
            try:
                results = await self._flush([call.item for call in batch])
            except Exception as exc:
                results = [exc] * len(batch)
            except BaseException as exc:  # cancelled or exiting: nobody is left waiting
                for call in batch:
                    if not call.done.done():
                        call.done.set_exception(CoalescerClosed(f"{self._name}: {exc!r}"))
                raise
            for call, result in zip(batch, results, strict=True):
                if call.done.done():
                    continue
                if isinstance(result, Exception):
                    call.done.set_exception(result)
                else:
                    call.done.set_result(result)


def _retrieve(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()
