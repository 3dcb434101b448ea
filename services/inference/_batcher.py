"""Dynamic batching: requests from many tasks share one model call.

Requests wait at most `max_delay_s` for company, up to `max_batch` texts per
call. The queue is ordered by priority class, so an interactive request joins
the next batch ahead of any batch-class request already waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field

import numpy as np

from mesh.telemetry import METRICS
from services.inference._backend import InferenceBackend


@dataclass(order=True)
class _Request:
    rank: int
    order: int
    texts: list[str] = field(compare=False)
    done: asyncio.Future[np.ndarray] = field(compare=False)


class Batcher:
    def __init__(self, backend: InferenceBackend, model: str, max_batch: int = 32, max_delay_s: float = 0.005):
        self._backend = backend
        self._model = model
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._queue: asyncio.PriorityQueue[_Request] = asyncio.PriorityQueue()
        self._order = itertools.count()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task

    async def embed(self, texts: list[str], rank: int = 2) -> np.ndarray:
        """Embeddings of `texts`; lower `rank` is served first (1 interactive … 3 batch)."""
        done: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(rank, next(self._order), texts, done))
        return await done

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            size = len(first.texts)
            deadline = asyncio.get_running_loop().time() + self._max_delay_s
            while size < self._max_batch:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0 and self._queue.empty():
                    break
                try:
                    request = (
                        self._queue.get_nowait()
                        if not self._queue.empty()
                        else await asyncio.wait_for(self._queue.get(), timeout)
                    )
                except TimeoutError:
                    break
                if size + len(request.texts) > self._max_batch and batch:
                    self._queue.put_nowait(request)  # next batch; keeps its place by rank/order
                    break
                batch.append(request)
                size += len(request.texts)
            live = [r for r in batch if not r.done.cancelled()]
            if not live:
                continue
            texts = [t for r in live for t in r.texts]
            METRICS.inference_batch.labels(self._model).observe(len(texts))
            try:
                vectors = await self._backend.embed(self._model, texts)
            except Exception as exc:
                for request in live:
                    if not request.done.done():
                        request.done.set_exception(exc)
                continue
            offset = 0
            for request in live:
                if not request.done.done():
                    request.done.set_result(vectors[offset : offset + len(request.texts)])
                offset += len(request.texts)
