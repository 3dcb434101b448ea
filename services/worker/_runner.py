"""Running one work item: fenced events, the step, then the transactional ack.

The input item is acknowledged (and the ack confirmed by the server) only after
its output is durably stored: the next step's work item, or the final event.
On any failure before that, nothing is acked and JetStream redelivers.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import google.protobuf.message
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import context as otel_context

from mesh.errors import InvalidArgument, Unavailable
from mesh.fabric import (
    REPLAY_OF_LABEL,
    TERMINAL_STATES,
    Chain,
    ChainMoved,
    DeadLetterStore,
    EventLog,
    KeySequencer,
    StoredEvent,
    WorkQueue,
    classify,
    fingerprint,
    runbook_for,
)
from mesh.rpc import duration
from mesh.tasks import KINDS, Limits, TaskKind, check_task_id, validate_spec
from mesh.telemetry import METRICS, bind_task, extract_context, get_logger, step_span
from mesh.v1 import deadletter_pb2, inference_pb2_grpc, task_pb2, work_pb2
from services.worker._children import ChildTasks
from services.worker._steps import BUILTIN_HANDLERS, StepContext, StepFailed, StepHandler
from services.worker._webhook import WebhookClient

log = get_logger(__name__)

# The handler of step `index` of a kind in this runner, or None if it runs none.
HandlerResolver = Callable[[TaskKind, int], StepHandler | None]
MAX_CHECKPOINT_BYTES = 64 * 1024


def builtin_handler(kind: TaskKind, index: int) -> StepHandler | None:
    return BUILTIN_HANDLERS.get(kind.steps[index].name) if kind.builtin else None


def check_builtin_handlers() -> None:
    """Every step of every built-in kind has a handler (checked when a worker starts)."""
    missing = [
        f"{kind.name}/{step.name}"
        for kind in KINDS.values()
        if kind.builtin
        for index, step in enumerate(kind.steps)
        if builtin_handler(kind, index) is None
    ]
    if missing:
        known = ", ".join(sorted(BUILTIN_HANDLERS))
        raise RuntimeError(f"no handler for the steps {', '.join(missing)} (handlers: {known})")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay_s(self, attempt: int) -> float:
        """Exponential backoff with full jitter on the upper half."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return ceiling / 2 + random.random() * ceiling / 2


class PoisonMessage(Exception):
    """A message the mesh cannot run: `poison_input` (not a work item at all) or
    `schema_mismatch` (a work item whose spec or step is not one this mesh knows)."""

    def __init__(
        self, classification: str, error: str, task_id: str = "", item: work_pb2.WorkItem | None = None
    ) -> None:
        super().__init__(f"{classification}: {error}")
        self.classification = classification
        self.error = error
        self.task_id = task_id
        self.item = item  # the decoded item, for a schema mismatch


_LIMITS = Limits()


def check_work_item(data: bytes | None) -> work_pb2.WorkItem:
    """The work item in `data`, checked so that running it cannot fail on its shape; else PoisonMessage."""
    try:
        item = work_pb2.WorkItem.FromString(data or b"")
    except google.protobuf.message.DecodeError as exc:
        raise PoisonMessage("poison_input", f"not a WorkItem: {exc}") from exc
    spec = item.spec
    try:
        check_task_id(spec.task_id, "spec.task_id")
        # The deadline is not checked here: one that passed while queued is the runner's to
        # dead-letter as a timeout, not a malformed item.
        validate_spec(spec, _LIMITS, now_s=0.0)
    except InvalidArgument as exc:
        raise PoisonMessage("schema_mismatch", f"{exc.field}: {exc.reason}", spec.task_id, item) from exc
    steps = len(KINDS[spec.kind].steps)
    if not 0 <= item.step_index < steps:
        error = f"step_index: {item.step_index} is out of range for kind {spec.kind!r}"
        raise PoisonMessage("schema_mismatch", error, spec.task_id, item)
    return item


class Superseded(Exception):
    """The task's chain shows this item is stale (finished, cancelled, or taken over)."""

    def __init__(self, task_id: str, state: int = task_pb2.TASK_STATE_UNSPECIFIED) -> None:
        super().__init__(task_id)
        self.state = state


class Runner:
    def __init__(
        self,
        js: JetStreamContext,
        events: EventLog,
        worker_id: str,
        inference: inference_pb2_grpc.InferenceServiceStub | None,
        ack_wait_s: float,
        retry: RetryPolicy | None = None,
        sequencer: KeySequencer | None = None,
        children: ChildTasks | None = None,
        dead_letters: DeadLetterStore | None = None,
        webhooks: WebhookClient | None = None,
        handlers: HandlerResolver = builtin_handler,
    ) -> None:
        self._handlers = handlers
        self._webhooks = webhooks
        self._dead_letters = dead_letters or DeadLetterStore(js, events.nc)
        self._sequencer = sequencer
        self._children = children
        self._work = WorkQueue(events.nc, js)
        self._events = events
        self._worker_id = worker_id
        self._inference = inference
        self._ack_wait_s = ack_wait_s
        self._retry = retry or RetryPolicy()

    async def run(self, msg: Msg, item: work_pb2.WorkItem | None = None) -> None:
        """Run the work item in `msg` (`item` is its form checked by `check_work_item`, if the caller has it)."""
        item = item or check_work_item(msg.data)
        spec = item.spec
        kind = KINDS[spec.kind]
        step = kind.steps[item.step_index]
        attempt = msg.metadata.num_delivered if msg.metadata else 1
        if attempt > 1:
            METRICS.redeliveries.labels(step.pool).inc()
        chain = Chain(
            task_id=spec.task_id,
            sequence=item.last_event_sequence,
            stream_sequence=item.last_event_stream_sequence,
            attempt=attempt,
            worker_id=self._worker_id,
            step=step.name,
            traceparent=item.traceparent,
            work_item_sequence=msg.metadata.sequence.stream if msg.metadata and msg.metadata.sequence else 0,
            urgent=spec.priority_class == task_pb2.PRIORITY_CLASS_INTERACTIVE,
        )
        parent = extract_context({"traceparent": item.traceparent} if item.traceparent else None)
        token = otel_context.attach(parent)
        try:
            with bind_task(spec.task_id), step_span(f"step {step.name}"):
                await self._run(msg, item, kind, item.step_index, chain)
        finally:
            otel_context.detach(token)

    async def _run(self, msg: Msg, item: work_pb2.WorkItem, kind: TaskKind, index: int, chain: Chain) -> None:
        spec = item.spec
        try:
            await self._start(chain, kind, index)
        except Superseded as superseded:
            # A parked ordered task cancelled before its turn still hands its key on.
            await self._release_key(spec, superseded.state)
            await _ack(msg)
            return
        if spec.HasField("deadline") and spec.deadline.ToMicroseconds() / 1e6 < time.time():
            await self._dead_letter(
                msg, chain, kind, StepFailed("timeout", "deadline passed before the task ran", retryable=False)
            )
            return
        step = kind.steps[index]
        ticker = asyncio.create_task(_keep_in_progress(msg, self._ack_wait_s / 3))
        started = time.perf_counter()
        try:
            context = StepContext(
                spec=spec,
                carry=list(item.carry),
                attempt=chain.attempt,
                resume_from=chain.partials,
                emit_partial=(
                    (lambda output, confidence: chain.emit_live(self._events.nc, output, confidence))
                    if spec.qos == task_pb2.QOS_TIER_BEST_EFFORT
                    else lambda output, confidence: chain.emit(
                        self._events, task_pb2.TASK_STATE_RUNNING, output=output, partial_confidence=confidence
                    )
                ),
                inference=self._inference,
                children=self._children,
                webhooks=self._webhooks,
                traceparent=chain.traceparent,
                emit_children=lambda ids: chain.emit(self._events, task_pb2.TASK_STATE_RUNNING, child_task_ids=ids),
                checkpoint=chain.checkpoint,
                save_checkpoint=lambda state: self._checkpoint(chain, state),
                worker_id=self._worker_id,
            )
            handler = self._handlers(kind, index)
            if handler is None:
                raise StepFailed("bug", f"this runner has no handler for step {step.name!r} of {kind.name!r}", True)
            async with asyncio.timeout(kind.timeout_s(index) or None):
                outputs = await handler(context)
        except TimeoutError:
            # A hung call (a dependency that never answers): abandon this attempt and retry.
            message = f"step {step.name} ran past its {kind.timeout_s(index):.0f}s limit"
            await self._fail(msg, chain, kind, StepFailed("timeout", message, retryable=True))
            return
        except StepFailed as exc:
            await self._fail(msg, chain, kind, exc)
            return
        except ChainMoved:
            await self._on_chain_moved(msg, chain)
            return
        except asyncio.CancelledError:
            # Interrupted by a cancel notice (the scheduler already wrote CANCELLED)
            # or by shutdown; either way the item stays un-acked unless the chain is final.
            raise
        except Exception as exc:  # a bug in a step: retry, then fail
            log.exception("step raised")
            failure = StepFailed("bug", f"{type(exc).__name__}: {exc}", True)
            failure.__cause__ = exc
            await self._fail(msg, chain, kind, failure)
            return
        finally:
            ticker.cancel()
            elapsed_s = time.perf_counter() - started
            METRICS.step_seconds.labels(spec.kind, step.name, step.pool).observe(elapsed_s)
            log.info(
                "step finished",
                extra={"step": step.name, "pool": step.pool, "attempt": chain.attempt, "ms": round(elapsed_s * 1e3, 2)},
            )
        try:
            if index + 1 < len(kind.steps):
                await self._enqueue_next(item, kind, index + 1, chain, outputs)
            else:
                await chain.emit(
                    self._events,
                    task_pb2.TASK_STATE_SUCCEEDED,
                    output=outputs[0] if outputs else None,
                    partial_confidence=1.0,
                    final=True,
                )
                METRICS.tasks_finished.labels(spec.kind, "SUCCEEDED").inc()
                await self._release_key(spec, task_pb2.TASK_STATE_SUCCEEDED)
        except ChainMoved:
            await self._on_chain_moved(msg, chain)
            return
        await _ack(msg)

    async def _release_key(self, spec: task_pb2.TaskSpec, state: int) -> None:
        if spec.ordering_key and self._sequencer is not None:
            await self._sequencer.release(spec, state)

    async def _checkpoint(self, chain: Chain, state: bytes) -> None:
        """Store `state` in the chain (fenced, like every event): a redelivered attempt resumes from it."""
        if len(state) > MAX_CHECKPOINT_BYTES:
            raise StepFailed(
                "invalid_output", f"checkpoint of {len(state)} bytes is over {MAX_CHECKPOINT_BYTES}", False
            )
        await chain.emit(self._events, task_pb2.TASK_STATE_RUNNING, checkpoint=state)
        chain.checkpoint = state

    async def _start(self, chain: Chain, kind: TaskKind, index: int) -> None:
        """Write RUNNING; on a moved chain, decide whether this item is still ours to run."""
        try:
            await chain.emit(self._events, task_pb2.TASK_STATE_RUNNING)
            return
        except ChainMoved:
            pass  # someone wrote since this item was queued: look at the chain below
        last = await self._events.last(chain.task_id)
        if last is None or last.event.state in TERMINAL_STATES:
            raise Superseded(chain.task_id, last.event.state if last else task_pb2.TASK_STATE_UNSPECIFIED)
        last_index = kind.step_index(last.event.step)
        if last_index > index:
            raise Superseded(chain.task_id)  # a later step already started: this item is a stale copy
        if last_index == index:
            same_item = chain.work_item_sequence != 0 and last.event.work_item_sequence == chain.work_item_sequence
            if chain.attempt == 1 and not same_item:
                # First delivery of another copy of the item (a priority boost, or a re-published
                # admission) while the step already runs: the other copy owns the task. The same
                # item seen again is a redelivery, whatever its count says (a broker restart can
                # lose the count).
                raise Superseded(chain.task_id)
            # A redelivery: an earlier attempt of this step died mid-way. Count what it streamed.
            chain.partials, chain.checkpoint = await self._resume_point(chain.task_id, index, kind)
        chain.sequence, chain.stream_sequence = last.event.sequence, last.stream_sequence
        try:
            await chain.emit(self._events, task_pb2.TASK_STATE_RUNNING)
        except ChainMoved as exc:
            raise Superseded(chain.task_id) from exc

    async def _resume_point(self, task_id: str, index: int, kind: TaskKind) -> tuple[int, bytes | None]:
        """What earlier attempts of step `index` left: the partials they streamed, the latest checkpoint."""
        step = kind.steps[index].name
        count = 0
        checkpoint = None
        async for stored in self._events.read(task_id):
            event = stored.event
            if event.step != step:
                continue
            if event.HasField("output") and not event.final:
                count += 1
            if event.checkpoint:
                checkpoint = event.checkpoint
        return count, checkpoint

    async def _enqueue_next(
        self, item: work_pb2.WorkItem, kind: TaskKind, index: int, chain: Chain, outputs: list[task_pb2.TaskOutput]
    ) -> None:
        spec = item.spec
        following = work_pb2.WorkItem(
            spec=spec,
            step_index=index,
            last_event_sequence=chain.sequence,
            last_event_stream_sequence=chain.stream_sequence,
            carry=outputs,
            traceparent=item.traceparent,
            admitted=item.admitted,
        )
        following.enqueued.GetCurrentTime()
        await self._work.put_item(following)

    async def _fail(self, msg: Msg, chain: Chain, kind: TaskKind, exc: StepFailed) -> None:
        error = task_pb2.TaskError(error_class=exc.error_class, message=exc.message, retryable=exc.retryable)
        try:
            if exc.retryable and chain.attempt < kind.attempts(max(0, kind.step_index(chain.step))):
                delay_s = self._retry.delay_s(chain.attempt)
                retry_after = {"retry_after": duration(delay_s)}
                await chain.emit(self._events, task_pb2.TASK_STATE_RETRYING, error=error, **retry_after)
                await msg.nak(delay=delay_s)
                return
            await self._dead_letter(msg, chain, kind, exc)
        except ChainMoved:
            await self._on_chain_moved(msg, chain)

    async def _dead_letter(self, msg: Msg, chain: Chain, kind: TaskKind, exc: StepFailed) -> None:
        """Retries exhausted or a fatal error: store the diagnosis, end the chain, then ack."""
        spec = work_pb2.WorkItem.FromString(msg.data).spec
        history = [stored.event async for stored in self._events.read(chain.task_id)]
        worker_ids = {e.worker_id for e in history if e.worker_id}
        fault = fingerprint(exc.error_class, exc.message, exc.__cause__)
        error = task_pb2.TaskError(error_class=exc.error_class, message=exc.message, retryable=exc.retryable)
        await self._end_dead_lettered(chain, spec, error, fault, worker_ids)
        METRICS.tasks_finished.labels(kind.name, "DEAD_LETTERED").inc()
        await _ack(msg)

    async def _end_dead_lettered(
        self, chain: Chain, spec: task_pb2.TaskSpec, error: task_pb2.TaskError, fault: str, worker_ids: set[str]
    ) -> None:
        """Store the task's dead letter, end its chain DEAD_LETTERED (fenced), then alert.

        The letter goes first, so a task that ended dead-lettered always has one (a crash in
        between leaves the item unacked: it is redelivered and this runs again). If the chain
        moved on meanwhile (a cancel, another runner) the letter is withdrawn and ChainMoved
        raised: no task that did not end dead-lettered has a letter to replay."""
        classification = classify(error.error_class)
        letter = deadletter_pb2.DeadLetter(
            task_id=chain.task_id,
            spec=spec,
            step=chain.step,
            error_class=error.error_class,
            message=error.message,
            fingerprint=fault,
            attempts=chain.attempt,
            worker_ids=sorted(worker_ids | {self._worker_id}),
            trace_id=chain.traceparent.split("-")[1] if chain.traceparent.count("-") == 3 else "",
            classification=classification,
            runbook=runbook_for(classification),
            replay_of=spec.labels.get(REPLAY_OF_LABEL, ""),
        )
        letter.dead_at.GetCurrentTime()
        sequence = await self._dead_letters.record(letter, alert=False, fence=chain.stream_sequence)
        try:
            await chain.emit(self._events, task_pb2.TASK_STATE_DEAD_LETTERED, error=error, final=True)
        except ChainMoved:
            await self._dead_letters.withdraw(chain.task_id, sequence)
            raise
        log.error(
            "task dead-lettered",
            extra={"error_class": error.error_class, "classification": classification, "runbook": letter.runbook},
        )
        await self._dead_letters.alert(letter)

    async def end_unrunnable(self, msg: Msg, poison: PoisonMessage) -> bool:
        """Dead-letter (schema_mismatch) the task of a work item that decodes but cannot run here
        (an unknown kind or an invalid spec, e.g. across an upgrade), so it does not stay QUEUED
        forever. True if it ended it (see `end_own`)."""
        item = poison.item
        if item is None or poison.classification != "schema_mismatch":
            return False
        attempt = msg.metadata.num_delivered if msg.metadata else 1
        sequence = msg.metadata.sequence.stream if msg.metadata and msg.metadata.sequence else 0
        return await self.end_own(item, "schema_mismatch", poison.error, attempt, sequence)

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
        chain = Chain(
            task_id=spec.task_id,
            sequence=last.event.sequence,
            stream_sequence=last.stream_sequence,
            attempt=attempt,
            worker_id=self._worker_id,
            step=last.event.step,
            traceparent=item.traceparent,
            work_item_sequence=work_item_sequence,
        )
        error = task_pb2.TaskError(error_class=error_class, message=message, retryable=False)
        try:
            await self._end_dead_lettered(chain, spec, error, fingerprint(error_class, message), set())
        except ChainMoved:
            return False  # someone wrote meanwhile (a cancel): the chain is theirs
        METRICS.tasks_finished.labels(spec.kind if spec.kind in KINDS else "unknown", "DEAD_LETTERED").inc()
        return True

    async def _on_chain_moved(self, msg: Msg, chain: Chain) -> None:
        """Someone else wrote to the chain mid-step: a cancel, or a runner that took over."""
        last: StoredEvent | None = await self._events.last(chain.task_id)
        if last is not None and last.event.state in TERMINAL_STATES:
            await _ack(msg)
        # Otherwise another runner owns the task now: leave the item to it.


async def _ack(msg: Msg) -> None:
    """Ack and wait for the server to confirm it (a lost ack would mean a rerun)."""
    try:
        await msg.ack_sync(timeout=5.0)
    except nats.errors.MsgAlreadyAckdError:
        pass  # acked earlier on this path (e.g. a cancelled step): nothing left to confirm
    except nats.errors.TimeoutError as exc:
        raise Unavailable("ack was not confirmed") from exc


async def _keep_in_progress(msg: Msg, every_s: float) -> None:
    """Extend the item's ack-wait while its step runs, so a slow step is not redelivered."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await msg.in_progress()
        except Exception:  # a missed extension only risks an early redelivery, which is fenced
            log.debug("in-progress ack failed", exc_info=True)
