"""The fabric as the runner, the dispatcher and the event hub see it: small protocols.

The NATS-backed classes (`EventLog`, `WorkQueue`, `DeadLetterStore`, a nats `Client`, a
JetStream `Msg`) satisfy them; unit tests put an in-memory bus behind them
(`tests/unit/fakes.py`), while the integration tests run the same code on real NATS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

from mesh.fabric._events import StoredEvent
from mesh.v1 import deadletter_pb2, task_pb2, work_pb2


class EventStore(Protocol):
    """Each task's event chain: fenced appends, reads back."""

    async def append(self, event: task_pb2.TaskEvent, after_stream_sequence: int, *, urgent: bool = False) -> int:
        """Store `event` after the chain's event at `after_stream_sequence`; its stream sequence.
        Raises ChainMoved if the chain has moved past that event."""
        ...

    async def last(self, task_id: str) -> StoredEvent | None: ...

    async def first(self, task_id: str) -> StoredEvent | None: ...

    def read(self, task_id: str, after_sequence: int = 0) -> AsyncIterator[StoredEvent]: ...

    async def last_many(self, task_ids: Iterable[str]) -> dict[str, StoredEvent]: ...


class WorkSink(Protocol):
    """Where work items are stored (deduplicated by their step's id)."""

    async def put_item(self, item: work_pb2.WorkItem, subject: str = "", copy: str = "") -> bool: ...


class DeadLetterSink(Protocol):
    async def record(self, letter: deadletter_pb2.DeadLetter, alert: bool = True, fence: int = 0) -> int: ...

    async def withdraw(self, task_id: str, sequence: int) -> None: ...

    async def alert(self, letter: deadletter_pb2.DeadLetter) -> None: ...


class QuarantineSink(Protocol):
    """Where a message the mesh cannot read is set aside (`Quarantine.set_aside`)."""

    async def set_aside(
        self,
        source: str,
        subject: str,
        stream_sequence: int,
        data: bytes | None,
        classification: str,
        error: str,
        task_id: str = "",
        remove: Callable[[], Awaitable[object]] | None = None,
    ) -> bool: ...


class Publisher(Protocol):
    """Core (best-effort) publishing: live partials, cancel notices."""

    async def publish(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: dict[str, str] | None = None
    ) -> None: ...


class Delivery(Protocol):
    """A work item as delivered by its consumer: read it, then settle it once."""

    @property
    def data(self) -> bytes: ...

    @property
    def subject(self) -> str: ...

    @property
    def reply(self) -> str: ...

    @property
    def metadata(self) -> Any: ...  # num_delivered, sequence.stream

    async def ack_sync(self, timeout: float = 1.0) -> Any: ...  # noqa: ASYNC109 (nats.py's signature)

    async def nak(self, delay: int | float | None = None) -> None: ...

    async def in_progress(self) -> None: ...

    async def term(self) -> None: ...
