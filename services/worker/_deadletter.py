"""Ending a task dead-lettered: the letter (its diagnosis) first, then the fenced final event.

The letter goes first, so a task that ended dead-lettered always has one (a crash in between
leaves the item unacked: it is redelivered and this runs again). If the chain moved on
meanwhile (a cancel, another runner) the letter is withdrawn and ChainMoved raised: no task
that did not end dead-lettered has a letter to replay.
"""

from __future__ import annotations

from mesh.errors import InvalidArgument
from mesh.fabric import (
    REPLAY_OF_LABEL,
    TERMINAL_STATES,
    Chain,
    ChainMoved,
    DeadLetterSink,
    EventStore,
    actions_for,
    classify,
    console_path,
    fingerprint,
    runbook_for,
)
from mesh.tasks import KINDS, check_task_id
from mesh.telemetry import METRICS, get_logger
from mesh.v1 import deadletter_pb2, task_pb2, work_pb2

log = get_logger(__name__)

# The error classes a step reports (StepFailed's): a metric's label carries one of these, or
# "other" (a worker in another language may report any string).
STEP_ERROR_CLASSES = frozenset(
    {"invalid_input", "schema_mismatch", "timeout", "resource_exhausted", "dependency_down", "child_failed", "bug"}
    | {"invalid_output", "internal"}
)


def error_label(error_class: str) -> str:
    """`error_class` as a metric label: a known class, or ``other``."""
    return error_class if error_class in STEP_ERROR_CLASSES else "other"


def classification_label(error_class: str) -> str:
    """The dead-letter classification of `error_class` as a metric label (``poison_input``, ``bug``, …)."""
    return deadletter_pb2.FailureClass.Name(classify(error_class)).removeprefix("FAILURE_CLASS_").lower()


def letter_for(
    chain: Chain, spec: task_pb2.TaskSpec, error: task_pb2.TaskError, fault: str, worker_ids: set[str]
) -> deadletter_pb2.DeadLetter:
    """The dead letter of the task `chain` writes, failed with `error` (pure but for the clock)."""
    classification = classify(error.error_class)
    commands, view = actions_for(chain.task_id, classification)
    letter = deadletter_pb2.DeadLetter(
        task_id=chain.task_id,
        spec=spec,
        step=chain.step,
        error_class=error.error_class,
        message=error.message,
        fingerprint=fault,
        attempts=chain.attempt,
        worker_ids=sorted(worker_ids | {chain.worker_id} - {""}),
        trace_id=chain.traceparent.split("-")[1] if chain.traceparent.count("-") == 3 else "",
        classification=classification,
        runbook=runbook_for(classification),
        replay_of=spec.labels.get(REPLAY_OF_LABEL, ""),
        cli_commands=commands,
        dashboard_view=view,
        console_path=console_path("dlq", chain.task_id),
    )
    letter.dead_at.GetCurrentTime()
    return letter


class DeadLettering:
    """Stores dead letters and ends chains DEAD_LETTERED for one worker."""

    def __init__(self, events: EventStore, letters: DeadLetterSink, worker_id: str) -> None:
        self._events = events
        self._letters = letters
        self._worker_id = worker_id

    async def end(self, chain: Chain, spec: task_pb2.TaskSpec, error: task_pb2.TaskError, fault: str) -> None:
        """Store the letter, end the chain (fenced), then alert; ChainMoved if the chain moved on."""
        history = [stored.event async for stored in self._events.read(chain.task_id)]
        worker_ids = {e.worker_id for e in history if e.worker_id}
        letter = letter_for(chain, spec, error, fault, worker_ids)
        sequence = await self._letters.record(letter, alert=False, fence=chain.stream_sequence)
        try:
            await chain.emit(self._events, task_pb2.TASK_STATE_DEAD_LETTERED, error=error, final=True)
        except ChainMoved:
            await self._letters.withdraw(chain.task_id, sequence)
            raise
        log.error(
            "task dead-lettered",
            extra={
                "error_class": error.error_class,
                "classification": letter.classification,
                "runbook": letter.runbook,
            },
        )
        await self._letters.alert(letter)

    async def end_own(
        self, item: work_pb2.WorkItem, error_class: str, message: str, attempt: int = 1, work_item_sequence: int = 0
    ) -> bool:
        """Dead-letter the task of `item` with `error_class`, but only if the item is the task's own:
        its chain's first event, QUEUED, carries the same spec, so a forged item naming another
        tenant's task ends nothing. True if it ended it (False: not its own, already over, or the
        chain moved meanwhile)."""
        spec = item.spec
        try:
            check_task_id(spec.task_id, "spec.task_id")
        except InvalidArgument:
            return False
        first = await self._events.first(spec.task_id)  # the QUEUED event, with the spec admission accepted
        if first is None or first.event.state != task_pb2.TASK_STATE_QUEUED or first.event.spec != spec:
            return False
        last = await self._events.last(spec.task_id)
        if last is None or last.event.state in TERMINAL_STATES:
            return False
        chain = Chain.after(last, worker_id=self._worker_id, step=last.event.step)
        chain.attempt, chain.traceparent, chain.work_item_sequence = attempt, item.traceparent, work_item_sequence
        error = task_pb2.TaskError(error_class=error_class, message=message, retryable=False)
        try:
            await self.end(chain, spec, error, fingerprint(error_class, message))
        except ChainMoved:
            return False  # someone wrote meanwhile (a cancel): the chain is theirs
        METRICS.dead_lettered(
            spec.kind if spec.kind in KINDS else "unknown", classification_label(error_class), spec.tenant
        )
        return True
