"""The mesh side of the worker protocol: sessions of workers that attach over gRPC.

Sessions live in worker processes (`services.worker --sessions`): they hold the worker role's
NATS rights (events, work, acks) that the gateway, which authenticates workers and relays their
streams (`services.gateway._sessions.SessionProxy`), does not have.

A session is one attached worker, in any language. The mesh side holds everything that makes a
step safe — the JetStream consumers, the fenced event chain, the ack after the output is
stored, retries, dead letters, ordering keys — by running the same `Dispatcher` and `Runner`
a built-in worker runs, with one difference: the step's handler is the remote worker. Each
step becomes an `Assignment` on the session's stream; the worker's partials and checkpoints
are written to the chain as they arrive and confirmed (`ReportAck`), its result or failure
ends the step. So every guarantee a built-in kind has holds for a worker in another language.

A session outlives its stream for `resume_window_s`: a worker that reconnects with its session
id gets its open assignments again and resends what was not confirmed. A session that does not
come back, or stops sending heartbeats, is ended: its running steps are cancelled and their work
items handed back to JetStream, which redelivers them to another worker (resuming from the
stored checkpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum

import google.protobuf.message
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from mesh.errors import InvalidArgument, MeshError, NotFound, PermissionDenied
from mesh.fabric import (
    SESSION_ENTRY_TTL_S,
    WORK_PREFIX,
    WORK_STREAM,
    ChainMoved,
    DeadLetterStore,
    EventLog,
    KeySequencer,
    KindStore,
    Topology,
    parse_work_subject,
)
from mesh.priority import CLASS_NAMES
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with, duration
from mesh.tasks import TaskKind, user_pool
from mesh.telemetry import METRICS, get_logger
from mesh.v1 import session_pb2, session_pb2_grpc, task_pb2, work_pb2
from services.worker._children import ChildTasks
from services.worker._deadletter import DeadLettering
from services.worker._dispatch import Dispatcher
from services.worker._runner import Runner
from services.worker._steps import StepContext, StepFailed, StepHandler

log = get_logger(__name__)

# The input schema versions registered for a message type (the schema registry's answer).
VersionsOf = Callable[[str], Awaitable[list[int]]]
MAX_CAPACITY = 1024
ATTACH_TIMEOUT_S = 10.0
USER_POOL_PREFIX = "u-"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class SessionState(Enum):
    CONNECTED = "connected"
    DETACHED = "detached"  # the stream dropped; waiting for a reconnect within the resume window
    DRAINING = "draining"
    ENDED = "ended"


@dataclass(frozen=True)
class Offer:
    """What a session serves of one kind: its steps and the input versions it reads."""

    kind: TaskKind
    steps: tuple[int, ...]
    versions: tuple[int, ...]

    def pools(self) -> list[str]:
        return [user_pool(self.kind.name, self.kind.steps[i].name, v) for i in self.steps for v in self.versions]


@dataclass
class _Open:
    """An assignment the worker holds: the reports it sent come through `reports`."""

    assignment: session_pb2.Assignment
    kind: TaskKind
    reports: asyncio.Queue[session_pb2.ConnectRequest] = field(default_factory=asyncio.Queue)
    partials: int = 0  # partials of this step stored so far (earlier attempts' included)
    checkpoints: int = 0


class Session:
    """One attached worker: its offers, its stream's outbox, its dispatcher and open assignments."""

    def __init__(
        self,
        host: SessionHost,
        attach: session_pb2.Attach,
        offers: list[Offer],
        worker_id: str,
    ) -> None:
        self.id = secrets.token_urlsafe(18)
        self.host = host
        self.worker_id = worker_id
        self.name = attach.worker_name or worker_id
        self.labels = dict(attach.labels)
        self.capacity = attach.capacity
        self.build_id = attach.build_id
        self.sdk = attach.sdk
        self.offers = offers
        self.state = SessionState.CONNECTED
        self.outbox: asyncio.Queue[session_pb2.ConnectResponse | None] = asyncio.Queue()
        self.open: dict[str, _Open] = {}
        self.last_heard = time.monotonic()
        self._ids = itertools.count(1)
        self._detached_at = 0.0
        self.dispatcher: Dispatcher | None = None
        self.ended = asyncio.Event()

    def send(self, message: session_pb2.ConnectResponse) -> None:
        self.outbox.put_nowait(message)

    @property
    def pools(self) -> list[str]:
        return sorted({pool for offer in self.offers for pool in offer.pools()})

    def serves(self, kind: str) -> Offer | None:
        return next((offer for offer in self.offers if offer.kind.name == kind), None)

    async def start(self) -> None:
        runner = Runner.on_fabric(
            self.host.js,
            self.host.events,
            self.worker_id,
            inference=None,
            ack_wait_s=self.host.topology.ack_wait_s,
            sequencer=self.host.sequencer,
            children=self.host.children,
            handlers=self._handler,
        )
        self.dispatcher = Dispatcher(
            self.host.nc,
            self.host.js,
            self.host.events,
            runner,
            self.pools,
            self.capacity,
            reserve=0,
            topology=self.host.topology,
        )
        await self.dispatcher.start()

    def _handler(self, kind: TaskKind, index: int) -> StepHandler | None:
        offer = self.serves(kind.name)
        if offer is None or index not in offer.steps:
            return None
        return lambda ctx: self._run_remote(kind, index, ctx)

    async def _run_remote(self, kind: TaskKind, index: int, ctx: StepContext) -> list[task_pb2.TaskOutput]:
        """Run one step on the worker: assign it, store its reports as they come, return its result."""
        assignment = session_pb2.Assignment(
            assignment_id=f"{ctx.spec.task_id}.{index}.{ctx.attempt}.{next(self._ids)}",
            spec=ctx.spec,
            step=kind.steps[index].name,
            step_index=index,
            carry=ctx.carry,
            attempt=ctx.attempt,
            resume_from=ctx.resume_from,
            traceparent=ctx.traceparent,
            worker_id=self.worker_id,
        )
        if ctx.checkpoint is not None:
            assignment.checkpoint = ctx.checkpoint
        timeout_s = kind.timeout_s(index)
        if timeout_s:
            assignment.step_deadline.FromNanoseconds(int((time.time() + timeout_s) * 1e9))
        held = _Open(assignment, kind, partials=ctx.resume_from)
        self.open[assignment.assignment_id] = held
        self.send(session_pb2.ConnectResponse(assignment=assignment))
        finished = False
        try:
            outputs = await self._follow_reports(held, ctx)
            finished = True
            return outputs
        except ChainMoved:
            # A cancel or another runner took the task over: the worker's work is stale.
            self.send(_ack(assignment.assignment_id, final=True, stale=True))
            finished = True
            raise
        except StepFailed:
            finished = True
            raise
        finally:
            self.open.pop(assignment.assignment_id, None)
            if not finished and self.state is not SessionState.ENDED:
                # Cancelled (a cancel request, the step's timeout, shutdown): tell the worker.
                self.send(
                    session_pb2.ConnectResponse(
                        cancel=session_pb2.CancelAssignment(assignment_id=assignment.assignment_id, reason="cancelled")
                    )
                )

    async def _follow_reports(self, held: _Open, ctx: StepContext) -> list[task_pb2.TaskOutput]:
        assignment_id = held.assignment.assignment_id
        while True:
            report = await held.reports.get()
            case = report.WhichOneof("body")
            if case == "partial":
                partial = report.partial
                if partial.sequence > held.partials:  # a resent partial already stored is confirmed again only
                    _check_output(held, partial.output, "partial.output")
                    await ctx.emit_partial(partial.output, min(max(partial.confidence, 0.0), 1.0))
                    held.partials = partial.sequence
                self.send(_ack(assignment_id, partial=partial.sequence))
            elif case == "checkpoint":
                checkpoint = report.checkpoint
                if checkpoint.sequence > held.checkpoints:
                    if ctx.save_checkpoint is None:
                        raise StepFailed("bug", "this runner stores no checkpoints", True)
                    await ctx.save_checkpoint(checkpoint.state)
                    held.checkpoints = checkpoint.sequence
                self.send(_ack(assignment_id, checkpoint=checkpoint.sequence))
            elif case == "result":
                for position, output in enumerate(report.result.outputs):
                    _check_output(held, output, f"result.outputs[{position}]")
                self.send(_ack(assignment_id, final=True))
                return list(report.result.outputs)
            elif case == "failure":
                failure = report.failure
                self.send(_ack(assignment_id, final=True))
                raise StepFailed(
                    failure.error_class or "bug", failure.message or "the worker reported a failure", failure.retryable
                )
            elif case == "spawn":
                await self._spawn(held, report.spawn, ctx)

    async def _spawn(self, held: _Open, request: session_pb2.SpawnChildren, ctx: StepContext) -> None:
        """Admit the children, record their ids in the chain, then pass on each one's final event."""
        if ctx.children is None or ctx.emit_children is None:
            raise StepFailed("dependency_down", "this mesh side cannot spawn children", True)
        child_ids = await ctx.children.spawn(ctx.spec, list(request.children))
        await ctx.emit_children(child_ids)
        self.send(
            session_pb2.ConnectResponse(
                spawned=session_pb2.ChildrenSpawned(
                    assignment_id=request.assignment_id, request_id=request.request_id, task_ids=child_ids
                )
            )
        )
        children = ctx.children

        async def follow() -> None:
            async for event in children.finals(child_ids):
                if held.assignment.assignment_id not in self.open:
                    return
                self.send(
                    session_pb2.ConnectResponse(
                        child_finished=session_pb2.ChildFinished(assignment_id=request.assignment_id, event=event)
                    )
                )

        self.host.background(follow())

    def take_report(self, report: session_pb2.ConnectRequest) -> None:
        """Route a worker's report to its open assignment; one for an assignment no longer open is stale."""
        case = report.WhichOneof("body")
        assert case is not None
        assignment_id = getattr(report, case).assignment_id
        held = self.open.get(assignment_id)
        if held is None:
            self.send(_ack(assignment_id, final=True, stale=True))
            return
        held.reports.put_nowait(report)

    def detach(self) -> None:
        """The stream is gone: take no new work (it could not be delivered) until a resume."""
        if self.state is SessionState.CONNECTED:
            self.state = SessionState.DETACHED
            self._detached_at = time.monotonic()
            if self.dispatcher is not None:
                self.dispatcher.pause()

    def reattach(self) -> list[session_pb2.Assignment]:
        """The session's stream is back: its open assignments, to send again."""
        self.state = SessionState.CONNECTED
        self.last_heard = time.monotonic()
        self.outbox = asyncio.Queue()
        if self.dispatcher is not None:
            self.dispatcher.resume()
        pending = []
        for held in self.open.values():
            held.assignment.resume_from = held.partials
            pending.append(held.assignment)
        return pending

    def expired(self, now: float) -> bool:
        if self.state is SessionState.DETACHED:
            return now - self._detached_at > self.host.resume_window_s
        if self.state is SessionState.CONNECTED:
            return now - self.last_heard > 3 * self.host.heartbeat_s
        return False

    async def end(self, grace_s: float = 0.0) -> None:
        """Stop taking work; running steps get `grace_s`, then are cancelled and handed back."""
        if self.state is SessionState.ENDED:
            return
        self.state = SessionState.DRAINING
        if self.dispatcher is not None:
            await self.dispatcher.shutdown(grace_s)
        self.state = SessionState.ENDED
        self.outbox.put_nowait(None)
        self.ended.set()

    def record(self) -> session_pb2.SessionRecord:
        """The session as every gateway sees it (KV tm_sessions)."""
        record = session_pb2.SessionRecord(
            worker_id=self.worker_id,
            worker_name=self.name,
            labels=self.labels,
            capacity=self.capacity,
            in_flight=self.dispatcher.in_flight if self.dispatcher else 0,
            build_id=self.build_id,
            sdk=self.sdk,
            offers=[
                session_pb2.KindOffer(
                    kind=offer.kind.name,
                    schema_versions=offer.versions,
                    steps=[offer.kind.steps[i].name for i in offer.steps],
                )
                for offer in self.offers
            ],
        )
        record.updated.GetCurrentTime()
        return record


def _ack(
    assignment_id: str, *, partial: int = 0, checkpoint: int = 0, final: bool = False, stale: bool = False
) -> session_pb2.ConnectResponse:
    ack = session_pb2.ReportAck(assignment_id=assignment_id, stale=stale)
    if partial:
        ack.partial = partial
    elif checkpoint:
        ack.checkpoint = checkpoint
    else:
        ack.final = final
    return session_pb2.ConnectResponse(report_ack=ack)


def _check_output(held: _Open, output: task_pb2.TaskOutput, where: str) -> None:
    """The outputs of a user kind's last step, partial or final, are its declared output message;
    an earlier step hands the next one any message (its carry) as long as it is one."""
    kind = held.kind
    last = held.assignment.step_index == len(kind.steps) - 1
    case = output.WhichOneof("body")
    if case == "custom" and (not last or output.custom.type_url == kind.output_type_url):
        return
    got = output.custom.type_url if case == "custom" else case
    expected = kind.output_type_url if last else "a message (TaskOutput.custom)"
    raise StepFailed(
        "invalid_output",
        f"{where}: kind {kind.name!r} step {held.assignment.step!r} returns {expected!r}, got {got!r}",
        False,
    )


class SessionHost:
    """Every session attached to this process, the sweeper that ends silent ones, cancel routing."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        events: EventLog,
        kinds: KindStore,
        versions_of: VersionsOf,
        topology: Topology,
        sequencer: KeySequencer | None = None,
        children: ChildTasks | None = None,
        heartbeat_s: float = 2.0,
        resume_window_s: float = 10.0,
        sessions_kv: KeyValue | None = None,
        stranded_every_s: float = 2.0,
    ) -> None:
        self.sessions_kv = sessions_kv
        self.stranded_every_s = stranded_every_s
        self.stranded_batch = 256
        # Ends tasks whose work no worker can read (`_expire_stranded`); it runs no steps itself.
        self._expiry = DeadLettering(events, DeadLetterStore(js, nc), "mesh-sessions")
        self.nc = nc
        self.js = js
        self.events = events
        self.kinds = kinds
        self.versions_of = versions_of
        self.topology = topology
        self.sequencer = sequencer
        self.children = children
        self.heartbeat_s = heartbeat_s
        self.resume_window_s = resume_window_s
        self.sessions: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def background(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.warning("session background task failed", exc_info=True)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep())

    async def attach(self, attach: session_pb2.Attach) -> tuple[Session, bool, list[session_pb2.Assignment]]:
        """A new session for `attach`, or the one it resumes; refusals name the reason."""
        if attach.session_id:
            session = self.sessions.get(attach.session_id)
            if session is None or session.state in (SessionState.ENDED, SessionState.DRAINING):
                raise NotFound(f"session {attach.session_id[:32]!r} is over; attach without a session id")
            return session, True, session.reattach()
        offers = await self._offers(attach)
        # One KV key and one subject-safe token: the name's other characters become "-".
        worker_id = f"{_UNSAFE.sub('-', attach.worker_name or 'worker')[:40]}-{secrets.token_hex(3)}"
        session = Session(self, attach, offers, worker_id)
        await session.start()
        self.sessions[session.id] = session
        if self.sessions_kv is not None:  # visible to every gateway's ListKinds from the first moment
            with contextlib.suppress(nats.errors.Error):
                await self.sessions_kv.put(session.worker_id, session.record().SerializeToString())
        log.info(
            "worker session attached",
            extra={"worker_id": worker_id, "kinds": [o.kind.name for o in offers], "pools": session.pools},
        )
        return session, False, []

    async def _offers(self, attach: session_pb2.Attach) -> list[Offer]:
        if not 1 <= attach.capacity <= MAX_CAPACITY:
            raise InvalidArgument("attach.capacity", f"must be 1..{MAX_CAPACITY}")
        if not attach.kinds:
            raise InvalidArgument("attach.kinds", "must offer at least one kind")
        offers = []
        for index, offered in enumerate(attach.kinds):
            where = f"attach.kinds[{index}]"
            kind = await self.kinds.ensure(offered.kind)
            if kind is None:
                raise NotFound(f"{where}.kind: no kind {offered.kind[:64]!r} is registered (tidemesh kinds)")
            if kind.builtin:
                raise InvalidArgument(f"{where}.kind", f"{kind.name!r} is a built-in kind: the mesh's workers run it")
            for field_name, declared in (("input_type", kind.input_type), ("output_type", kind.output_type)):
                handled = getattr(offered, field_name)
                if handled and handled != declared:
                    raise InvalidArgument(
                        f"{where}.{field_name}",
                        f"the handler uses {handled[:128]}; kind {kind.name!r} declares {declared}",
                    )
            lacking = kind.serves(attach.labels)
            if lacking:
                raise PermissionDenied(f"{where}: kind {kind.name!r} requires the labels {', '.join(lacking)}")
            steps = []
            for name in offered.steps or [step.name for step in kind.steps]:
                step_index = kind.step_index(name)
                if step_index < 0:
                    known = ", ".join(step.name for step in kind.steps)
                    raise InvalidArgument(f"{where}.steps", f"kind {kind.name!r} has no step {name!r} (steps: {known})")
                steps.append(step_index)
            registered = await self.versions_of(kind.input_type)
            if not registered:
                raise NotFound(f"{where}: no schema of {kind.input_type!r} is registered")
            versions = list(offered.schema_versions) or registered
            unknown = sorted(set(versions) - set(registered))
            if unknown:
                raise NotFound(
                    f"{where}.schema_versions: {kind.input_type} has no version {unknown[0]} "
                    f"(registered: {', '.join(map(str, registered))})"
                )
            offers.append(Offer(kind, tuple(sorted(set(steps))), tuple(sorted(set(versions)))))
        return offers

    def cancel(self, task_id: str) -> None:
        for session in self.sessions.values():
            if session.dispatcher is not None:
                session.dispatcher.cancel(task_id)

    async def records(self) -> list[session_pb2.SessionRecord]:
        """Every attached session in the mesh (this host's from memory, the others' from KV)."""
        mine = [s.record() for s in self.sessions.values() if s.state is not SessionState.ENDED]
        return await session_records(self.sessions_kv, mine)

    async def queued(self) -> dict[str, int]:
        return await queued_user_work(self.js)

    async def _sweep(self) -> None:
        """End sessions that went silent or did not come back within the resume window; publish
        the live ones; dead-letter work past its deadline that no attached worker can read."""
        last_stranded = last_published = 0.0
        while True:
            await asyncio.sleep(min(self.heartbeat_s, 1.0))
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if session.expired(now):
                    log.warning("worker session ended: silent or gone", extra={"worker_id": session.worker_id})
                    await self.forget(session)
            try:
                if now - last_published >= SESSION_ENTRY_TTL_S / 3:  # well inside the entries' expiry
                    last_published = now
                    await self._publish()
                if now - last_stranded >= self.stranded_every_s:
                    last_stranded = now
                    await self._expire_stranded()
            except Exception as exc:  # a broker hiccup: the next round tries again
                log.warning("session sweep failed: %r", exc)

    async def _publish(self) -> None:
        if self.sessions_kv is None:
            return
        for session in list(self.sessions.values()):
            if session.state is not SessionState.ENDED:
                await self.sessions_kv.put(session.worker_id, session.record().SerializeToString())

    async def _expire_stranded(self) -> None:
        """Work no attached worker reads waits for one; past its deadline it is dead-lettered as a
        schema mismatch (read in place, then removed: nobody pulls those pools)."""
        queued = await self.queued()
        if not queued:
            _export_unserved({})
            return
        offered: dict[tuple[str, str], set[int]] = {}
        for record in await self.records():
            for offer in record.offers:
                for step in offer.steps:
                    offered.setdefault((offer.kind, step), set()).update(offer.schema_versions)
        served = {user_pool(kind, step, v) for (kind, step), versions in offered.items() for v in versions}
        _export_unserved({pool: count for pool, count in queued.items() if pool not in served})
        now_s = time.time()
        for pool in sorted(set(queued) - served):
            for lane in CLASS_NAMES:
                await self._expire_pool(f"{WORK_PREFIX}.{pool}.{lane}.*", now_s, offered)

    async def _expire_pool(self, subjects: str, now_s: float, offered: dict[tuple[str, str], set[int]]) -> None:
        sequence = 0
        for _ in range(self.stranded_batch):
            try:
                raw = await self.js.get_msg(WORK_STREAM, seq=sequence + 1, subject=subjects, next=True)
            except nats.js.errors.NotFoundError:
                return
            sequence = raw.seq or sequence + 1
            try:
                item = work_pb2.WorkItem.FromString(raw.data or b"")
            except google.protobuf.message.DecodeError:
                continue  # junk for the dispatcher's quarantine, once a worker pulls this pool
            spec = item.spec
            if not spec.HasField("deadline") or spec.deadline.ToMicroseconds() / 1e6 > now_s:
                continue
            kind = await self.kinds.ensure(spec.kind)
            step = kind.steps[item.step_index].name if kind and item.step_index < len(kind.steps) else "?"
            readers = ", ".join(map(str, sorted(offered.get((spec.kind, step), ())))) or "none"
            message = (
                f"no attached worker reads {kind.input_type if kind else spec.kind} version {spec.schema_version} "
                f"(step {step}; attached workers read: {readers}) before the task's deadline"
            )
            if await self._expiry.end_own(item, "schema_mismatch", message):
                log.warning("stranded work dead-lettered", extra={"task": spec.task_id, "reason": message})
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.js.delete_msg(WORK_STREAM, sequence)

    async def forget(self, session: Session, grace_s: float = 0.0) -> None:
        await session.end(grace_s)
        self.sessions.pop(session.id, None)
        if self.sessions_kv is not None:
            with contextlib.suppress(nats.errors.Error):
                await self.sessions_kv.delete(session.worker_id)

    async def close(self, grace_s: float) -> None:
        """Drain every session: running steps get `grace_s`, then their work is handed back."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for session in self.sessions.values():
            session.send(session_pb2.ConnectResponse(drain=session_pb2.Drain()))
        # Attached workers get half the grace to finish (the gRPC server needs the rest to stop);
        # a detached session's steps cannot finish: they are handed back at once.
        await asyncio.gather(
            *(
                self.forget(s, grace_s / 2 if s.state is SessionState.CONNECTED else 0.0)
                for s in list(self.sessions.values())
            )
        )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


_unserved_pools: set[str] = set()


def _export_unserved(unserved: dict[str, int]) -> None:
    """Work waiting in pools no attached worker reads (`tidemesh_queue_without_worker`)."""
    for pool, count in unserved.items():
        METRICS.queue_without_worker.labels(pool).set(count)
    for pool in _unserved_pools - set(unserved):
        METRICS.queue_without_worker.remove(pool)
    _unserved_pools.clear()
    _unserved_pools.update(unserved)


async def session_records(
    kv: KeyValue | None, local: list[session_pb2.SessionRecord] | None = None
) -> list[session_pb2.SessionRecord]:
    """Every attached session in the mesh, as their hosts record them in KV (`local` first)."""
    found = {record.worker_id: record for record in local or []}
    if kv is None:
        return list(found.values())
    try:
        keys = await kv.keys()
    except nats.js.errors.NoKeysError:
        keys = []
    except nats.errors.Error as exc:
        log.warning("session records unreadable: %r", exc)
        keys = []
    for key in keys:
        if key in found:
            continue
        try:
            entry = await kv.get(key)
            found[key] = session_pb2.SessionRecord.FromString(entry.value or b"")
        except (nats.js.errors.KeyNotFoundError, google.protobuf.message.DecodeError):
            continue  # expired between the listing and the read, or junk
    return list(found.values())


async def queued_user_work(js: JetStreamContext) -> dict[str, int]:
    """Work items waiting per user-kind pool (every tenant and lane together)."""
    info = await js.stream_info(WORK_STREAM, subjects_filter=f"{WORK_PREFIX}.>")
    counts: dict[str, int] = {}
    for subject, count in (info.state.subjects or {}).items():
        parsed = parse_work_subject(subject)
        if parsed and parsed[0].startswith(USER_POOL_PREFIX):
            counts[parsed[0]] = counts.get(parsed[0], 0) + count
    return counts


class SessionService(session_pb2_grpc.WorkerSessionServiceServicer):
    """The worker protocol's stream, mesh side. Reached from the gateways only (mutual TLS, caller
    `gateway`): they authenticate the worker's credential and relay its stream here."""

    def __init__(self, host: SessionHost, grace_s: float = 30.0) -> None:
        self._host = host
        self._grace_s = grace_s

    async def Connect(
        self, request_iterator: AsyncIterator[session_pb2.ConnectRequest], context: Context
    ) -> AsyncIterator[session_pb2.ConnectResponse]:
        try:
            first = await _first(request_iterator)
            session, resumed, pending = await self._host.attach(first.attach)
        except MeshError as exc:
            await abort_with(context, exc)
        yield session_pb2.ConnectResponse(
            attached=session_pb2.Attached(
                session_id=session.id,
                worker_id=session.worker_id,
                heartbeat_interval=duration(self._host.heartbeat_s),
                resume_window=duration(self._host.resume_window_s),
                resumed=resumed,
            )
        )
        for assignment in pending:
            yield session_pb2.ConnectResponse(assignment=assignment)
        outbox = session.outbox
        reader = asyncio.create_task(self._read(session, request_iterator))
        try:
            while True:
                sending = asyncio.ensure_future(outbox.get())
                done, _ = await asyncio.wait({sending, reader}, return_when=asyncio.FIRST_COMPLETED)
                if sending not in done:
                    sending.cancel()
                    break  # the worker's side ended (or broke)
                message = sending.result()
                if message is None:
                    return  # the session ended (drained, or forgotten)
                yield message
            # What is still queued goes out before the stream closes (the final acks of a drain).
            while not outbox.empty() and (message := outbox.get_nowait()) is not None:
                yield message
            if not reader.cancelled() and reader.exception() is None and session.state is SessionState.DRAINING:
                await session.ended.wait()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if session.state is SessionState.CONNECTED and session.outbox is outbox:
                session.detach()  # a broken stream (this one still current): the worker may come back
            elif session.state is SessionState.DRAINING and session.outbox is outbox and session.dispatcher:
                # A draining session never resumes: with its stream gone its steps cannot finish,
                # so they go back to the queue now, not at the end of the drain's grace.
                session.dispatcher.hurry()

    async def _read(self, session: Session, requests: AsyncIterator[session_pb2.ConnectRequest]) -> None:
        """The worker's reports, until its stream ends."""
        async for message in requests:
            session.last_heard = time.monotonic()
            case = message.WhichOneof("body")
            if case == "heartbeat":
                if message.heartbeat.draining and session.state is SessionState.CONNECTED:
                    self._host.background(self._host.forget(session, self._grace_s))
            elif case in ("partial", "checkpoint", "result", "failure", "spawn"):
                session.take_report(message)
            elif case == "attach":
                log.warning("a second attach on one stream is ignored", extra={"worker_id": session.worker_id})
        # The stream ended. A cancelled call and a half-close look alike here, so only a draining
        # heartbeat says goodbye; otherwise `Connect` detaches the session, which waits for a resume.


async def _first(requests: AsyncIterator[session_pb2.ConnectRequest]) -> session_pb2.ConnectRequest:
    try:
        first = await asyncio.wait_for(anext(requests), ATTACH_TIMEOUT_S)
    except StopAsyncIteration:
        raise InvalidArgument("attach", "the stream ended before the worker attached") from None
    except TimeoutError:
        raise InvalidArgument("attach", f"no attach within {ATTACH_TIMEOUT_S:.0f}s") from None
    if first.WhichOneof("body") != "attach":
        raise InvalidArgument("attach", f"the first message must be attach, got {first.WhichOneof('body')}")
    return first
