"""Group commit: concurrent writes to one stream gathered into one atomic batch.

`GroupCommit.publish` is a drop-in for ``js.publish``: the same arguments, the same PubAck, the
same errors (an ``APIError`` carrying the server's ``err_code``, ``TimeoutError``, ...), so each
write still means exactly what it meant alone — its ``Nats-Msg-Id`` deduplicates it, its
``Nats-Expected-Last-Subject-Sequence`` fences it. What changes is how many commits the broker
does: every write that arrives while a commit is in flight waits for the next one, and a group
of at least `atomic_min` writes goes to the broker as one atomic batch (ADR-50: one fsync, one
reply) instead of one fsync'd publish each.

- **Interactive work never waits for a batch.** An urgent write (an interactive task's) skips
  the gathering and goes out at once.
- **Idle, no added latency.** A write that finds no commit in flight starts one on the next
  loop turn, alone: one plain publish. An atomic commit costs the broker a fixed few
  milliseconds, so a group smaller than `atomic_min` is sent as plain publishes, pipelined.
- **All or nothing, then one by one.** The broker refuses a whole batch if one of its messages
  fails a check (a moved chain, a duplicate id, a full stream). The group is then sent again as
  plain publishes, so each write gets its own answer — the refused one its error, a duplicate
  its ``duplicate`` flag — exactly as if it had been sent alone. Nothing of a refused batch is
  stored, so the second sending never doubles a message.
- **Unknown outcome stays unknown.** A commit that times out fails every write of the group with
  ``TimeoutError``, as a lone publish would: each caller retries under its own message id.
- **Crash safety is the broker's.** A batch the process never committed (killed mid-batch) is
  discarded by the server; none of its writes was acknowledged to anyone.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from mesh import failpoints
from mesh.coalesce import Coalescer, CoalescerClosed, CoalescerState
from mesh.telemetry import METRICS, get_logger

log = get_logger(__name__)

ATOMIC_DISABLED = 10174  # the stream was declared without allow_atomic
MID_BATCH = "group-commit-mid-batch"
_HEADER_ROOM = 512  # batch headers added to a message, with margin


@dataclass(frozen=True)
class _Write:
    subject: str
    data: bytes
    headers: dict[str, str]


class GroupCommit:
    """Gathers concurrent publishes to one stream; see the module docstring."""

    def __init__(self, js: JetStreamContext, stream: str, *, atomic_min: int = 16, max_batch: int = 256) -> None:
        self._js = js
        self._stream = stream
        self._atomic_min = atomic_min
        self._atomic = True
        self._batch_ids = itertools.count()
        self._batch_prefix = os.urandom(6).hex()
        self._writes: Coalescer[_Write, PubAck] = Coalescer(
            self._commit, max_batch=max_batch, name=f"group-commit-{stream}"
        )
        self.commits = 0  # round trips that stored something: one per plain publish, one per batch
        self.messages = 0

    async def aclose(self) -> None:
        """Refuse new writes; wait for the ones already handed in."""
        await self._writes.aclose()

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None, *, urgent: bool = False
    ) -> PubAck:
        """Store one message as ``js.publish`` would; committed together with its neighbours.

        `urgent` (an interactive task's write) goes out at once as a plain publish: it never waits
        behind a batch in flight, whose commit costs the broker a few milliseconds."""
        if urgent:
            if self._writes.state is CoalescerState.CLOSED:
                raise nats.errors.ConnectionClosedError
            answer = await self._js.publish(subject, data, headers=dict(headers or {}))
            self._stored("single", 0 if answer.duplicate else 1)
            return answer
        try:
            return await self._writes.call(_Write(subject, data, dict(headers or {})))
        except CoalescerClosed as exc:
            raise nats.errors.ConnectionClosedError from exc

    @property
    def _nc(self) -> Client:
        """The context's own connection: a batch goes where its plain publishes go."""
        nc: Client = self._js._nc
        return nc

    async def _commit(self, group: list[_Write]) -> list[PubAck | Exception]:
        """One answer per write, in order."""
        limit = self._nc.max_payload - _HEADER_ROOM
        fits = [len(w.data) + sum(map(len, w.headers.values())) < limit for w in group]
        batchable = [w for w, ok in zip(group, fits, strict=True) if ok]
        if self._atomic and len(batchable) >= self._atomic_min:
            batched = await self._atomic_batch(batchable)
            if batched is not None:
                alone = iter(await self._one_by_one([w for w, ok in zip(group, fits, strict=True) if not ok]))
                answers = iter(batched)
                return [next(answers) if ok else next(alone) for ok in fits]
        return await self._one_by_one(group)

    async def _atomic_batch(self, group: list[_Write]) -> list[PubAck | Exception] | None:
        """Commit `group` as one atomic batch; None (nothing stored) if the broker refused it."""
        batch_id = f"{self._batch_prefix}{next(self._batch_ids)}"
        last = len(group)
        for number, write in enumerate(group, 1):
            headers = {**write.headers, "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(number)}
            if number < last:
                await self._nc.publish(write.subject, write.data, headers=headers)
                if number == last // 2 and failpoints.armed(MID_BATCH):
                    await self._nc.flush()  # half the batch really is on the broker
                    failpoints.reached(MID_BATCH)
                continue
            headers["Nats-Batch-Commit"] = "1"
            try:
                reply = await self._nc.request(write.subject, write.data, timeout=self._js._timeout, headers=headers)
            except nats.errors.TimeoutError as exc:
                return [exc] * last  # outcome unknown: every writer retries under its own id
            except nats.errors.NoRespondersError:
                return None  # no stream took the subject: each write gets its own error
        answer = json.loads(reply.data or b"{}")
        error = answer.get("error")
        if error:
            if error.get("err_code") == ATOMIC_DISABLED:
                self._atomic = False
                log.warning("stream has no atomic batches; committing one by one", extra={"stream": self._stream})
            return None
        count = int(answer.get("count", last))
        first = int(answer["seq"]) - count + 1
        stream = answer.get("stream", self._stream)
        self._stored("batch", 1, last)
        return [PubAck(stream=stream, seq=first + offset, duplicate=False) for offset in range(last)]

    async def _one_by_one(self, group: list[_Write]) -> list[PubAck | Exception]:
        if not group:
            return []
        answers = await asyncio.gather(
            *(self._js.publish(w.subject, w.data, headers=w.headers) for w in group),
            return_exceptions=True,
        )
        results: list[PubAck | Exception] = []
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer
            results.append(answer)
        self._stored("single", sum(1 for answer in results if isinstance(answer, PubAck) and not answer.duplicate))
        return results

    def _stored(self, mode: str, commits: int, messages: int | None = None) -> None:
        """Count `commits` durable commits of `mode` holding `messages` (one each, by default)."""
        messages = commits if messages is None else messages
        if not commits:
            return
        self.commits += commits
        self.messages += messages
        METRICS.broker_commits.labels(self._stream, mode).inc(commits)
        METRICS.broker_messages.labels(self._stream).inc(messages)
