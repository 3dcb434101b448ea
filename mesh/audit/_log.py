"""`AuditLog`: append records to the chain, sign checkpoints, read the audit back.

Appends are serialised in a process and fenced across processes: each names the stream's last
message it saw, and one that lost a race to another writer (another gateway) reads the new head
and is sealed again on it, after a short jittered pause — never two records on one parent. A checkpoint is signed every
`checkpoint_every` records this process writes, every `checkpoint_interval_s` seconds while the
head is unsigned, on `checkpoint()` (before an export) and at close.

A store that cannot take a record makes `append` raise `Unavailable` with a retry-after: the
caller's action must not go ahead unrecorded (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from mesh.audit._checkpoint import Checkpoint, Signer
from mesh.audit._entries import Stored, decode
from mesh.audit._record import GENESIS, AuditRecord, Entry, now_rfc3339, seal
from mesh.audit._store import AuditStore, WrongLastSequence
from mesh.audit._stream import checkpoint_subject, record_subject
from mesh.errors import Unavailable
from mesh.lifecycle import Lifecycle
from mesh.telemetry import get_logger

log = get_logger(__name__)

RETRY_AFTER_S = 1.0


@dataclass(frozen=True)
class _Head:
    seq: int  # the last record's number (0: none yet)
    hash: str
    stream_last: int  # the stream sequence of the last message, whatever it is
    signed: bool  # whether a checkpoint covers `seq`


class AuditLog(Lifecycle):
    """The audit over an `AuditStore`, signing with `signer`. ``async with`` it (or `start`) so
    that timed checkpoints run; reads and appends work from construction."""

    noun = "the audit log"

    ATTEMPTS = 16  # appends that lose a race read the head and try again, this many times
    SCAN_BACK = 64  # unreadable messages skipped at the end of the stream when finding the head
    READS_AT_ONCE = 64

    def __init__(
        self,
        store: AuditStore,
        signer: Signer,
        *,
        checkpoint_every: int = 100,
        checkpoint_interval_s: float = 60.0,
        clock: Callable[[], str] = now_rfc3339,
    ) -> None:
        if checkpoint_every < 1 or checkpoint_interval_s <= 0:
            raise ValueError("checkpoints come every 1 or more records and a positive number of seconds")
        self._store = store
        self.signer = signer
        self._every = checkpoint_every
        self._interval_s = checkpoint_interval_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._head: _Head | None = None
        self._unsigned = 0  # records this process appended since its last checkpoint
        self._timer: asyncio.Task[None] | None = None

    async def _start(self) -> None:
        self._timer = asyncio.create_task(self._tick())

    async def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        try:  # the tail this process wrote leaves signed, if the store lets it
            await asyncio.wait_for(self.checkpoint(), 5.0)
        except (TimeoutError, Unavailable) as exc:
            log.warning("audit: no checkpoint at close: %s", exc)

    async def append(self, entry: Entry) -> AuditRecord:
        """Seal `entry` as the next record and store it; `Unavailable` (retry-after) if it cannot be."""
        async with self._lock:
            for attempt in range(self.ATTEMPTS):
                head = await self._current()
                record = seal(head.seq + 1, head.hash, entry, self._clock())
                try:
                    stream_seq = await self._store.append(
                        record_subject(record.seq), record.encode(), head.stream_last, f"record:{record.hash}"
                    )
                except WrongLastSequence:
                    self._head = None  # another writer went first: seal again on its record,
                    # after a jittered pause, so a busy writer does not win every race
                    await asyncio.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.05)))
                    continue
                except Unavailable as exc:
                    self._head = None  # stored or not, the next append reads the head again
                    raise _unavailable(f"the audit could not record this: {exc.message}") from exc
                self._head = _Head(record.seq, record.hash, stream_seq, signed=False)
                self._unsigned += 1
                if self._unsigned >= self._every:
                    await self._sign_head()
                return record
        raise _unavailable(f"the audit could not record this: {self.ATTEMPTS} other appends went first")

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the head unless a checkpoint covers it already; the checkpoint written (None: none
        was needed, or another writer appended first)."""
        async with self._lock:
            self._head = None  # the stream's own head, not this process's view of it
            return await self._sign_head()

    async def _sign_head(self) -> Checkpoint | None:
        """Under the lock: a checkpoint of the head, if it is unsigned. Failures are logged: the
        records are stored either way, and the next checkpoint covers them."""
        try:
            head = await self._current()
            if head.signed or head.seq == 0:
                return None
            checkpoint = self.signer.sign(head.seq, head.hash, self._clock())
            stream_seq = await self._store.append(
                checkpoint_subject(head.seq), checkpoint.encode(), head.stream_last, f"checkpoint:{head.hash}"
            )
        except WrongLastSequence:
            self._head = None
            return None
        except Unavailable as exc:
            self._head = None
            log.warning("audit: checkpoint not written: %s", exc.message)
            return None
        self._head = _Head(head.seq, head.hash, stream_seq, signed=True)
        self._unsigned = 0
        return checkpoint

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.checkpoint()

    async def _current(self) -> _Head:
        if self._head is None:
            self._head = await self._read_head()
        return self._head

    async def _read_head(self) -> _Head:
        """The chain's head from the stream's last readable entry (junk appended after it is
        skipped here and reported by verification)."""
        last = await self._store.last_sequence()
        for stream_seq in range(last, max(last - self.SCAN_BACK, 0), -1):
            data = await self._store.get(stream_seq)
            stored = decode(stream_seq, data) if data is not None else None
            if stored is not None and stored.record is not None:
                return _Head(stored.record.seq, stored.record.hash, last, signed=False)
            if stored is not None and stored.checkpoint is not None:
                return _Head(stored.checkpoint.seq, stored.checkpoint.head, last, signed=stream_seq == last)
        if last == 0:
            return _Head(0, GENESIS, 0, signed=True)
        raise _unavailable(f"the audit's last {min(last, self.SCAN_BACK)} messages are not audit entries")

    # --- reads -------------------------------------------------------------------------------

    async def entries(self) -> AsyncIterator[Stored]:
        """Every message of the audit in stored order, up to the last one when the call began."""
        last = await self._store.last_sequence()
        for start in range(1, last + 1, self.READS_AT_ONCE):
            sequences = range(start, min(start + self.READS_AT_ONCE, last + 1))
            for stream_seq, data in zip(
                sequences, await asyncio.gather(*(self._store.get(s) for s in sequences)), strict=True
            ):
                if data is not None:  # a message gone from the stream: verification sees the gap
                    yield decode(stream_seq, data)

    async def record(self, seq: int) -> Stored | None:
        """Record number `seq` as stored (the last message under its number), or None."""
        found = await self._store.get_last(record_subject(seq))
        return decode(*found) if found is not None else None

    async def head_seq(self) -> int:
        """The last record's number, read from the stream."""
        async with self._lock:
            self._head = None
            return (await self._current()).seq

    async def recent(
        self, before: int, limit: int, keep: Callable[[AuditRecord], bool], scan: int = 5000
    ) -> tuple[list[AuditRecord], int]:
        """Up to `limit` records numbered below `before` (0: from the head) that `keep` keeps,
        newest first, looking at no more than `scan` records; and the `before` to continue from
        (0: nothing older is left)."""
        top = await self.head_seq()
        seq = min(before - 1, top) if before else top
        found: list[AuditRecord] = []
        floor = max(seq - scan, 0)
        while seq > floor and len(found) < limit:
            numbers = range(seq, max(seq - self.READS_AT_ONCE, floor), -1)
            for stored in await asyncio.gather(*(self.record(n) for n in numbers)):
                if stored is not None and stored.record is not None and keep(stored.record):
                    found.append(stored.record)
                    if len(found) == limit:
                        return found, stored.record.seq if stored.record.seq > 1 else 0
            seq = numbers[-1] - 1
        return found, seq + 1 if seq > 0 else 0


def _unavailable(message: str) -> Unavailable:
    return Unavailable(f"{message}; nothing was done, try again in {RETRY_AFTER_S:g} s", retry_after_s=RETRY_AFTER_S)
