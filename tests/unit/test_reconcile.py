"""The reconciler with fakes for JetStream, the event log and admission: it never acks an entry whose
quarantine record was not stored, and no failure of a pass ends it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import nats.errors

from mesh.fabric import StoredEvent
from mesh.v1 import task_pb2
from services.scheduler._reconcile import ReconcilePolicy, Reconciler
from tests.conftest import eventually

GOOD_ID = "01reconcileunit00000000000a"
BAD_KIND_ID = "01reconcileunit00000000000b"


@dataclass
class _Entry:
    subject: str
    sequence: int
    data: bytes = b""
    acked: int = 0
    metadata: Any = None

    def __post_init__(self) -> None:
        self.metadata = SimpleNamespace(
            sequence=SimpleNamespace(stream=self.sequence), timestamp=datetime(2020, 1, 1, tzinfo=UTC)
        )

    async def ack(self) -> None:
        self.acked += 1


@dataclass
class _JetStream:
    """add_consumer, pull_subscribe_bind and the publish the quarantine stores its records with."""

    entries: list[_Entry]
    quarantine_up: bool = False
    records: list[str] = field(default_factory=list)

    async def add_consumer(self, *args: object, **kwargs: object) -> None:
        pass

    async def pull_subscribe_bind(self, *args: object, **kwargs: object) -> _JetStream:
        return self

    async def fetch(self, batch: int, **wait: float) -> list[_Entry]:
        fetched, self.entries = self.entries[:batch], self.entries[batch:]
        return fetched

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> Any:
        if not self.quarantine_up:
            raise nats.errors.NoRespondersError
        self.records.append(subject)
        return SimpleNamespace(duplicate=False, seq=len(self.records))


class _Events:
    def __init__(self, *stored: StoredEvent) -> None:
        self.stored = {s.event.task_id: s for s in stored}

    async def last_many(self, task_ids: Any) -> dict[str, StoredEvent]:
        return {task_id: self.stored[task_id] for task_id in task_ids if task_id in self.stored}


class _Admitter:
    def __init__(self) -> None:
        self.requeued: list[str] = []

    async def requeue(self, stored: StoredEvent) -> bool:
        self.requeued.append(stored.event.task_id)
        return True


def _queued(task_id: str, kind: str) -> StoredEvent:
    spec = task_pb2.TaskSpec(
        task_id=task_id, tenant="t", kind=kind, payload=task_pb2.TaskPayload(echo=task_pb2.EchoInput(text="x"))
    )
    event = task_pb2.TaskEvent(task_id=task_id, sequence=1, state=task_pb2.TASK_STATE_QUEUED, spec=spec)
    return StoredEvent(event=event, stream_sequence=7)


def _reconciler(js: _JetStream, events: _Events, admitter: _Admitter) -> Reconciler:
    return Reconciler(js, events, admitter, ReconcilePolicy(grace_s=0.0, every_s=0.001))  # type: ignore[arg-type]


async def test_an_entry_naming_no_task_is_acked_only_once_its_record_is_stored() -> None:
    """While the quarantine is down an entry naming no task id stays held and unacked; once the
    quarantine is back the next pass records it, then acks it."""
    bad = _Entry("tm.task.t.not-a-task-id!", sequence=3)
    js = _JetStream([bad])
    reconciler = _reconciler(js, _Events(), _Admitter())
    await reconciler.run_pass()
    assert (bad.acked, js.records) == (0, [])
    js.quarantine_up = True
    await reconciler.run_pass()
    assert (bad.acked, js.records) == (1, ["tm.quarantine.index"])


async def test_an_unrunnable_queued_task_waits_for_its_record_and_the_pass_goes_on() -> None:
    """A task whose QUEUED spec cannot run stays held while its record cannot be stored, and the
    other due entries of the pass are still reconciled."""
    unrunnable, lost = _Entry(f"tm.task.t.{BAD_KIND_ID}", 1), _Entry(f"tm.task.t.{GOOD_ID}", 2)
    js = _JetStream([unrunnable, lost])
    admitter = _Admitter()
    reconciler = _reconciler(js, _Events(_queued(BAD_KIND_ID, "no-such-kind"), _queued(GOOD_ID, "echo")), admitter)
    assert await reconciler.run_pass() == 1
    assert (admitter.requeued, lost.acked, unrunnable.acked) == ([GOOD_ID], 1, 0)
    js.quarantine_up = True
    await reconciler.run_pass()
    assert (unrunnable.acked, js.records, admitter.requeued) == (1, ["tm.quarantine.events"], [GOOD_ID])


async def test_a_pass_failing_with_any_exception_does_not_end_the_reconciler() -> None:
    """A pass that raises something other than a mesh or nats error is logged and tried again."""
    reconciler = _reconciler(_JetStream([]), _Events(), _Admitter())
    calls = 0

    async def failing_pass() -> int:
        nonlocal calls
        calls += 1
        raise KeyError("a bug in a pass")

    reconciler.run_pass = failing_pass  # type: ignore[assignment,method-assign]
    running = asyncio.create_task(reconciler.run())
    try:
        await eventually(lambda: _true(calls >= 3 and not running.done()), timeout_s=5, what="three passes")
    finally:
        running.cancel()
    assert not running.done() or running.cancelled()


async def _true(value: bool) -> bool:
    return value
