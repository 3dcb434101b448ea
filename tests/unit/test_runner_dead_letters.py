"""A task is dead-lettered only if its fenced final event is stored: the runner with fakes for the
event log and the dead-letter store (a lost race leaves no letter to replay)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from mesh.fabric import ChainMoved, StoredEvent
from mesh.v1 import deadletter_pb2, task_pb2, work_pb2
from services.worker._runner import PoisonMessage, Runner

TASK_ID = "01runnerdeadletter0000000a"


class _Events:
    """The chain: one QUEUED event; `moved` makes every append lose the race (a cancel got in)."""

    nc = None

    def __init__(self, spec: task_pb2.TaskSpec, moved: bool) -> None:
        queued = task_pb2.TaskEvent(task_id=TASK_ID, sequence=1, state=task_pb2.TASK_STATE_QUEUED, spec=spec)
        self.chain = [StoredEvent(queued, 5)]
        self.moved = moved

    async def first(self, task_id: str) -> StoredEvent | None:
        return self.chain[0]

    async def last(self, task_id: str) -> StoredEvent | None:
        return self.chain[-1]

    async def read(self, task_id: str, after_sequence: int = 0) -> Any:
        for stored in self.chain:
            yield stored

    async def append(self, event: task_pb2.TaskEvent, after_stream_sequence: int, *, urgent: bool = False) -> int:
        if self.moved or after_stream_sequence != self.chain[-1].stream_sequence:
            raise ChainMoved(event.task_id)
        self.chain.append(StoredEvent(event, after_stream_sequence + 1))
        return after_stream_sequence + 1


class _DeadLetters:
    def __init__(self) -> None:
        self.stored: dict[int, deadletter_pb2.DeadLetter] = {}
        self.alerts: list[str] = []

    async def record(self, letter: deadletter_pb2.DeadLetter, alert: bool = True, fence: int = 0) -> int:
        self.stored[len(self.stored) + 1] = letter
        if alert:
            self.alerts.append(letter.task_id)
        return len(self.stored)

    async def withdraw(self, task_id: str, sequence: int) -> None:
        del self.stored[sequence]

    async def alert(self, letter: deadletter_pb2.DeadLetter) -> None:
        self.alerts.append(letter.task_id)


def _unrunnable(moved: bool) -> tuple[Runner, _Events, _DeadLetters, Any, PoisonMessage]:
    spec = task_pb2.TaskSpec(task_id=TASK_ID, tenant="t", kind="no-such-kind")
    events, letters = _Events(spec, moved), _DeadLetters()
    runner = Runner(None, events, "w-1", None, 30.0, dead_letters=letters)  # type: ignore[arg-type]
    msg = SimpleNamespace(metadata=SimpleNamespace(num_delivered=1, sequence=SimpleNamespace(stream=9)))
    poison = PoisonMessage("schema_mismatch", "spec.kind: unknown", TASK_ID, work_pb2.WorkItem(spec=spec))
    return runner, events, letters, msg, poison


async def test_an_unrunnable_task_that_loses_the_race_has_no_dead_letter() -> None:
    """If the fenced DEAD_LETTERED event loses to another writer, no dead letter is left behind."""
    runner, _, letters, msg, poison = _unrunnable(moved=True)
    assert not await runner.end_unrunnable(msg, poison)  # type: ignore[arg-type]
    assert (letters.stored, letters.alerts) == ({}, [])


async def test_an_unrunnable_task_ends_dead_lettered_with_its_letter() -> None:
    """An unrunnable item of a task still QUEUED stores a schema_mismatch letter, ends the chain, alerts."""
    runner, events, letters, msg, poison = _unrunnable(moved=False)
    assert await runner.end_unrunnable(msg, poison)  # type: ignore[arg-type]
    assert events.chain[-1].event.state == task_pb2.TASK_STATE_DEAD_LETTERED and events.chain[-1].event.final
    [letter] = letters.stored.values()
    assert letter.classification == deadletter_pb2.FAILURE_CLASS_SCHEMA_MISMATCH
    assert (letter.error_class, letter.worker_ids, letters.alerts) == ("schema_mismatch", ["w-1"], [TASK_ID])
