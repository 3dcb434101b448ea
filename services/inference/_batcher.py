"""Dynamic batching: requests from many tasks share one model call.

A batch forms when a backend has room: it takes up to `max_batch` texts, waiting at most
`max_delay_s` for company. While every backend is busy, requests queue — so batches grow
with load. The queue is ordered by priority class, so an interactive request joins the next
batch ahead of any batch-class request already waiting. A batch whose requests were all
cancelled (task cancelled, client gone) cancels its model call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from mesh.lifecycle import Lifecycle
from mesh.telemetry import current_traceparent, full_spans, span
from services.inference._router import Router


@dataclass(order=True)
class _Request:
    rank: int
    order: int
    texts: list[str] = field(compare=False)
    done: asyncio.Future[tuple[np.ndarray, str]] = field(compare=False)
    # The caller's context: the batch's model call runs in its first request's trace, linked to
    # the others' (`_call`).
    context: contextvars.Context = field(compare=False, default_factory=contextvars.copy_context)


class Batcher(Lifecycle):
    noun = "the batcher"

    def __init__(self, router: Router, model: str, max_batch: int = 32, max_delay_s: float = 0.005):
        self._router = router
        self._model = model
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._queue: asyncio.PriorityQueue[_Request] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._loop_task: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()  # set when a model call ends

    async def _start(self) -> None:
        self._loop_task = asyncio.create_task(self._run())

    async def _stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._calls) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def embed(self, texts: list[str], rank: int = 1) -> tuple[np.ndarray, str]:
        """Embeddings of `texts` and the backend that made them; lower `rank` (urgency) first."""
        self.check_running()
        done: asyncio.Future[tuple[np.ndarray, str]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(rank, next(self._order), texts, done))
        return await done

    async def _run(self) -> None:
        while True:
            while len(self._calls) >= self._router.capacity(self._model):  # a batch forms when there is room
                self._room.clear()
                await self._room.wait()
            batch = await self._gather()
            call = asyncio.create_task(self._call(batch), context=batch[0].context)
            self._calls.add(call)
            call.add_done_callback(self._finished)
            for request in batch:  # the last request to go away cancels the model call
                request.done.add_done_callback(partial(_on_done, batch, call))

    def _finished(self, call: asyncio.Task[None]) -> None:
        self._calls.discard(call)
        self._room.set()

    async def _gather(self) -> list[_Request]:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            if not first.done.cancelled():
                break
        batch, size = [first], len(first.texts)
        deadline = loop.time() + self._max_delay_s
        while size < self._max_batch:
            try:
                if self._queue.empty():
                    request = await asyncio.wait_for(self._queue.get(), max(deadline - loop.time(), 0))
                else:
                    request = self._queue.get_nowait()
            except TimeoutError:
                break
            if request.done.cancelled():
                continue
            if size + len(request.texts) > self._max_batch:
                self._queue.put_nowait(request)  # next batch; keeps its place by rank/order
                break
            batch.append(request)
            size += len(request.texts)
        return batch

    async def _call(self, batch: list[_Request]) -> None:
        texts = [t for r in batch for t in r.texts]
        others = [r.context.run(current_traceparent) for r in batch[1:]] if full_spans() else []
        attributes = {
            "tidemesh.model": self._model,
            "tidemesh.batch.requests": len(batch),
            "tidemesh.batch.texts": len(texts),
        }
        try:
            with span(f"embed batch {self._model}", attributes, link_to=others):
                vectors, backend = await self._router.embed(self._model, texts, batch[0].rank)
        except Exception as exc:
            for request in batch:
                if not request.done.done():
                    request.done.set_exception(exc)
            return
        offset = 0
        for request in batch:
            if not request.done.done():
                request.done.set_result((vectors[offset : offset + len(request.texts)], backend))
            offset += len(request.texts)


def _on_done(batch: list[_Request], call: asyncio.Task[None], done: asyncio.Future[object]) -> None:
    if done.cancelled() and all(r.done.cancelled() for r in batch):
        call.cancel()


class Batchers(Lifecycle):
    """One batcher per model, started the first time the model is asked for (`get`)."""

    noun = "the batchers"

    def __init__(self, router: Router, max_batch: int, max_delay_s: float) -> None:
        self._router = router
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._by_model: dict[str, Batcher] = {}

    async def get(self, model: str) -> Batcher:
        self.check_running()
        batcher = self._by_model.get(model)
        if batcher is None:
            batcher = self._by_model[model] = Batcher(self._router, model, self._max_batch, self._max_delay_s)
            await batcher.start()
        return batcher

    async def _stop(self) -> None:
        for batcher in self._by_model.values():
            await batcher.close()
