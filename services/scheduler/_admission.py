"""Admission: validate, deduplicate, record the task, enqueue its first step.

A submit is acknowledged only after the task's listing entry, its QUEUED event (which
carries the spec) and its first work item are stored in JetStream, in that order (the
idempotency key's claim, when there is one, is written beside the listing entry). Every
write is idempotent, so a client retry after any crash finishes a half-done admission
instead of creating a second task; without a retry the reconciler (`_reconcile`) finds a
task left QUEUED without a work item through its listing entry, written first.

Task ids are one namespace for the whole mesh (`mesh.tasks._ids`): the gateway hands in a
client-chosen id already scoped to its tenant, and an id another tenant's task has is refused
(Conflict naming `spec.task_id`), never answered as that task. Idempotency keys are recorded
per tenant (`<tenant>.<sha256 of the key>`), so two tenants' keys never meet either.

An idempotency key is stored with a fingerprint of the request it came with: the same
request again returns the original task; another request under the same key is refused
as a Conflict (FAILED_PRECONDITION / HTTP 409) naming `idempotency_key`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import Sequence

import nats.errors
import nats.js.errors
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js.kv import KeyValue

from mesh.errors import Conflict, InvalidArgument, MeshError, Unavailable
from mesh.fabric import (
    REPLAY_OF_LABEL,
    ChainMoved,
    EventLog,
    KeySequencer,
    StoredEvent,
    TaskIndex,
    WorkQueue,
    item_subject,
)
from mesh.priority import class_name
from mesh.tasks import SCHEMA_VERSION, Limits, new_task_id, validate_spec
from mesh.telemetry import METRICS, current_traceparent, failed, get_logger, span, task_attributes
from mesh.v1 import scheduler_pb2, task_pb2, work_pb2
from services.scheduler._flow import FlowControl, FlowLimits
from services.scheduler._userwork import Resolved, UserPayloads

log = get_logger(__name__)


class Admitter:
    def __init__(
        self,
        work: WorkQueue,
        events: EventLog,
        idempotency: KeyValue,
        limits: Limits,
        flow: FlowControl | None = None,
        sequencer: KeySequencer | None = None,
        index: TaskIndex | None = None,
        user: UserPayloads | None = None,
    ) -> None:
        self._user = user
        self._index = index
        self._work = work
        self._sequencer = sequencer
        self._events = events
        self._flow = flow or FlowControl(FlowLimits())
        self._idempotency = idempotency
        self._limits = limits

    async def admit(self, requested: task_pb2.TaskSpec, traceparent: str = "") -> scheduler_pb2.AdmitTaskResponse:
        """Admit one spec, in the trace of its submit (`traceparent`; default: the current one)."""
        with span(f"admit {requested.kind}", lambda: task_attributes(requested), parent=traceparent or None) as current:
            try:
                version = await self._validate(requested)
                self._flow.admit(requested.tenant, requested.priority_class)
                try:
                    return await self._admit_valid(requested, version)
                finally:
                    self._flow.settled(requested.tenant, requested.priority_class)
            except MeshError as exc:
                failed(current, exc)
                raise

    async def admit_many(self, specs: list[task_pb2.TaskSpec]) -> list[scheduler_pb2.AdmitTaskResponse]:
        """Validate all, then admit all concurrently (their JetStream writes pipeline)."""
        versions = []
        memo: Resolved = {}  # one schema lookup per (type, version) for the whole batch
        for index, spec in enumerate(specs):
            try:
                versions.append(await self._validate(spec, memo))
            except InvalidArgument as exc:
                raise InvalidArgument(f"specs[{index}].{exc.field.removeprefix('spec.')}", exc.reason) from exc
        demand = Counter((spec.tenant, spec.priority_class) for spec in specs)
        counted: list[tuple[tuple[str, int], int]] = []
        try:
            for (tenant, priority_class), count in demand.items():
                self._flow.admit(tenant, priority_class, count)
                counted.append(((tenant, priority_class), count))
            admitted = (self._admit_traced(spec, version) for spec, version in zip(specs, versions, strict=True))
            return list(await asyncio.gather(*admitted))
        finally:
            for (tenant, settled_class), count in counted:
                self._flow.settled(tenant, settled_class, count)

    async def _admit_traced(self, spec: task_pb2.TaskSpec, version: int) -> scheduler_pb2.AdmitTaskResponse:
        """One task of a batch call, in a trace of its own linked to the call's."""
        with span(f"admit {spec.kind}", lambda: task_attributes(spec), new_trace=True):
            return await self._admit_valid(spec, version)

    async def admit_each(
        self, specs: list[task_pb2.TaskSpec], traceparents: Sequence[str] = ()
    ) -> list[scheduler_pb2.AdmitTaskResponse | MeshError]:
        """Admit every spec on its own, concurrently (their writes share group commits), each in
        its own trace (`traceparents`, in order): one spec's refusal is its own outcome. A failure
        no class of `mesh.errors` names is one too, as the base MeshError (INTERNAL), so no caller
        of the batch is left without an answer."""
        parents = list(traceparents)[: len(specs)] + [""] * max(0, len(specs) - len(traceparents))
        outcomes = await asyncio.gather(
            *(self.admit(spec, parent) for spec, parent in zip(specs, parents, strict=True)), return_exceptions=True
        )
        answers: list[scheduler_pb2.AdmitTaskResponse | MeshError] = []
        for spec, outcome in zip(specs, outcomes, strict=True):
            if isinstance(outcome, scheduler_pb2.AdmitTaskResponse | MeshError):
                answers.append(outcome)
            elif isinstance(outcome, Exception):
                log.error("admission failed", extra={"task": spec.task_id}, exc_info=outcome)
                answers.append(MeshError(f"admission failed: {type(outcome).__name__}"))
            else:
                raise outcome  # cancelled: the call is going away
        return answers

    async def _validate(self, spec: task_pb2.TaskSpec, memo: Resolved | None = None) -> int:
        """Validate `spec`; the schema version its payload was checked against."""
        if self._user is not None:
            await self._user.know(spec)
        validate_spec(spec, self._limits)
        return await self._user.check(spec, memo=memo) if self._user is not None else spec.schema_version

    async def _admit_valid(self, requested: task_pb2.TaskSpec, version: int = 0) -> scheduler_pb2.AdmitTaskResponse:
        spec = self._complete(requested, version)
        listed = False
        if spec.idempotency_key:
            # The claim and the listing entry side by side: one fsync'd wait instead of two. The
            # entry written for a key that turns out to be used is taken back (were that to fail,
            # it names a task that never gets an event, which the listing and the reconciler skip).
            claim = self._claim_idempotency_key(spec, request_fingerprint(requested))
            original, _ = await asyncio.gather(claim, self._list(spec))
            listed = True
            if original is not None:
                await self._unlist(spec)
                spec.task_id = original
                return await self._resume(spec)
        if not await self._store(spec, listed=listed):
            # The task id exists: a retried submit with a client-chosen id.
            return await self._resume(spec)
        METRICS.admitted(spec.kind, class_name(spec.priority_class), spec.tenant)
        return scheduler_pb2.AdmitTaskResponse(task_id=spec.task_id, sequence=1)

    async def _list(self, spec: task_pb2.TaskSpec) -> None:
        """Write the task's listing entry (and wait for it)."""
        if self._index is None:
            return
        try:
            await self._index.add(spec.tenant, spec.task_id, urgent=_urgent(spec))
        except nats.errors.Error as exc:  # any broker failure: retryable for the caller
            raise Unavailable(f"task index did not store the task: {exc}") from exc

    async def _unlist(self, spec: task_pb2.TaskSpec) -> None:
        """Take back a listing entry written for an id that gets no task."""
        if self._index is None:
            return
        try:
            await self._index.remove(spec.tenant, spec.task_id)
        except nats.errors.Error:
            log.warning("could not take back a listing entry", extra={"task": spec.task_id}, exc_info=True)

    async def _store(self, spec: task_pb2.TaskSpec, listed: bool = False) -> bool:
        """Write the listing entry (unless `listed`), the QUEUED event (it carries the spec), then
        the first work item. False if the task id already has a chain (no event or item is
        written then)."""
        if not listed:
            # Before the QUEUED event: a task the mesh admits is always listed, and the reconciler,
            # which reads the listing entries, sees every task whose admission a crash cut short.
            await self._list(spec)
        queued = task_pb2.TaskEvent(
            task_id=spec.task_id,
            sequence=1,
            state=task_pb2.TASK_STATE_QUEUED,
            spec=spec,
            traceparent=current_traceparent(),
        )
        queued.timestamp.GetCurrentTime()
        try:
            stream_sequence = await self._events.append(queued, after_stream_sequence=0, urgent=_urgent(spec))
        except ChainMoved as exc:
            if await self._unlist_if_foreign(spec):
                # Never "deduplicated" into another tenant's task, which would then answer for
                # this one while this one never runs. The gateway scopes client-chosen ids to
                # their tenant, so only a caller that bypasses it can get here.
                raise Conflict(
                    "spec.task_id: another tenant's task has this id; leave it out for a new id",
                    field="spec.task_id",
                ) from exc
            return False
        except Unavailable as exc:
            # The broker refusing a message for its size is bad input, never a retryable fault.
            if isinstance(exc.__cause__, nats.errors.MaxPayloadError):
                raise InvalidArgument("spec", "is too large for the broker's message size limit") from exc
            raise
        await self._enqueue(queued, stream_sequence)
        return True

    async def _unlist_if_foreign(self, spec: task_pb2.TaskSpec) -> bool:
        """True if another tenant's task already has this id; then take back the listing entry
        just written, so this tenant's list never shows the other's task."""
        first = await self._events.first(spec.task_id)
        if first is None or first.event.spec.tenant == spec.tenant:
            return False
        await self._unlist(spec)  # the listing filters by the task's own tenant: a stale entry shows nothing
        return True

    def _complete(self, requested: task_pb2.TaskSpec, version: int = 0) -> task_pb2.TaskSpec:
        spec = task_pb2.TaskSpec()
        spec.CopyFrom(requested)
        spec.task_id = spec.task_id or new_task_id()
        spec.priority_class = spec.priority_class or task_pb2.PRIORITY_CLASS_STANDARD
        spec.qos = spec.qos or task_pb2.QOS_TIER_GUARANTEED
        spec.schema_version = version or spec.schema_version or SCHEMA_VERSION
        if not spec.HasField("deadline"):
            spec.deadline.FromNanoseconds(int((time.time() + self._limits.default_ttl_s) * 1e9))
        return spec

    async def _claim_idempotency_key(self, spec: task_pb2.TaskSpec, fingerprint: str) -> str | None:
        """Record key → (task id, request fingerprint); return the original task id if the key
        was used before with the same request. Conflict if it was used with another request."""
        digest = hashlib.sha256(spec.idempotency_key.encode()).hexdigest()[:48]
        key = f"{spec.tenant}.{digest}"
        record = json.dumps({"task_id": spec.task_id, "fingerprint": fingerprint}, separators=(",", ":"))
        try:
            await self._idempotency.create(key, record.encode())
            return None
        except nats.js.errors.KeyWrongLastSequenceError:
            pass  # the key was used before: read what it was used for
        except nats.errors.Error as exc:  # any broker failure: retryable for the caller
            raise Unavailable(f"idempotency store did not answer: {exc}") from exc
        try:
            entry = await self._idempotency.get(key)
        except nats.errors.Error as exc:
            raise Unavailable(f"idempotency store did not answer: {exc}") from exc
        original, original_fingerprint = _parse_idempotency_record(entry.value or b"")
        if original_fingerprint and original_fingerprint != fingerprint:
            raise Conflict(
                f"idempotency_key: already used for a different request (task {original}); "
                "use a new key for a new request",
                field="idempotency_key",
            )
        return original or None

    async def _resume(self, spec: task_pb2.TaskSpec) -> scheduler_pb2.AdmitTaskResponse:
        """Answer a repeated submit; finish the admission if a crash cut it short."""
        METRICS.tasks_deduplicated.inc()
        last = await self._events.last(spec.task_id)
        if last is None:
            # Key recorded, task never stored: admit it now under the original id.
            await self._store(spec)
        elif last.event.sequence == 1 and last.event.state == task_pb2.TASK_STATE_QUEUED:
            # Nothing ran yet; the first work item may never have been stored. Re-publishing is
            # safe: inside the duplicate window JetStream drops it, after it the event chain
            # fences a second runner out.
            await self._enqueue(last.event, last.stream_sequence)
        return scheduler_pb2.AdmitTaskResponse(task_id=spec.task_id, deduplicated=True, sequence=1)

    async def requeue(self, queued: StoredEvent) -> bool:
        """Store the first work item of a task whose admission stopped after its QUEUED event
        (the reconciler calls this); False when the broker already held it. Safe for the same
        reasons as `_resume`."""
        return await self._enqueue(queued.event, queued.stream_sequence)

    async def _enqueue(self, queued: task_pb2.TaskEvent, stream_sequence: int) -> bool:
        spec = queued.spec
        item = work_pb2.WorkItem(
            spec=spec,
            step_index=0,
            last_event_sequence=queued.sequence,
            last_event_stream_sequence=stream_sequence,
            traceparent=queued.traceparent,
            admitted=queued.timestamp,
            enqueued=_now(),
        )
        if spec.ordering_key and self._sequencer is not None:
            subject = item_subject(item)
            replay_of = spec.labels.get(REPLAY_OF_LABEL, "")
            if replay_of and await self._sequencer.take_over(replay_of, item, subject):
                return True
            await self._sequencer.park(item, subject)
            return True
        return await self._work.put_item(item)


def request_fingerprint(requested: task_pb2.TaskSpec) -> str:
    """sha256 of the work a request asks for: its kind, payload, ordering key and (client-chosen)
    task id. How it is to be scheduled may differ between two tries of one request — the
    deadline (clients compute it from "now"), priority, QoS tier, labels, and the parent (a
    fan-out's children may be admitted ahead of it) — and then the original task stands."""
    work = task_pb2.TaskSpec(
        kind=requested.kind,
        payload=requested.payload,
        ordering_key=requested.ordering_key,
        task_id=requested.task_id,
    )
    return hashlib.sha256(work.SerializeToString(deterministic=True)).hexdigest()


def _parse_idempotency_record(value: bytes) -> tuple[str, str]:
    """(task id, fingerprint) from a stored record; a record of an older tidemesh is the bare
    task id (no fingerprint: any request under its key is taken as the same)."""
    if not value.startswith(b"{"):
        return value.decode(), ""
    try:
        record = json.loads(value)
        return str(record["task_id"]), str(record.get("fingerprint", ""))
    except (ValueError, KeyError, TypeError) as exc:
        # Retrying cannot help, and guessing could hand back another request's task.
        raise Conflict(
            "idempotency_key: its stored record is unreadable; use a new key", field="idempotency_key"
        ) from exc


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _urgent(spec: task_pb2.TaskSpec) -> bool:
    """An interactive task's admission writes skip group commit (they never wait for a batch)."""
    return spec.priority_class == task_pb2.PRIORITY_CLASS_INTERACTIVE
