"""The front door of user work: `KindService` (declare a kind) and `WorkerSessionService` (attach a worker).

A worker in any language attaches with a credential allowed worker.attach in every tenant (the
``worker`` role, once ``work``, on a credential for ``*``; an admin's will do) and keeps one
bidirectional stream, which the gateway relays to a session host — a general worker
process, where `services.worker._remote` runs the session. Refusals happen before anything is
assigned and name the reason: an unknown kind, an unregistered schema version, a required label
the worker lacks, a malformed attach.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc.aio
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from mesh.errors import InvalidArgument, MeshError, NotFound
from mesh.fabric import KindStore
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with
from mesh.tasks import KINDS, TaskKind, user_pool
from mesh.telemetry import get_logger
from mesh.v1 import kind_pb2, kind_pb2_grpc, session_pb2, session_pb2_grpc
from services.gateway._auth import ANY_TENANT
from services.gateway._guard import Guard
from services.worker._remote import VersionsOf, queued_user_work, session_records

log = get_logger(__name__)

# Whether every given message type is a registered schema subject (the schema registry's answer).
SubjectsExist = Callable[[list[str]], Awaitable[list[str]]]


class Kinds(kind_pb2_grpc.KindServiceServicer):
    def __init__(
        self,
        store: KindStore,
        guard: Guard,
        js: JetStreamContext,
        sessions_kv: KeyValue,
        versions_of: VersionsOf,
        missing_subjects: SubjectsExist,
    ) -> None:
        self._store = store
        self._guard = guard
        self._js = js
        self._sessions_kv = sessions_kv
        self._versions_of = versions_of
        self._missing_subjects = missing_subjects

    async def RegisterKind(
        self, request: kind_pb2.RegisterKindRequest, context: Context
    ) -> kind_pb2.RegisterKindResponse:
        try:
            principal = await self._guard.from_grpc(context)
            self._guard.check(principal, "kind.register")
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
            self._guard.check(principal, "kind.read")
            await self._store.load()
            records = await session_records(self._sessions_kv)
            queued = await queued_user_work(self._js)
            reply = kind_pb2.ListKindsResponse()
            for name in sorted(KINDS):
                kind = KINDS[name]
                info = reply.kinds.add(kind=kind.declaration())
                if kind.builtin:
                    info.schema_versions.append(1)
                    continue
                info.schema_versions.extend(await self._versions_of(kind.input_type))
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


class SessionProxy(session_pb2_grpc.WorkerSessionServiceServicer):
    """The front door of the worker protocol: checks the worker's credential, then relays its stream
    to a session host (a worker process, over mutual TLS). The gateway runs no step itself — its
    NATS user still cannot write task events or work. A new session goes to the next host in turn;
    a resumed one to the host its session id names (`<host index>~<id>`)."""

    def __init__(self, hosts: list[session_pb2_grpc.WorkerSessionServiceStub], guard: Guard) -> None:
        if not hosts:
            raise ValueError("the worker protocol needs at least one session host")
        self._hosts = hosts
        self._guard = guard
        self._next = itertools.count()

    async def Connect(
        self, request_iterator: AsyncIterator[session_pb2.ConnectRequest], context: Context
    ) -> AsyncIterator[session_pb2.ConnectResponse]:
        try:
            # A worker serves every tenant's work of its kinds: its credential must reach every tenant.
            self._guard.check(await self._guard.from_grpc(context), "worker.attach", ANY_TENANT)
            first = await anext(request_iterator, None)
            if first is None or first.WhichOneof("body") != "attach":
                raise InvalidArgument("attach", "the first message must be attach")
            index, session_id = self._route(first.attach.session_id)
        except MeshError as exc:
            await abort_with(context, exc)
        first.attach.session_id = session_id

        async def relayed() -> AsyncIterator[session_pb2.ConnectRequest]:
            yield first
            async for message in request_iterator:
                yield message

        call = self._hosts[index].Connect(relayed(), wait_for_ready=True)
        try:
            async for message in call:
                if message.WhichOneof("body") == "attached":
                    message.attached.session_id = f"{index}~{message.attached.session_id}"
                yield message
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or exc.code().name)
        finally:
            call.cancel()  # the worker went away: the host sees a dropped stream (its session waits)

    def _route(self, session_id: str) -> tuple[int, str]:
        if not session_id:
            return next(self._next) % len(self._hosts), ""
        index, sep, inner = session_id.partition("~")
        if not sep or not index.isdigit() or int(index) >= len(self._hosts):
            raise NotFound(f"session {session_id[:40]!r} is not one this mesh gave out; attach without a session id")
        return int(index), inner
