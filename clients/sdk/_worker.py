"""`Worker`: run your own task kinds on the mesh, in the shape of Temporal's activity workers.

    worker = Worker("localhost:8443", name="resize", labels={"region": "eu"}, capacity=8)

    @worker.task("acme.resize", input=ResizeRequest, output=ResizeResult)
    async def resize(request: ResizeRequest, ctx: TaskContext) -> ResizeResult:
        await ctx.emit_partial(ResizeResult(...), confidence=0.5)
        await ctx.checkpoint(b"...")          # a redelivered attempt starts from ctx.resume_state
        return ResizeResult(...)

    await worker.run()                        # or: tidemesh worker run module:worker

The worker attaches through the front door over one gRPC stream (`WorkerSessionService`, the
protocol any language uses), with a credential of the `work` role. The mesh side holds the
queues and the task's event chain, so a user kind gets every guarantee of a built-in one. Sync
handlers run in a thread pool; `ctx` methods called from them block until the report is sent.

Exceptions map by type: `Fatal` (and the task's `fatal_on` types) fail the task at once;
`Retryable` and any other exception are retried with backoff up to the kind's attempts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import logging
import os
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from clients.sdk._client import Client, mesh_channel
from mesh.tasks import TYPE_URL_PREFIX
from mesh.v1 import kind_pb2, session_pb2, session_pb2_grpc, task_pb2

SDK = "python/0.1.0"
log = logging.getLogger("tidemesh.worker")

Handler = Callable[[Any, "TaskContext"], Any]


class Retryable(Exception):
    """A failure worth another attempt (a dependency down, a timeout). `error_class` names it."""

    error_class = "retryable"

    def __init__(self, message: str, error_class: str | None = None) -> None:
        super().__init__(message)
        if error_class:
            self.error_class = error_class


class Fatal(Exception):
    """A failure no retry can fix (bad input): the task fails at once, with a dead letter."""

    error_class = "fatal"

    def __init__(self, message: str, error_class: str | None = None) -> None:
        super().__init__(message)
        if error_class:
            self.error_class = error_class


@dataclass(frozen=True)
class TaskDefinition:
    """One handler of one step of a kind, with the types it reads and returns."""

    kind: str
    step: str
    input: type[Message]
    output: type[Message]
    handler: Handler
    versions: tuple[int, ...] = ()
    fatal_on: tuple[type[BaseException], ...] = ()

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)


def pack(message: Message) -> task_pb2.TaskOutput:
    """`message` as a task output (`TaskOutput.custom`)."""
    return task_pb2.TaskOutput(
        custom=any_pb2.Any(type_url=TYPE_URL_PREFIX + message.DESCRIPTOR.full_name, value=message.SerializeToString())
    )


def unpack(output: task_pb2.TaskOutput, message_type: type[Message]) -> Message:
    """The user message in a task output (a result or a partial), checked to be `message_type`."""
    expected = TYPE_URL_PREFIX + message_type.DESCRIPTOR.full_name
    if output.WhichOneof("body") != "custom" or output.custom.type_url != expected:
        raise TypeError(f"output holds {output.custom.type_url or output.WhichOneof('body')!r}, not {expected!r}")
    return message_type.FromString(output.custom.value)


class TaskContext:
    """What a handler gets besides its input: the attempt, partials, checkpoints, cancellation, children."""

    def __init__(
        self, assignment: session_pb2.Assignment, reporter: _Reporter, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.assignment = assignment
        self.task_id = assignment.spec.task_id
        self.tenant = assignment.spec.tenant
        self.kind = assignment.spec.kind
        self.step = assignment.step
        self.attempt = assignment.attempt
        self.labels = dict(assignment.spec.labels)
        self.traceparent = assignment.traceparent
        self.schema_version = assignment.spec.schema_version
        self.carry = list(assignment.carry)
        # The checkpoint an earlier attempt stored (None on a first attempt), and how many
        # partials earlier attempts streamed: a resumed handler need not send those again.
        self.resume_state: bytes | None = assignment.checkpoint if assignment.HasField("checkpoint") else None
        self.resume_from = assignment.resume_from
        self.cancelled = False  # set when the mesh cancels the assignment (async handlers are also interrupted)
        trace_id = self.traceparent.split("-")[1] if self.traceparent.count("-") == 3 else ""
        self.log = logging.LoggerAdapter(log, {"task_id": self.task_id, "trace_id": trace_id, "attempt": self.attempt})
        self._reporter = reporter
        self._loop = loop
        self._partials = assignment.resume_from
        self._checkpoints = 0
        self._spawns = 0

    def _call(self, coroutine: Awaitable[Any]) -> Any:
        """Await in the loop; from a sync handler's thread, block until done."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return coroutine
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()  # type: ignore[arg-type]

    def emit_partial(self, output: Message, confidence: float = 0.0, index: int | None = None) -> Any:
        """Stream a partial result (stored in the task's events before it is confirmed).

        `index` (1, 2, ...) is the partial's place in the step's output. A handler that resumes from
        a checkpoint gives it, so a partial an earlier attempt already stored is skipped, not sent
        twice; without it partials are numbered after those of earlier attempts (`resume_from`)."""
        if index is not None and index <= self.resume_from:
            return self._call(_done())
        self._partials = index if index is not None else self._partials + 1
        message = session_pb2.ConnectRequest(
            partial=session_pb2.PartialOutput(
                assignment_id=self.assignment.assignment_id,
                sequence=self._partials,
                output=pack(output),
                confidence=confidence,
            )
        )
        return self._call(self._reporter.report(message, ("partial", self._partials)))

    def checkpoint(self, state: bytes) -> Any:
        """Store `state` (≤ 64 KiB): a redelivered attempt of this step gets it as `resume_state`."""
        self._checkpoints += 1
        message = session_pb2.ConnectRequest(
            checkpoint=session_pb2.Checkpoint(
                assignment_id=self.assignment.assignment_id, sequence=self._checkpoints, state=bytes(state)
            )
        )
        return self._call(self._reporter.report(message, ("checkpoint", self._checkpoints)))

    def spawn(self, children: Iterable[tuple[str, Message]]) -> Any:
        """Admit child tasks (kind, input) of this task; returns their ids. Results: `child_results`."""
        self._spawns += 1
        specs = [task_pb2.TaskSpec(kind=kind, payload=_payload(message)) for kind, message in children]
        request = session_pb2.SpawnChildren(
            assignment_id=self.assignment.assignment_id, request_id=self._spawns, children=specs
        )
        return self._call(self._reporter.spawn(request))

    def carried(self, message_type: type[Message]) -> list[Message]:
        """The previous step's outputs (the input of this step of a multi-step kind), decoded."""
        return [unpack(output, message_type) for output in self.carry]

    def child_results(self) -> AsyncIterator[task_pb2.TaskEvent]:
        """The final events of this task's children, as they end."""
        return self._reporter.children(self.assignment.assignment_id)


async def _done() -> None:
    return None


def _payload(message: Message) -> task_pb2.TaskPayload:
    if isinstance(message, task_pb2.TaskPayload):
        return message
    return task_pb2.TaskPayload(custom=pack(message).custom)


class _Reporter:
    """Sends reports on the current stream and keeps each until the mesh confirms it."""

    def __init__(self) -> None:
        self.outbox: asyncio.Queue[session_pb2.ConnectRequest] = asyncio.Queue()
        # (assignment id, what) → the report, until its ReportAck; resent after a reconnect.
        self.unconfirmed: dict[tuple[str, tuple[str, int]], session_pb2.ConnectRequest] = {}
        self.confirmed: dict[tuple[str, tuple[str, int]], asyncio.Future[bool]] = {}
        self.spawned: dict[tuple[str, int], asyncio.Future[list[str]]] = {}
        self.finished_children: dict[str, asyncio.Queue[task_pb2.TaskEvent]] = {}

    async def report(self, message: session_pb2.ConnectRequest, what: tuple[str, int]) -> None:
        """Send `message`; return once the mesh stored it. A stale answer cancels the handler."""
        assignment_id = getattr(message, message.WhichOneof("body") or "").assignment_id
        key = (assignment_id, what)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.confirmed[key] = future
        self.unconfirmed[key] = message
        self.outbox.put_nowait(message)
        stale = await future
        if stale:
            raise asyncio.CancelledError("the task moved on (cancelled, or taken over)")

    def send(self, message: session_pb2.ConnectRequest, what: tuple[str, int] | None = None) -> None:
        if what is not None:
            assignment_id = getattr(message, message.WhichOneof("body") or "").assignment_id
            self.unconfirmed[(assignment_id, what)] = message
        self.outbox.put_nowait(message)

    def acked(self, ack: session_pb2.ReportAck) -> None:
        case = ack.WhichOneof("report")
        what = ("final", 1) if case == "final" else (case or "", getattr(ack, case or "final"))
        key = (ack.assignment_id, what)
        self.unconfirmed.pop(key, None)
        future = self.confirmed.pop(key, None)
        if future is not None and not future.done():
            future.set_result(ack.stale)

    def resend(self) -> None:
        for message in self.unconfirmed.values():
            self.outbox.put_nowait(message)

    async def spawn(self, request: session_pb2.SpawnChildren) -> list[str]:
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self.spawned[(request.assignment_id, request.request_id)] = future
        self.finished_children.setdefault(request.assignment_id, asyncio.Queue())
        self.outbox.put_nowait(session_pb2.ConnectRequest(spawn=request))
        return await future

    async def children(self, assignment_id: str) -> AsyncIterator[task_pb2.TaskEvent]:
        queue = self.finished_children.setdefault(assignment_id, asyncio.Queue())
        while True:
            yield await queue.get()

    def forget(self, assignment_id: str) -> None:
        for key in [k for k in self.confirmed if k[0] == assignment_id]:
            future = self.confirmed.pop(key)
            if not future.done():
                future.set_result(True)
        self.finished_children.pop(assignment_id, None)


class Worker:
    """Handlers of user kinds, attached to the mesh over the worker protocol."""

    def __init__(
        self,
        endpoint: str = "",
        *,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        capacity: int = 8,
        credential: str = "",
        ca: str | Path | None = None,
        insecure: bool = False,
        build_id: str = "",
        threads: int | None = None,
    ) -> None:
        """`endpoint`: the mesh's front door (Envoy), `HOST:PORT`. `credential`: an API key with the
        `work` role (default: the TIDEMESH_API_KEY environment variable, never an argument of a
        process). `ca`: the mesh's root (default: TIDEMESH_CA)."""
        self.endpoint = endpoint
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.labels = dict(labels or {})
        self.capacity = capacity
        self.credential = credential
        self.ca = ca
        self.insecure = insecure
        self.build_id = build_id
        self.definitions: dict[tuple[str, str], TaskDefinition] = {}
        self.session_id = ""
        self.worker_id = ""
        self._threads = threads
        self._running: dict[str, asyncio.Task[None]] = {}
        self._contexts: dict[str, TaskContext] = {}
        self._cancelled_by_mesh: set[str] = set()
        self._reporter = _Reporter()
        self._draining = False
        self.attached = asyncio.Event()

    def task(
        self,
        kind: str,
        *,
        input: type[Message],
        output: type[Message],
        step: str = "",
        versions: Iterable[int] = (),
        fatal_on: Iterable[type[BaseException]] = (),
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of `kind` (of its step `step`, for a
        multi-step kind): ``handler(input, ctx) -> output``, async or sync. `versions`: the input
        schema versions it reads (default: every registered one)."""
        for name, value in (("input", input), ("output", output)):
            if not (isinstance(value, type) and issubclass(value, Message)):
                raise TypeError(f"{name} must be a protobuf message class, got {value!r}")

        def register(handler: Handler) -> Handler:
            if not callable(handler):
                raise TypeError(f"the handler of {kind!r} must be callable")
            parameters = [
                p
                for p in inspect.signature(handler).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if len(parameters) != 2:
                raise TypeError(f"the handler of {kind!r} must take (input, ctx), it takes {len(parameters)} arguments")
            key = (kind, step)
            if key in self.definitions:
                raise ValueError(f"{kind!r} step {step or '(all)'!r} already has a handler")
            self.definitions[key] = TaskDefinition(kind, step, input, output, handler, tuple(versions), tuple(fatal_on))
            return handler

        return register

    def declarations(self) -> list[kind_pb2.KindDeclaration]:
        """The kinds this worker serves, as `KindService.RegisterKind` takes them (one step per
        handler; a kind with one handler and no step name has one step named like its last token)."""
        kinds: dict[str, kind_pb2.KindDeclaration] = {}
        for definition in self.definitions.values():  # in the order the steps were decorated
            declaration = kinds.setdefault(
                definition.kind,
                kind_pb2.KindDeclaration(name=definition.kind, input_type=definition.input.DESCRIPTOR.full_name),
            )
            # The kind returns what its last step returns; earlier steps hand their output on.
            declaration.output_type = definition.output.DESCRIPTOR.full_name
            declaration.steps.add(name=definition.step or definition.kind.rsplit(".", 1)[-1])
        return list(kinds.values())

    async def register(self, credential: str = "") -> list[kind_pb2.RegisterKindResponse]:
        """Register this worker's message types (schema registry) and kinds with the mesh: an admin's
        job, done once (again is harmless: the same declaration is accepted, a different one refused).
        Refusals raise the matching `mesh.errors` class (PermissionDenied without the admin role)."""
        from mesh.schemas import descriptor_set_of

        types = {d.input for d in self.definitions.values()} | {d.output for d in self.definitions.values()}
        async with Client(
            self.endpoint, credential=credential or self._credential(), ca=self.ca, insecure=self.insecure
        ) as client:
            for message_type in sorted(types, key=lambda t: t.DESCRIPTOR.full_name):
                await client.register_schema(message_type.DESCRIPTOR.full_name, descriptor_set_of(message_type))
            return [await client.register_kind(declaration) for declaration in self.declarations()]

    def _definition(self, assignment: session_pb2.Assignment) -> TaskDefinition | None:
        return self.definitions.get((assignment.spec.kind, assignment.step)) or self.definitions.get(
            (assignment.spec.kind, "")
        )

    def _attach(self) -> session_pb2.Attach:
        offers: dict[str, session_pb2.KindOffer] = {}
        for definition in self.definitions.values():
            offer = offers.setdefault(
                definition.kind,
                # The handler's types: the mesh refuses a kind declared with other ones. A multi-step
                # kind's steps return different types, so the output is checked per result instead.
                session_pb2.KindOffer(
                    kind=definition.kind,
                    input_type=definition.input.DESCRIPTOR.full_name,
                    output_type="" if definition.step else definition.output.DESCRIPTOR.full_name,
                ),
            )
            if definition.step:
                offer.steps.append(definition.step)
            for version in definition.versions:
                if version not in offer.schema_versions:
                    offer.schema_versions.append(version)
        return session_pb2.Attach(
            session_id=self.session_id,
            worker_name=self.name,
            kinds=list(offers.values()),
            labels=self.labels,
            capacity=self.capacity,
            build_id=self.build_id,
            sdk=SDK,
        )

    def _credential(self) -> str:
        return self.credential or os.environ.get("TIDEMESH_API_KEY", "")

    async def run(self, stop: asyncio.Event | None = None, force: asyncio.Event | None = None) -> None:
        """Attach and run assignments until `stop` is set; then finish what runs (two-stage: `force`
        cancels what still runs, and the mesh hands it to another worker)."""
        if not self.definitions:
            raise ValueError("this worker has no handlers: decorate one with @worker.task(...)")
        if not self.endpoint:
            raise ValueError("no endpoint: give Worker(endpoint=...) the mesh's front door, HOST:PORT")
        stop = stop or asyncio.Event()
        force = force or asyncio.Event()
        executor = concurrent.futures.ThreadPoolExecutor(self._threads or self.capacity, thread_name_prefix="tidemesh")
        delay_s = 0.2
        try:
            async with mesh_channel(self.endpoint, self._credential(), self.ca, self.insecure) as channel:
                stub = session_pb2_grpc.WorkerSessionServiceStub(channel)  # type: ignore[no-untyped-call]
                while True:
                    try:
                        ended = await self._session(stub, stop, force, executor)
                        delay_s = 0.2
                        if ended:
                            return
                    except grpc.aio.AioRpcError as exc:
                        code = exc.code()
                        if code == grpc.StatusCode.NOT_FOUND and self.session_id:
                            # The session is over (not back within the resume window): start afresh.
                            # Its assignments are redelivered by the mesh; what runs here is dropped.
                            log.warning("session %s is over; attaching anew", self.session_id)
                            self.session_id = ""
                            await self._drop_all()
                            continue
                        if code in (
                            grpc.StatusCode.INVALID_ARGUMENT,
                            grpc.StatusCode.NOT_FOUND,
                            grpc.StatusCode.PERMISSION_DENIED,
                            grpc.StatusCode.UNAUTHENTICATED,
                        ):
                            raise  # a refusal: retrying the same attach cannot help
                        log.warning("worker stream broke (%s); reconnecting", code.name)
                    if stop.is_set() and (force.is_set() or not self._running):
                        return
                    await asyncio.sleep(delay_s * (0.5 + random.random()))
                    delay_s = min(delay_s * 2, 5.0)
        finally:
            await self._drop_all()
            executor.shutdown(wait=False, cancel_futures=True)

    async def _session(
        self,
        stub: session_pb2_grpc.WorkerSessionServiceStub,
        stop: asyncio.Event,
        force: asyncio.Event,
        executor: concurrent.futures.Executor,
    ) -> bool:
        """One stream: attach (or resume), then serve. True when the session ended for good."""
        reporter = self._reporter
        reporter.outbox = asyncio.Queue()
        reporter.outbox.put_nowait(session_pb2.ConnectRequest(attach=self._attach()))
        if self.session_id:
            reporter.resend()
        ending = asyncio.Event()

        async def requests() -> AsyncIterator[session_pb2.ConnectRequest]:
            while True:
                getting = asyncio.ensure_future(reporter.outbox.get())
                closing = asyncio.ensure_future(ending.wait())
                done, _ = await asyncio.wait({getting, closing}, return_when=asyncio.FIRST_COMPLETED)
                if getting in done:
                    closing.cancel()
                    yield getting.result()
                    continue
                getting.cancel()
                return

        call = stub.Connect(requests())
        heartbeat: asyncio.Task[None] | None = None
        watcher = asyncio.create_task(self._watch_stop(stop, force, reporter, call))
        try:
            async for message in _until_cancelled(call, force):
                case = message.WhichOneof("body")
                if case == "attached":
                    attached = message.attached
                    resumed = attached.resumed
                    self.session_id, self.worker_id = attached.session_id, attached.worker_id
                    interval_s = attached.heartbeat_interval.ToNanoseconds() / 1e9 or 2.0
                    if heartbeat is None:
                        heartbeat = asyncio.create_task(self._heartbeats(reporter, interval_s))
                    self.attached.set()
                    log.info("attached as %s (%s)", self.worker_id, "resumed" if resumed else "new session")
                elif case == "assignment":
                    self._start(message.assignment, reporter, executor)
                elif case == "cancel":
                    self._cancel(message.cancel.assignment_id)
                elif case == "report_ack":
                    reporter.acked(message.report_ack)
                    if message.report_ack.stale:
                        self._cancel(message.report_ack.assignment_id, ack=False)
                elif case == "spawned":
                    spawned = message.spawned
                    future = reporter.spawned.pop((spawned.assignment_id, spawned.request_id), None)
                    if future is not None and not future.done():
                        future.set_result(list(spawned.task_ids))
                elif case == "child_finished":
                    queue = reporter.finished_children.get(message.child_finished.assignment_id)
                    if queue is not None:
                        queue.put_nowait(message.child_finished.event)
                elif case == "drain":
                    self._draining = True  # this gateway is going away: finish, then attach elsewhere
            # The mesh ended the session: after our goodbye that is the end; after its own drain
            # (a gateway shutting down) the worker attaches anew, to another gateway.
            self.session_id = ""
            self._draining = stop.is_set()
            return stop.is_set()
        finally:
            ending.set()
            watcher.cancel()
            if heartbeat is not None:
                heartbeat.cancel()
            call.cancel()

    async def _watch_stop(self, stop: asyncio.Event, force: asyncio.Event, reporter: _Reporter, call: Any) -> None:
        """First stage: ask for no new work and let the running finish. Second: drop it all (the
        mesh hands what was running to another worker once the stream is gone)."""
        await stop.wait()
        self._draining = True
        reporter.outbox.put_nowait(session_pb2.ConnectRequest(heartbeat=session_pb2.Heartbeat(draining=True)))
        await force.wait()
        await self._drop_all()
        call.cancel()

    async def _heartbeats(self, reporter: _Reporter, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            beat = session_pb2.Heartbeat(running=list(self._running), draining=self._draining)
            reporter.outbox.put_nowait(session_pb2.ConnectRequest(heartbeat=beat))

    def _start(
        self, assignment: session_pb2.Assignment, reporter: _Reporter, executor: concurrent.futures.Executor
    ) -> None:
        if assignment.assignment_id in self._running:
            return  # sent again after a reconnect: it is already running here
        job = asyncio.create_task(self._run_assignment(assignment, reporter, executor))
        self._running[assignment.assignment_id] = job
        job.add_done_callback(lambda _: self._running.pop(assignment.assignment_id, None))

    def _cancel(self, assignment_id: str, ack: bool = True) -> None:
        job = self._running.get(assignment_id)
        ctx = self._contexts.get(assignment_id)
        if ctx is not None:
            ctx.cancelled = True  # what a sync handler (in a thread, not interruptible) looks at
        if job is not None:
            if ack:
                self._cancelled_by_mesh.add(assignment_id)
            job.cancel()

    async def _drop_all(self) -> None:
        jobs = list(self._running.values())
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    async def _run_assignment(
        self, assignment: session_pb2.Assignment, reporter: _Reporter, executor: concurrent.futures.Executor
    ) -> None:
        assignment_id = assignment.assignment_id
        definition = self._definition(assignment)
        final: session_pb2.ConnectRequest
        try:
            if definition is None:
                raise Fatal(f"this worker has no handler for {assignment.spec.kind!r} step {assignment.step!r}", "bug")
            loop = asyncio.get_running_loop()
            ctx = TaskContext(assignment, reporter, loop)
            self._contexts[assignment_id] = ctx
            request = _decode_input(definition, assignment.spec.payload)
            if definition.is_async:
                result = await definition.handler(request, ctx)
            else:
                result = await loop.run_in_executor(executor, functools.partial(definition.handler, request, ctx))
            if not isinstance(result, definition.output):
                raise Fatal(
                    f"the handler returned {type(result).__name__}, not the declared "
                    f"{definition.output.DESCRIPTOR.full_name}",
                    "invalid_output",
                )
            final = session_pb2.ConnectRequest(
                result=session_pb2.StepResult(assignment_id=assignment_id, outputs=[pack(result)])
            )
        except asyncio.CancelledError:
            self._contexts.pop(assignment_id, None)
            reporter.forget(assignment_id)
            if assignment_id in self._cancelled_by_mesh:
                self._cancelled_by_mesh.discard(assignment_id)
                reporter.outbox.put_nowait(
                    session_pb2.ConnectRequest(cancel_ack=session_pb2.CancelAck(assignment_id=assignment_id))
                )
            raise
        except BaseException as exc:  # a handler's failure, classified by its type
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            final = session_pb2.ConnectRequest(failure=_failure(assignment_id, exc, definition))
        self._contexts.pop(assignment_id, None)
        reporter.send(final, ("final", 1))


async def _until_cancelled(call: Any, force: asyncio.Event) -> AsyncIterator[session_pb2.ConnectResponse]:
    """The mesh's messages; the stream cancelled by our own second stop signal ends them quietly."""
    try:
        async for message in call:
            yield message
    except asyncio.CancelledError:
        if not force.is_set():
            raise


def _decode_input(definition: TaskDefinition, payload: task_pb2.TaskPayload) -> Message:
    expected = TYPE_URL_PREFIX + definition.input.DESCRIPTOR.full_name
    if payload.WhichOneof("body") != "custom" or payload.custom.type_url != expected:
        raise Fatal(f"the payload holds {payload.custom.type_url!r}, the handler reads {expected!r}", "schema_mismatch")
    try:
        return definition.input.FromString(payload.custom.value)
    except DecodeError as exc:
        raise Fatal(f"the payload does not decode as {expected}: {exc}", "schema_mismatch") from exc


def _failure(assignment_id: str, exc: BaseException, definition: TaskDefinition | None) -> session_pb2.StepFailure:
    fatal = isinstance(exc, Fatal) or (definition is not None and isinstance(exc, definition.fatal_on))
    if isinstance(exc, (Fatal, Retryable)):
        error_class = exc.error_class
    else:
        error_class = "bug" if not fatal else "fatal"
    message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (Fatal, Retryable)) else str(exc)
    return session_pb2.StepFailure(
        assignment_id=assignment_id, error_class=error_class, message=message[:4096], retryable=not fatal
    )


@dataclass
class LocalRun:
    """What a handler did in `run_local`: its result or failure, partials, checkpoints."""

    result: Message | None = None
    failure: session_pb2.StepFailure | None = None
    partials: list[tuple[Message, float]] = field(default_factory=list)
    checkpoints: list[bytes] = field(default_factory=list)


class _LocalReporter(_Reporter):
    def __init__(self, run: LocalRun, output: type[Message]) -> None:
        super().__init__()
        self._run = run
        self._output = output

    async def report(self, message: session_pb2.ConnectRequest, what: tuple[str, int]) -> None:
        if message.WhichOneof("body") == "partial":
            partial = message.partial
            self._run.partials.append((self._output.FromString(partial.output.custom.value), partial.confidence))
        else:
            self._run.checkpoints.append(message.checkpoint.state)


async def run_local(
    worker: Worker,
    kind: str,
    request: Message,
    *,
    step: str = "",
    attempt: int = 1,
    resume_state: bytes | None = None,
    resume_from: int = 0,
    task_id: str = "local-task",
) -> LocalRun:
    """Run the handler of `kind` on `request` without a mesh, for the user's unit tests: partials
    and checkpoints are recorded, the result is checked against the declared output type, and a
    failure is classified exactly as on the mesh."""
    assignment = session_pb2.Assignment(
        assignment_id=f"{task_id}.0.{attempt}.1",
        spec=task_pb2.TaskSpec(task_id=task_id, tenant="local", kind=kind, payload=_payload(request)),
        step=step,
        attempt=attempt,
        resume_from=resume_from,
    )
    if resume_state is not None:
        assignment.checkpoint = resume_state
    definition = worker._definition(assignment)
    if definition is None:
        known = ", ".join(sorted(f"{k}/{s}" if s else k for k, s in worker.definitions)) or "none"
        raise LookupError(f"the worker has no handler for {kind!r} step {step!r} (handlers: {known})")
    run = LocalRun()
    reporter = _LocalReporter(run, definition.output)
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        await worker._run_assignment(assignment, reporter, executor)
    final = reporter.outbox.get_nowait()
    if final.WhichOneof("body") == "result":
        run.result = definition.output.FromString(final.result.outputs[0].custom.value)
    else:
        run.failure = final.failure
    with contextlib.suppress(asyncio.QueueEmpty):
        reporter.outbox.get_nowait()
    return run
