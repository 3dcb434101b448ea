"""Where the audit's messages are kept: the `AuditStore` port, JetStream behind it, and an
in-memory store with the same rules for unit tests.

The one rule the chain relies on: an append names the stream sequence of the last message it
saw (JetStream's ``Nats-Expected-Last-Sequence``), and is refused (`WrongLastSequence`) if
anything was appended since — so two writers can never put two records on the same parent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from mesh.audit._stream import AUDIT_PREFIX, AUDIT_STREAM
from mesh.errors import Unavailable

WRONG_LAST_SEQUENCE = 10071  # JetStream's error code for a stale Nats-Expected-Last-Sequence


class WrongLastSequence(Exception):
    """Another writer appended since the expected last message: read the head again."""


class AuditStore(Protocol):
    async def append(self, subject: str, data: bytes, expected_last: int, msg_id: str) -> int:
        """Store `data` after message `expected_last` (0: the stream is empty); its stream sequence.
        `WrongLastSequence` if the stream has moved on; `Unavailable` if it cannot be reached."""
        ...

    async def last_sequence(self) -> int:
        """The stream sequence of the last message (0: empty)."""
        ...

    async def get(self, stream_sequence: int) -> bytes | None:
        """The message at `stream_sequence`, or None if there is none."""
        ...

    async def get_last(self, subject: str) -> tuple[int, bytes] | None:
        """The last message on `subject` (its stream sequence and data), or None."""
        ...


class JetStreamAuditStore:
    """`AuditStore` on the TM_AUDIT stream (declared by `declare_audit_stream`)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def append(self, subject: str, data: bytes, expected_last: int, msg_id: str) -> int:
        headers = {"Nats-Expected-Last-Sequence": str(expected_last), "Nats-Msg-Id": msg_id}
        try:
            ack = await self._js.publish(subject, data, stream=AUDIT_STREAM, headers=headers)
        except nats.js.errors.APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise WrongLastSequence(str(exc)) from exc
            raise Unavailable(f"the audit stream refused the append: {exc.description or exc}") from exc
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"the audit stream did not take the append: {type(exc).__name__}") from exc
        return int(ack.seq)

    async def last_sequence(self) -> int:
        try:
            message = await self._js.get_msg(AUDIT_STREAM, subject=f"{AUDIT_PREFIX}.>")
        except nats.js.errors.NotFoundError:
            return 0
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"the audit stream could not be read: {type(exc).__name__}") from exc
        return int(message.seq or 0)

    async def get(self, stream_sequence: int) -> bytes | None:
        try:
            message = await self._js.get_msg(AUDIT_STREAM, seq=stream_sequence)
        except nats.js.errors.NotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"the audit stream could not be read: {type(exc).__name__}") from exc
        return message.data or b""

    async def get_last(self, subject: str) -> tuple[int, bytes] | None:
        try:
            message = await self._js.get_msg(AUDIT_STREAM, subject=subject)
        except nats.js.errors.NotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as exc:
            raise Unavailable(f"the audit stream could not be read: {type(exc).__name__}") from exc
        return int(message.seq or 0), message.data or b""


@dataclass
class MemoryAuditStore:
    """An `AuditStore` in memory with JetStream's rules (expected last sequence, dedup by msg id).
    Every call yields to the loop first, so concurrent writers really interleave. `messages`
    holds (subject, data) at index stream sequence - 1; tests may change it to tamper."""

    messages: list[tuple[str, bytes] | None] = field(default_factory=list)
    down: bool = False  # every call Unavailable while set
    _ids: dict[str, int] = field(default_factory=dict)

    def _reachable(self) -> None:
        if self.down:
            raise Unavailable("the audit store is down")

    async def append(self, subject: str, data: bytes, expected_last: int, msg_id: str) -> int:
        await asyncio.sleep(0)
        self._reachable()
        if msg_id in self._ids:
            return self._ids[msg_id]
        if expected_last != len(self.messages):
            raise WrongLastSequence(f"wrong last sequence: {len(self.messages)}")
        self.messages.append((subject, data))
        self._ids[msg_id] = len(self.messages)
        return len(self.messages)

    async def last_sequence(self) -> int:
        await asyncio.sleep(0)
        self._reachable()
        return len(self.messages)

    async def get(self, stream_sequence: int) -> bytes | None:
        await asyncio.sleep(0)
        self._reachable()
        if not 1 <= stream_sequence <= len(self.messages):
            return None
        message = self.messages[stream_sequence - 1]
        return message[1] if message is not None else None

    async def get_last(self, subject: str) -> tuple[int, bytes] | None:
        await asyncio.sleep(0)
        self._reachable()
        for index in range(len(self.messages) - 1, -1, -1):
            message = self.messages[index]
            if message is not None and message[0] == subject:
                return index + 1, message[1]
        return None
