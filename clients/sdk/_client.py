"""`Client`: submit, watch with automatic resume, get, cancel, status — through Envoy or direct."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.protobuf.message import Message

from clients.sdk._credentials import credential_interceptors
from clients.sdk._models import Models
from clients.sdk._retry import jittered, should_resume, should_retry
from mesh.errors import InvalidArgument, MeshError
from mesh.lifecycle import Lifecycle
from mesh.priority import CLASS_BY_NAME
from mesh.rpc import raise_from_rpc_error
from mesh.schemas import from_json, message_class, to_dict, type_urls
from mesh.tasks import KINDS, TYPE_URL_PREFIX, payload_from_json, qos_tier
from mesh.v1 import (
    access_pb2,
    access_pb2_grpc,
    deadletter_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    kind_pb2,
    kind_pb2_grpc,
    schema_pb2,
    schema_pb2_grpc,
    status_pb2,
    task_pb2,
)

STEP_UP_HEADER = "x-tidemesh-step-up"  # a step-up token, with the one call it approves

TERMINAL = frozenset(
    {
        task_pb2.TASK_STATE_SUCCEEDED,
        task_pb2.TASK_STATE_FAILED,
        task_pb2.TASK_STATE_CANCELLED,
        task_pb2.TASK_STATE_DEAD_LETTERED,
    }
)


def tls_credentials(ca: str | Path | None = None) -> grpc.ChannelCredentials:
    """Channel credentials that trust `ca` (or `TIDEMESH_CA`), else the system's roots."""
    path = ca or os.environ.get("TIDEMESH_CA", "")
    return grpc.ssl_channel_credentials(Path(path).read_bytes() if path else None)


def mesh_channel(
    endpoint: str,
    credential: str | Callable[[], str] = "",
    ca: str | Path | None = None,
    insecure: bool = False,
    surface: str = "",
) -> grpc.aio.Channel:
    """A channel to the mesh's front door carrying `credential` (or what the callable returns at each
    call) on every call: TLS verified against `ca` (`TIDEMESH_CA`, else the system's roots), or
    plaintext to a mesh started with ``--insecure``. `surface` (cli, console, dash, desktop) is
    declared on every call, for the audit of administrative actions."""
    current = credential if callable(credential) else (lambda: credential)
    interceptors = credential_interceptors(current, surface)
    if insecure:
        return grpc.aio.insecure_channel(endpoint, interceptors=interceptors)
    return grpc.aio.secure_channel(endpoint, tls_credentials(ca), interceptors=interceptors)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def task_state(state: int | str) -> task_pb2.TaskState:
    """A TaskState from its number or its name in any case, with or without TASK_STATE_
    (``"dead-lettered"`` too); an unknown name raises InvalidArgument naming `states`."""
    if isinstance(state, int):
        return cast(task_pb2.TaskState, state)  # a number as given: the mesh checks it
    name = state.strip().upper().replace("-", "_").removeprefix("TASK_STATE_")
    if name == "UNSPECIFIED" or f"TASK_STATE_{name}" not in task_pb2.TaskState.keys():
        known = ", ".join(n.removeprefix("TASK_STATE_").lower() for n in task_pb2.TaskState.keys()[1:])
        raise InvalidArgument("states", f"unknown state {state!r} (one of: {known})")
    return cast(task_pb2.TaskState, task_pb2.TaskState.Value(f"TASK_STATE_{name}"))


def _unix_ns(moment: datetime | float, field: str) -> int:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise InvalidArgument(field, "a datetime needs its timezone (e.g. datetime.now(UTC))")
        return (moment - _EPOCH) // timedelta(microseconds=1) * 1000
    return round(moment * 1_000_000_000)


def payload_for(kind: str, payload: dict[str, Any]) -> task_pb2.TaskPayload:
    """Build the typed payload of `kind` from plain JSON fields."""
    return payload_from_json(kind, payload)


class Client(Lifecycle):
    """``async with Client("localhost:8080") as client: ...`` (usable from construction; `close` once)."""

    noun = "the client"

    def __init__(
        self,
        endpoint: str,
        tenant: str = "default",
        max_resume_attempts: int = 10,
        credential: str = "",
        ca: str | Path | None = None,
        insecure: bool = False,
        surface: str = "",
    ) -> None:
        """`credential`: an API key (``tmk_…``) or a JWT, sent on every call; `surface`: the
        tool this client is (cli, dash, desktop), named in the audit of administrative calls.

        The connection is TLS: the server is verified against `ca` (a local mesh's root,
        ``<state>/pki/ca.crt``; `TIDEMESH_CA` when not given), else the system's roots.
        `insecure` speaks plaintext, to a mesh started with ``--insecure`` only."""
        self.endpoint = endpoint
        self.tenant = tenant
        self._max_resume_attempts = max_resume_attempts
        self._credential = credential
        self._streams: set[str] = set()  # ids of this client's open streams, for refreshes
        self._channel = mesh_channel(endpoint, lambda: self._credential, ca, insecure, surface)
        self._stub = gateway_pb2_grpc.GatewayServiceStub(self._channel)
        self._schemas = schema_pb2_grpc.SchemaServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._kind_service = kind_pb2_grpc.KindServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._access = access_pb2_grpc.AccessServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.models = Models(self._channel)  # your models: list, metadata, infer, stream, load, unload
        self._kinds: dict[str, kind_pb2.KindDeclaration] = {}
        self._classes: dict[tuple[str, int], type[Message]] = {}
        self._open_now()

    async def refresh_credential(self, credential: str) -> None:
        """Use `credential` from now on — for new calls and, in-band, for every open stream."""
        self._credential = credential
        for stream_id in list(self._streams):
            request = gateway_pb2.RefreshStreamCredentialRequest(stream_id=stream_id)
            try:
                await self._stub.RefreshStreamCredential(request, timeout=10.0)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:  # that stream just ended
                    raise_from_rpc_error(exc)

    async def _track(self, call: Any) -> str:
        """Remember an open stream's id (auth on) so refreshes reach it."""
        metadata = await call.initial_metadata()
        stream_id = dict(metadata or ()).get("tidemesh-stream-id", "")
        if stream_id:
            self._streams.add(stream_id)
        return stream_id

    async def _stop(self) -> None:
        await self._channel.close()

    async def submit(
        self,
        kind: str,
        payload: dict[str, Any] | task_pb2.TaskPayload | Message,
        priority: str = "standard",
        idempotency_key: str = "",
        task_id: str = "",
        timeout_s: float = 30.0,
        ordering_key: str = "",
        deadline_s: float | None = None,
        qos: str = "guaranteed",
        schema_version: int = 0,
    ) -> gateway_pb2.SubmitTaskResponse:
        """Admit one task; returns once it is durably stored. `deadline_s` is relative to now.

        Transient failures (UNAVAILABLE: a broker node failing over, a service restarting) are
        retried with backoff for up to `timeout_s` (see `_retry`). Every try carries the same
        idempotency key (one is generated when none is given), so a retried submit never creates
        a second task.
        """
        spec = await self._keyed_spec(
            kind, payload, priority, idempotency_key, task_id, ordering_key, deadline_s, qos, schema_version
        )
        retry = _Retry(timeout_s)
        while True:
            try:
                return await self._stub.SubmitTask(gateway_pb2.SubmitTaskRequest(spec=spec), timeout=retry.left_s())
            except grpc.aio.AioRpcError as exc:
                retry.or_raise(exc)
            await retry.wait()

    async def _keyed_spec(
        self,
        kind: str,
        payload: dict[str, Any] | task_pb2.TaskPayload | Message,
        priority: str,
        idempotency_key: str,
        task_id: str,
        ordering_key: str,
        deadline_s: float | None,
        qos: str,
        schema_version: int,
    ) -> task_pb2.TaskSpec:
        """`spec` for a submit the SDK may retry: with an idempotency key (one is generated when
        none is given), a user kind's JSON payload encoded through the schema registry."""
        key = idempotency_key or f"sdk-{uuid.uuid4().hex}"
        if isinstance(payload, dict) and not (kind in KINDS and KINDS[kind].builtin):  # a user kind's JSON
            payload = await self.user_payload(kind, payload, schema_version)
        return self.spec(kind, payload, priority, key, task_id, ordering_key, deadline_s, qos, schema_version)

    def spec(
        self,
        kind: str,
        payload: dict[str, Any] | task_pb2.TaskPayload | Message,
        priority: str = "standard",
        idempotency_key: str = "",
        task_id: str = "",
        ordering_key: str = "",
        deadline_s: float | None = None,
        qos: str = "guaranteed",
        schema_version: int = 0,
    ) -> task_pb2.TaskSpec:
        """A TaskSpec for this client's tenant, e.g. for `submit_many`. `qos="best_effort"`: partial
        results travel live only, and a slow watcher may lose some (see QosTier)."""
        if priority not in CLASS_BY_NAME:
            raise InvalidArgument(
                "priority", f"unknown priority class {priority!r} (one of: {', '.join(CLASS_BY_NAME)})"
            )
        if isinstance(payload, task_pb2.TaskPayload):
            typed = payload
        elif isinstance(payload, Message):  # a user kind's input message
            typed = task_pb2.TaskPayload(
                custom=any_pb2.Any(
                    type_url=TYPE_URL_PREFIX + payload.DESCRIPTOR.full_name, value=payload.SerializeToString()
                )
            )
        else:
            typed = payload_for(kind, payload)
        spec = task_pb2.TaskSpec(
            task_id=task_id,
            tenant=self.tenant,
            kind=kind,
            priority_class=CLASS_BY_NAME[priority],
            idempotency_key=idempotency_key,
            payload=typed,
            ordering_key=ordering_key,
            qos=qos_tier(qos),
            schema_version=schema_version,
        )
        if deadline_s is not None:
            spec.deadline.FromNanoseconds(int((time.time() + deadline_s) * 1e9))
        return spec

    async def _message_class(self, subject: str, version: int = 0) -> type[Message]:
        """The registered message type `subject` (version 0: the latest), from the schema registry."""
        cached = self._classes.get((subject, version))
        if cached is not None:
            return cached
        request = schema_pb2.GetSchemaRequest(subject=subject, version=version)
        reply = await self._call(self._schemas.GetSchema, request)
        found = message_class(reply.schema.descriptor_set, subject)
        if version:  # a version never changes; "the latest" is asked again next time
            self._classes[(subject, version)] = found
        return found

    async def message_class(self, subject: str, version: int = 0) -> type[Message]:
        """The message type the schema registry holds for `subject` (version 0: the latest), e.g. a
        user kind's input type, to build its payload or a form from."""
        return await self._message_class(subject, version)

    async def user_payload(self, kind: str, fields: dict[str, Any], schema_version: int = 0) -> task_pb2.TaskPayload:
        """A user kind's payload from plain JSON fields, through the kind's registered input type."""
        if kind not in self._kinds:
            reply = await self._call(self._kind_service.ListKinds, kind_pb2.ListKindsRequest())
            self._kinds.update({info.kind.name: info.kind for info in reply.kinds})
        declaration = self._kinds.get(kind)
        if declaration is None:
            raise InvalidArgument("kind", f"unknown task kind {kind!r} (one of: {', '.join(sorted(self._kinds))})")
        message = from_json(await self._message_class(declaration.input_type, schema_version), fields, "payload")
        return task_pb2.TaskPayload(
            custom=any_pb2.Any(type_url=TYPE_URL_PREFIX + declaration.input_type, value=message.SerializeToString())
        )

    async def register_kind(self, declaration: kind_pb2.KindDeclaration) -> kind_pb2.RegisterKindResponse:
        """Declare a user kind (admin); its input and output types must be registered schemas."""
        reply: kind_pb2.RegisterKindResponse = await self._call(
            self._kind_service.RegisterKind, kind_pb2.RegisterKindRequest(kind=declaration)
        )
        return reply

    async def register_schema(self, subject: str, descriptor_set: bytes) -> schema_pb2.RegisterSchemaResponse:
        """Register a version of `subject` (admin); an incompatible one is refused listing every violation."""
        request = schema_pb2.RegisterSchemaRequest(subject=subject, descriptor_set=descriptor_set)
        reply: schema_pb2.RegisterSchemaResponse = await self._call(self._schemas.RegisterSchema, request)
        return reply

    async def kinds(self) -> list[kind_pb2.KindInfo]:
        """Every kind: declarations, schema versions, attached workers, and user work waiting."""
        reply = await self._call(self._kind_service.ListKinds, kind_pb2.ListKindsRequest())
        self._kinds.update({info.kind.name: info.kind for info in reply.kinds})
        return list(reply.kinds)

    async def to_dict(self, message: Message) -> dict[str, Any]:
        """`message` as JSON, with the user messages inside it (outputs, payloads) written field by
        field through their registered types (base64 where the registry does not know one)."""
        classes = {}
        for url in type_urls(message):
            with contextlib.suppress(MeshError):
                classes[url] = await self._message_class(url.removeprefix(TYPE_URL_PREFIX))
        return to_dict(message, classes)

    async def submit_many(
        self, specs: list[task_pb2.TaskSpec], timeout_s: float = 60.0
    ) -> list[gateway_pb2.SubmitTaskResponse]:
        """Admit many tasks in one call; results in the order of `specs`."""
        try:
            reply = await self._stub.SubmitTasks(gateway_pb2.SubmitTasksRequest(specs=specs), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)
        return list(reply.results)

    async def watch_many(self, task_ids: list[str], final_only: bool = True) -> AsyncIterator[task_pb2.TaskEvent]:
        """Events of many tasks over one stream, until each has ended."""
        call = self._stub.WatchTasks(gateway_pb2.WatchTasksRequest(task_ids=task_ids, final_only=final_only))
        stream_id = ""
        try:
            stream_id = await self._track(call)
            async for response in call:
                yield response.event
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)
        finally:
            self._streams.discard(stream_id)
            call.cancel()

    async def run(
        self,
        kind: str,
        payload: dict[str, Any] | task_pb2.TaskPayload | Message,
        priority: str = "standard",
        idempotency_key: str = "",
        task_id: str = "",
        timeout_s: float = 30.0,
        ordering_key: str = "",
        deadline_s: float | None = None,
        qos: str = "guaranteed",
        schema_version: int = 0,
    ) -> AsyncIterator[task_pb2.TaskEvent]:
        """Submit a task and yield its events until the final one, in one call (RunTask) — what
        `submit` then `watch` do, with one round trip less per task.

        Until the task is admitted, a transient failure is retried as `submit` retries it (same
        idempotency key, so never a second task); once admitted, a broken stream is resumed with
        `watch` after the last event seen, without a gap or a duplicate."""
        spec = await self._keyed_spec(
            kind, payload, priority, idempotency_key, task_id, ordering_key, deadline_s, qos, schema_version
        )
        retry = _Retry(timeout_s)
        while True:
            call = self._stub.RunTask(gateway_pb2.RunTaskRequest(spec=spec))
            admitted = ""
            last = 0
            stream_id = ""
            try:
                stream_id = await self._track(call)
                async for response in call:
                    if response.WhichOneof("kind") == "submitted":
                        admitted = response.submitted.task_id
                        continue
                    event = response.event
                    if _fresh(event, last):
                        last = event.sequence if not event.live_index else last
                        if event.final:
                            await _ended(call)
                        yield event
                        if event.final:
                            return
                if not admitted:
                    raise MeshError("RunTask ended without admitting the task")
                return
            except grpc.aio.AioRpcError as exc:
                if admitted:
                    break  # admitted: resume below with watch
                retry.or_raise(exc)
            finally:
                self._streams.discard(stream_id)
                call.cancel()
            await retry.wait()
        async for event in self.watch(admitted, after_sequence=last):
            yield event

    async def watch(self, task_id: str, after_sequence: int = 0) -> AsyncIterator[task_pb2.TaskEvent]:
        """Events until the final one. Reconnects with backoff and resumes after the last
        sequence seen, so a dropped connection causes neither a gap nor a duplicate."""
        last = after_sequence
        failures = 0
        while True:
            call = self._stub.WatchTask(gateway_pb2.WatchTaskRequest(task_id=task_id, after_sequence=last))
            stream_id = ""
            try:
                stream_id = await self._track(call)
                async for response in call:
                    failures = 0
                    event = response.event
                    if not _fresh(event, last):
                        continue
                    if not event.live_index:
                        last = event.sequence
                    if event.final:
                        await _ended(call)
                    yield event
                    if event.final:
                        return
                return
            except grpc.aio.AioRpcError as exc:
                if not should_resume(exc) or failures >= self._max_resume_attempts:
                    raise_from_rpc_error(exc)
                failures += 1
                await asyncio.sleep(jittered(min(5.0, 0.1 * 2**failures)))
            finally:
                self._streams.discard(stream_id)
                call.cancel()

    async def get(self, task_id: str) -> task_pb2.TaskInfo:
        try:
            return (await self._stub.GetTask(gateway_pb2.GetTaskRequest(task_id=task_id), timeout=10.0)).task
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)

    async def cancel(self, task_id: str, reason: str = "") -> int:
        try:
            reply = await self._stub.CancelTask(
                gateway_pb2.CancelTaskRequest(task_id=task_id, reason=reason), timeout=10.0
            )
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)
        return reply.state

    async def dead_letters(self, tenant: str = "", limit: int = 100) -> list[deadletter_pb2.DeadLetter]:
        reply = await self._call(
            self._stub.ListDeadLetters, gateway_pb2.ListDeadLettersRequest(tenant=tenant, limit=limit)
        )
        return list(reply.dead_letters)

    async def dead_letter(self, task_id: str) -> deadletter_pb2.DeadLetter:
        return (
            await self._call(self._stub.GetDeadLetter, gateway_pb2.GetDeadLetterRequest(task_id=task_id))
        ).dead_letter

    async def replay(self, task_id: str) -> gateway_pb2.ReplayDeadLetterResponse:
        """Run a dead-lettered task again (as `<task_id>-r`); repeating the call is harmless."""
        return await self._call(self._stub.ReplayDeadLetter, gateway_pb2.ReplayDeadLetterRequest(task_id=task_id))

    async def purge_dead_letters(self, task_id: str = "", tenant: str = "", step_up: str = "") -> int:
        """Delete one dead letter, or a tenant's; `step_up`: a token of `step_up()` where the mesh
        wants a second factor (StepUpRequired names the action and resource to step up for)."""
        request = gateway_pb2.PurgeDeadLettersRequest(task_id=task_id, tenant=tenant)
        return (await self._call(self._stub.PurgeDeadLetters, request, step_up)).purged

    async def list_tasks(
        self,
        tenant: str = "",
        limit: int = 50,
        page_token: str = "",
        *,
        kind: str = "",
        states: Iterable[int | str] = (),
        created_after: datetime | float | None = None,
        created_before: datetime | float | None = None,
    ) -> tuple[list[task_pb2.TaskInfo], str]:
        """A page of tasks, newest first, and the token of the next page ("" on the last). `tenant`
        defaults to this client's. The mesh filters: only `kind`, only `states` (TaskState numbers
        or names: ``"running"``, ``"TASK_STATE_RUNNING"``), only tasks created in
        [`created_after`, `created_before`) (timezone-aware datetimes or Unix seconds). A filtered
        page may be short, even empty, with a token to go on from (see ListTasksResponse)."""
        request = gateway_pb2.ListTasksRequest(
            tenant=tenant or self.tenant,
            limit=limit,
            page_token=page_token,
            kind=kind,
            states=[task_state(state) for state in states],
        )
        for field, moment in (("created_after", created_after), ("created_before", created_before)):
            if moment is not None:
                getattr(request, field).FromNanoseconds(_unix_ns(moment, field))
        reply = await self._call(self._stub.ListTasks, request)
        return list(reply.tasks), reply.next_page_token

    async def create_api_key(
        self, tenant: str, roles: list[str], name: str = "", step_up: str = ""
    ) -> gateway_pb2.CreateApiKeyResponse:
        """A new API key for `tenant` ('*': every tenant) with `roles` (viewer, submitter, operator, …;
        never more than this client's credential holds: auth.key.create); returned only here. An
        admin key may want a step-up token (`step_up`)."""
        request = gateway_pb2.CreateApiKeyRequest(tenant=tenant, roles=roles, name=name)
        return await self._call(self._stub.CreateApiKey, request, step_up)

    async def revoke_credential(self, credential_id: str, reason: str = "", step_up: str = "") -> None:
        """Revoke an API key (by key id) or a token (by jti); its open streams end at once. An admin
        key's revocation may want a step-up token (`step_up`)."""
        request = gateway_pb2.RevokeCredentialRequest(credential_id=credential_id, reason=reason)
        await self._call(self._stub.RevokeCredential, request, step_up)

    async def check_access(self, action: str, tenant: str = "") -> access_pb2.CheckAccessResponse:
        """Whether this client's credential may take `action` (in `tenant`; empty: its own), and why."""
        return await self._call(self._access.CheckAccess, access_pb2.CheckAccessRequest(action=action, tenant=tenant))

    async def enroll_totp(self, current_code: str = "") -> access_pb2.EnrollTotpResponse:
        """A new TOTP authenticator for this credential (its secret, shown once), pending until
        `confirm_totp`; replacing an active one takes a code of it."""
        return await self._call(self._access.EnrollTotp, access_pb2.EnrollTotpRequest(current_code=current_code))

    async def confirm_totp(self, code: str) -> None:
        await self._call(self._access.ConfirmTotp, access_pb2.ConfirmTotpRequest(code=code))

    async def step_up(self, action: str, resource: str, code: str) -> access_pb2.StepUpResponse:
        """A short-lived token approving `action` on `resource` once (amr otp), for a fresh code;
        pass it as `step_up=` to that call."""
        request = access_pb2.StepUpRequest(action=action, resource=resource, code=code)
        return await self._call(self._access.StepUp, request)

    async def _call(self, method: Any, request: Any, step_up: str = "") -> Any:
        try:
            if step_up:
                return await method(request, timeout=10.0, metadata=((STEP_UP_HEADER, step_up),))
            return await method(request, timeout=10.0)
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)

    async def status(self) -> gateway_pb2.GetMeshStatusResponse:
        try:
            return await self._stub.GetMeshStatus(gateway_pb2.GetMeshStatusRequest(), timeout=10.0)
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)

    async def load(self, window_s: float = 0.0) -> status_pb2.LoadReport:
        """The load the mesh measured over the last `window_s` seconds (0: the scheduler's window,
        300 s by default), per pool and priority class: arrival and service rates, service-time
        samples (seconds one attempt held its slot), queue wait p50/p95, depth, workers and slots.
        Each `PoolClassLoad` is what `mesh.capacity.Load` takes. Needs status.read in every tenant."""
        request = gateway_pb2.GetLoadRequest(window_s=window_s)
        response: gateway_pb2.GetLoadResponse = await self._call(self._stub.GetLoad, request)
        return response.report

    async def watch_status(self, min_interval_ms: int = 1000) -> AsyncIterator[gateway_pb2.GetMeshStatusResponse]:
        """The mesh status now, then each time it changes, at most once per `min_interval_ms` (the
        gateway clamps it to 100..60000). Never ends on its own: a dropped stream is reopened with
        backoff (a reopened stream starts with the status of that moment)."""
        request = gateway_pb2.WatchMeshStatusRequest(min_interval_ms=min_interval_ms)
        failures = 0
        while True:
            call = self._stub.WatchMeshStatus(request)
            stream_id = ""
            try:
                stream_id = await self._track(call)
                async for response in call:
                    failures = 0
                    yield response.status
            except grpc.aio.AioRpcError as exc:
                if not should_resume(exc) or failures >= self._max_resume_attempts:
                    raise_from_rpc_error(exc)
            finally:
                self._streams.discard(stream_id)
                call.cancel()
            failures += 1  # an ended stream is reopened too: the gateway ends it only when it stops
            await asyncio.sleep(jittered(min(5.0, 0.1 * 2**failures)))


class _Retry:
    """The backoff of a retried submit: jittered, doubling from 0.1 s to 2 s, within `timeout_s`."""

    def __init__(self, timeout_s: float) -> None:
        self._deadline = time.monotonic() + timeout_s
        self._delay_s = 0.1

    def left_s(self) -> float:
        return max(0.5, self._deadline - time.monotonic())

    def or_raise(self, exc: grpc.aio.AioRpcError) -> None:
        """Return if `exc` is worth another try that fits in time; else raise it as a MeshError."""
        if not should_retry(exc, idempotent=True) or time.monotonic() + self._delay_s > self._deadline:
            raise_from_rpc_error(exc)

    async def wait(self) -> None:
        await asyncio.sleep(jittered(self._delay_s))
        self._delay_s = min(self._delay_s * 2, 2.0)


async def _ended(call: Any, within_s: float = 1.0) -> None:
    """Let a stream whose final event arrived end on its own (the gateway ends it right after)
    before the caller moves on: cancelling it instead sends a reset, and a connection on which
    most streams are reset early is closed by Envoy as a rapid-reset flood (GOAWAY)."""
    with contextlib.suppress(grpc.aio.AioRpcError, TimeoutError):
        async with asyncio.timeout(within_s):
            await call.code()


def _fresh(event: task_pb2.TaskEvent, last: int) -> bool:
    """Whether a watcher that has seen up to sequence `last` should get `event`: a stored event
    after it, or a best-effort partial of the step after it (`live_index`: never resumed)."""
    if event.live_index:
        return event.sequence == last
    return event.sequence > last
