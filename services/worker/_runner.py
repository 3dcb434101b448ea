"""Running one work item: claim the step, run its handler, store its output, then ack.

The input item is acknowledged (and the ack confirmed by the server) only after its output
is durably stored: the next step's work item, or the final event. On any failure before
that, nothing is acked and JetStream redelivers. The parts are read alone: the item's shape
(`_items`), who owns the step (`_ownership`), what a failure does next (`_retry`), the dead
letter (`_deadletter`), acks (`_acks`); the fabric is reached through `mesh.fabric`'s ports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind

from mesh import failpoints
from mesh.fabric import (
    WORK_STREAM,
    Chain,
    ChainMoved,
    DeadLetterSink,
    DeadLetterStore,
    Delivery,
    EventLog,
    EventStore,
    KeySequencer,
    Publisher,
    WorkQueue,
    WorkSink,
    fingerprint,
)
from mesh.priority import class_name
from mesh.rpc import duration
from mesh.tasks import KINDS, TaskKind
from mesh.telemetry import (
    METRICS,
    bind_task,
    current_traceparent,
    fail_current,
    failed,
    get_logger,
    messaging_attributes,
    span,
    task_attributes,
)
from mesh.v1 import task_pb2, work_pb2
from services.worker._acks import ack, attempt_of, keep_in_progress, stream_sequence_of
from services.worker._children import ChildTasks
from services.worker._deadletter import DeadLettering, classification_label, error_label
from services.worker._items import PoisonMessage, check_work_item, next_item
from services.worker._ownership import Superseded, claim, is_over
from services.worker._retry import GiveUp, RetryPolicy
from services.worker._steps import BUILTIN_HANDLERS, InferenceClient, StepContext, StepFailed, StepHandler
from services.worker._webhook import WebhookClient

log = get_logger(__name__)

# The handler of step `index` of a kind in this runner, or None if it runs none.
HandlerResolver = Callable[[TaskKind, int], StepHandler | None]
MAX_CHECKPOINT_BYTES = 64 * 1024
STEP_MEMORY = "worker-step-memory"  # failpoint: grow past a memory cap before a step (mesh.failpoints)
STEP_CPU = "worker-step-cpu"  # failpoint: keep a thread busy before a step, for a CPU cap (mesh.failpoints)

__all__ = ["MAX_CHECKPOINT_BYTES", "PoisonMessage", "RetryPolicy", "Runner", "check_work_item"]


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


class Runner:
    def __init__(
        self,
        events: EventStore,
        work: WorkSink,
        dead_letters: DeadLetterSink,
        live: Publisher,
        worker_id: str,
        inference: InferenceClient | None,
        ack_wait_s: float,
        *,
        retry: RetryPolicy | None = None,
        sequencer: KeySequencer | None = None,
        children: ChildTasks | None = None,
        webhooks: WebhookClient | None = None,
        handlers: HandlerResolver = builtin_handler,
    ) -> None:
        self._events = events
        self._work = work
        self._live = live
        self._dead = DeadLettering(events, dead_letters, worker_id)
        self._worker_id = worker_id
        self._inference = inference
        self._ack_wait_s = ack_wait_s
        self._retry = retry or RetryPolicy()
        self._sequencer = sequencer
        self._children = children
        self._webhooks = webhooks
        self._handlers = handlers

    @classmethod
    def on_fabric(
        cls,
        js: JetStreamContext,
        events: EventLog,
        worker_id: str,
        inference: InferenceClient | None,
        ack_wait_s: float,
        **options: Any,
    ) -> Runner:
        """A runner over the NATS fabric: the event log's connection, its work queue and dead letters."""
        nc = events.nc
        return cls(events, WorkQueue(nc, js), DeadLetterStore(js, nc), nc, worker_id, inference, ack_wait_s, **options)

    async def run(self, msg: Delivery, item: work_pb2.WorkItem | None = None) -> None:
        """Run the work item in `msg` (`item` is its form checked by `check_work_item`, if the caller has it)."""
        item = item or check_work_item(msg.data)
        spec = item.spec
        kind = KINDS[spec.kind]
        step = kind.steps[item.step_index]
        attempt = attempt_of(msg)
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
            work_item_sequence=stream_sequence_of(msg),
            urgent=spec.priority_class == task_pb2.PRIORITY_CLASS_INTERACTIVE,
        )

        def attributes() -> dict[str, Any]:  # built only when the spans are recorded
            return task_attributes(spec, step=step.name, pool=step.pool, attempt=attempt)

        def consumed() -> dict[str, Any]:
            return {**attributes(), **messaging_attributes("process", msg.subject)}

        # The consumer side of the JetStream hop (its parent: the producer span the item carries),
        # then the step; what the step writes and publishes continues the step's span.
        with (
            bind_task(spec.task_id, spec.tenant),
            span(f"process {WORK_STREAM}", consumed, kind=SpanKind.CONSUMER, parent=item.traceparent),
            span(f"step {step.name}", attributes) as current,
        ):
            if current is not None:
                chain.traceparent = current_traceparent()
            await self._run(msg, item, kind, item.step_index, chain)

    async def _run(self, msg: Delivery, item: work_pb2.WorkItem, kind: TaskKind, index: int, chain: Chain) -> None:
        spec = item.spec
        try:
            await claim(self._events, chain, kind, index)
        except Superseded as superseded:
            # A parked ordered task cancelled before its turn still hands its key on.
            await self._release_key(spec, superseded.state)
            await ack(msg)
            return
        if spec.HasField("deadline") and spec.deadline.ToMicroseconds() / 1e6 < time.time():
            await self._dead_letter(
                msg, chain, kind, StepFailed("timeout", "deadline passed before the task ran", retryable=False)
            )
            return
        step = kind.steps[index]
        if chain.attempt == 1 and item.HasField("enqueued"):  # a retry's wait includes its backoff: not counted
            wait_s = time.time() - item.enqueued.ToNanoseconds() / 1e9
            METRICS.waited(step.pool, class_name(spec.priority_class), wait_s)
        ticker = asyncio.create_task(keep_in_progress(msg, self._ack_wait_s / 3))
        started = time.perf_counter()
        try:
            if failpoints.armed(STEP_MEMORY):
                await failpoints.grow(STEP_MEMORY)
            if failpoints.armed(STEP_CPU):
                await failpoints.spin(STEP_CPU)
            handler = self._handlers(kind, index)
            if handler is None:
                raise StepFailed("bug", f"this runner has no handler for step {step.name!r} of {kind.name!r}", True)
            try:
                async with asyncio.timeout(kind.timeout_s(index) or None):
                    outputs = await handler(self._context(item, chain))
            finally:  # counted before the outcome moves the task on (a retry, a dead letter, the next step)
                METRICS.step_ran(spec.kind, step.name, step.pool, time.perf_counter() - started)
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
            log.info(
                "step finished",
                extra={"step": step.name, "pool": step.pool, "attempt": chain.attempt, "ms": round(elapsed_s * 1e3, 2)},
            )
        try:
            if index + 1 < len(kind.steps):
                await self._work.put_item(next_item(item, chain.sequence, chain.stream_sequence, outputs))
            else:
                await chain.emit(
                    self._events,
                    task_pb2.TASK_STATE_SUCCEEDED,
                    output=outputs[0] if outputs else None,
                    partial_confidence=1.0,
                    final=True,
                )
                METRICS.finished(spec.kind, "SUCCEEDED", spec.tenant)
                await self._release_key(spec, task_pb2.TASK_STATE_SUCCEEDED)
        except ChainMoved:
            await self._on_chain_moved(msg, chain)
            return
        await ack(msg)

    def _context(self, item: work_pb2.WorkItem, chain: Chain) -> StepContext:
        spec = item.spec
        if spec.qos == task_pb2.QOS_TIER_BEST_EFFORT:
            emit_partial = lambda output, confidence: chain.emit_live(self._live, output, confidence)  # noqa: E731
        else:
            emit_partial = lambda output, confidence: chain.emit(  # noqa: E731
                self._events, task_pb2.TASK_STATE_RUNNING, output=output, partial_confidence=confidence
            )
        return StepContext(
            spec=spec,
            carry=list(item.carry),
            attempt=chain.attempt,
            resume_from=chain.partials,
            emit_partial=emit_partial,
            inference=self._inference,
            children=self._children,
            webhooks=self._webhooks,
            traceparent=chain.traceparent,
            emit_children=lambda ids: chain.emit(self._events, task_pb2.TASK_STATE_RUNNING, child_task_ids=ids),
            checkpoint=chain.checkpoint,
            save_checkpoint=lambda state: self._checkpoint(chain, state),
            worker_id=self._worker_id,
        )

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

    async def _fail(self, msg: Delivery, chain: Chain, kind: TaskKind, exc: StepFailed) -> None:
        max_attempts = kind.attempts(max(0, kind.step_index(chain.step)))
        move = self._retry.after(retryable=exc.retryable, attempt=chain.attempt, max_attempts=max_attempts)
        fail_current(exc)
        pool = kind.steps[max(0, kind.step_index(chain.step))].pool
        METRICS.step_failed(
            kind.name,
            chain.step,
            pool,
            error_label(exc.error_class),
            classification_label(exc.error_class),
            retry=not isinstance(move, GiveUp),
        )
        # Kept whatever the sampling ratio: a failing attempt's trace is the one worth reading.
        what = "dead-letter" if isinstance(move, GiveUp) else "retry"
        attributes = {
            "tidemesh.task.id": chain.task_id,
            "tidemesh.kind": kind.name,
            "tidemesh.step": chain.step,
            "tidemesh.attempt": chain.attempt,
            "tidemesh.error.class": exc.error_class,
        }
        with span(f"{what} {chain.step}", attributes, keep=True) as current:
            failed(current, exc)
        try:
            if isinstance(move, GiveUp):
                await self._dead_letter(msg, chain, kind, exc)
                return
            error = task_pb2.TaskError(error_class=exc.error_class, message=exc.message, retryable=exc.retryable)
            await chain.emit(
                self._events, task_pb2.TASK_STATE_RETRYING, error=error, retry_after=duration(move.delay_s)
            )
            await msg.nak(delay=move.delay_s)
        except ChainMoved:
            await self._on_chain_moved(msg, chain)

    async def _dead_letter(self, msg: Delivery, chain: Chain, kind: TaskKind, exc: StepFailed) -> None:
        """Retries exhausted or a fatal error: store the diagnosis, end the chain, then ack."""
        spec = work_pb2.WorkItem.FromString(msg.data).spec
        error = task_pb2.TaskError(error_class=exc.error_class, message=exc.message, retryable=exc.retryable)
        await self._dead.end(chain, spec, error, fingerprint(exc.error_class, exc.message, exc.__cause__))
        METRICS.dead_lettered(kind.name, classification_label(exc.error_class), spec.tenant)
        await ack(msg)

    async def end_unrunnable(self, msg: Delivery, poison: PoisonMessage) -> bool:
        """Dead-letter (schema_mismatch) the task of a work item that decodes but cannot run here
        (an unknown kind or an invalid spec, e.g. across an upgrade), so it does not stay QUEUED
        forever. True if it ended it (see `DeadLettering.end_own`)."""
        item = poison.item
        if item is None or poison.classification != "schema_mismatch":
            return False
        return await self._dead.end_own(item, "schema_mismatch", poison.error, attempt_of(msg), stream_sequence_of(msg))

    async def _on_chain_moved(self, msg: Delivery, chain: Chain) -> None:
        """Someone else wrote to the chain mid-step: a cancel, or a runner that took over."""
        if await is_over(self._events, chain.task_id):
            await ack(msg)
        # Otherwise another runner owns the task now: leave the item to it.
