"""The front door of user work: `KindService` (declare a kind) and `WorkerSessionService` (attach a worker).

A worker in any language attaches with a credential of the `work` role (an admin's will do) and
keeps one bidirectional stream; `services.worker._remote` runs its session. Refusals happen
before anything is assigned and name the reason: an unknown kind, an unregistered schema
version, a required label the worker lacks, a malformed attach.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from mesh.errors import InvalidArgument, MeshError, PermissionDenied
from mesh.fabric import KindStore
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with, duration
from mesh.tasks import KINDS, TaskKind, user_pool
from mesh.telemetry import get_logger
from mesh.v1 import kind_pb2, kind_pb2_grpc, session_pb2, session_pb2_grpc
from services.gateway._auth import ANY_TENANT, Principal
from services.gateway._guard import Guard
from services.worker._remote import Session, SessionHost, SessionState

log = get_logger(__name__)

ATTACH_TIMEOUT_S = 10.0
# Whether every given message type is a registered schema subject (the schema registry's answer).
SubjectsExist = Callable[[list[str]], Awaitable[list[str]]]


class Kinds(kind_pb2_grpc.KindServiceServicer):
    def __init__(self, store: KindStore, guard: Guard, sessions: SessionHost, missing_subjects: SubjectsExist) -> None:
        self._store = store
        self._guard = guard
        self._sessions = sessions
        self._missing_subjects = missing_subjects

    async def RegisterKind(
        self, request: kind_pb2.RegisterKindRequest, context: Context
    ) -> kind_pb2.RegisterKindResponse:
        try:
            principal = await self._guard.from_grpc(context)
            self._guard.check(principal, "admin")
            kind = await self.register(request.kind)
            created = await self._store.register(kind)
        except MeshError as exc:
            await abort_with(context, exc)
        log.info("kind registered" if created else "kind already registered", extra={"kind": kind.name})
        return kind_pb2.RegisterKindResponse(kind=kind.declaration(), created=created)

    async def register(self, declaration: kind_pb2.KindDeclaration) -> TaskKind:
        """The kind of `declaration`, checked: its types must be registered schemas."""
        kind = TaskKind.from_declaration(declaration)
        missing = await self._missing_subjects([kind.input_type, kind.output_type])
        for field_name, subject in (("input_type", kind.input_type), ("output_type", kind.output_type)):
            if subject in missing:
                raise InvalidArgument(
                    f"kind.{field_name}", f"{subject!r} is not a registered schema (tidemesh schema register)"
                )
        return kind

    async def ListKinds(self, request: kind_pb2.ListKindsRequest, context: Context) -> kind_pb2.ListKindsResponse:
        try:
            principal = await self._guard.from_grpc(context)
            self._guard.check(principal, "read")
            await self._store.load()
            records = await self._sessions.records()
            queued = await self._sessions.queued()
            reply = kind_pb2.ListKindsResponse()
            for name in sorted(KINDS):
                kind = KINDS[name]
                info = reply.kinds.add(kind=kind.declaration())
                if kind.builtin:
                    info.schema_versions.append(1)
                    continue
                info.schema_versions.extend(await self._sessions.versions_of(kind.input_type))
                readers: dict[tuple[str, int], int] = {}
                for record in records:
                    for offer in record.offers:
                        if offer.kind != name:
                            continue
                        info.workers.add(
                            worker_id=record.worker_id,
                            worker_name=record.worker_name,
                            schema_versions=offer.schema_versions,
                            labels=record.labels,
                            build_id=record.build_id,
                            capacity=record.capacity,
                            in_flight=record.in_flight,
                        )
                        for offered_step in offer.steps:
                            for version in offer.schema_versions:
                                readers[(offered_step, version)] = readers.get((offered_step, version), 0) + 1
                for declared in kind.steps:
                    for version in info.schema_versions:
                        waiting = queued.get(user_pool(name, declared.name, version), 0)
                        compatible = readers.get((declared.name, version), 0)
                        if waiting or compatible:
                            info.backlog.add(
                                step=declared.name,
                                schema_version=version,
                                queued=waiting,
                                compatible_workers=compatible,
                                note="no compatible worker" if waiting and not compatible else "",
                            )
        except MeshError as exc:
            await abort_with(context, exc)
        return reply


class WorkerSessions(session_pb2_grpc.WorkerSessionServiceServicer):
    def __init__(self, host: SessionHost, guard: Guard, grace_s: float = 30.0) -> None:
        self._host = host
        self._guard = guard
        self._grace_s = grace_s

    async def Connect(
        self, request_iterator: AsyncIterator[session_pb2.ConnectRequest], context: Context
    ) -> AsyncIterator[session_pb2.ConnectResponse]:
        try:
            principal = await self._guard.from_grpc(context)
            _check_worker(principal)
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


def _check_worker(principal: Principal | None) -> None:
    """A worker serves every tenant's work of its kinds: its credential must be for all tenants."""
    if principal is None:
        return
    if "work" not in principal.roles and "admin" not in principal.roles:
        raise PermissionDenied(f"credential {principal.credential_id} lacks the 'work' role")
    if principal.tenant != ANY_TENANT:
        raise PermissionDenied(
            f"credential {principal.credential_id} is for tenant {principal.tenant!r}; a worker needs one for '*'"
        )


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
