"""GatewayService servicer: the public API, forwarding admission to the scheduler.

Its administrative calls — dead-letter replay and purge, API key creation, revocation, cancel —
are recorded in the audit (`_audit`): each fails closed (UNAVAILABLE with a retry-after, nothing
done) when the audit cannot record that it starts, and a refused attempt is recorded too."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import grpc.aio

from mesh.audit import digest
from mesh.errors import Conflict, InvalidArgument, MeshError, NotFound, PermissionDenied
from mesh.fabric import REPLAY_OF_LABEL, DeadLetterStore, EventLog, TaskIndex, fold, lane_totals
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with, raise_from_rpc_error
from mesh.tasks import check_task_id, new_task_id
from mesh.v1 import (
    deadletter_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    task_pb2,
)
from services.gateway._admit import Admissions
from services.gateway._audit import AuditedAction, Auditor, surface_of
from services.gateway._auth import ANY_TENANT, CredentialStore, Principal
from services.gateway._guard import Guard, no_such_task
from services.gateway._hub import EventHub, PendingWatch
from services.gateway._inference import ModelSignatures
from services.gateway._leases import StreamLease, guarded
from services.gateway._listing import TaskFilter, filter_of_request, filtered_page
from services.gateway._ratelimit import RateLimiter
from services.gateway._status import interval_s, status_changes

T = TypeVar("T")

MAX_WATCHED = 10_000
MAX_PAGE = 500


class Gateway(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(
        self,
        scheduler: scheduler_pb2_grpc.SchedulerServiceStub,
        events: EventLog,
        hub: EventHub,
        dead_letters: DeadLetterStore,
        *,
        guard: Guard,  # required: auth off is `Guard.disabled(events)`, never a forgotten argument
        auditor: Auditor,  # required too: no audit is `Auditor.disabled()`
        limiter: RateLimiter | None = None,
        index: TaskIndex | None = None,
        signatures: ModelSignatures | None = None,
    ) -> None:
        # Every single submit goes through the coalescer: one AdmitEach call for many callers.
        self._admissions = Admissions(scheduler)
        self._signatures = signatures  # `infer` tasks checked against their model at submit
        self._index = index
        self._limiter = limiter
        self._guard = guard
        self._auditor = auditor
        self._scheduler = scheduler
        self._events = events
        self._hub = hub
        self._dead_letters = dead_letters

    async def SubmitTask(
        self, request: gateway_pb2.SubmitTaskRequest, context: Context
    ) -> gateway_pb2.SubmitTaskResponse:
        try:
            principal = await self._guard.from_grpc(context)
            if not request.HasField("spec"):
                raise InvalidArgument("spec", "is required")
            admitted = await self.admit(request.spec, principal)
        except MeshError as exc:
            await abort_with(context, exc)
        return gateway_pb2.SubmitTaskResponse(
            task_id=admitted.task_id, deduplicated=admitted.deduplicated, sequence=admitted.sequence
        )

    async def SubmitTasks(
        self, request: gateway_pb2.SubmitTasksRequest, context: Context
    ) -> gateway_pb2.SubmitTasksResponse:
        try:
            principal = await self._guard.from_grpc(context)
            if not request.specs:
                raise InvalidArgument("specs", "at least one spec is required")
            for index, spec in enumerate(request.specs):
                spec.tenant = self._guard.tenant_for(principal, spec.tenant)
                self._guard.check(principal, "task.submit", spec.tenant)
                await self._check_model(spec, f"specs[{index}].")
            self._guard.spend(principal, len(request.specs))
            if self._limiter is not None:
                for tenant, count in Counter(spec.tenant for spec in request.specs).items():
                    self._limiter.take(tenant, count)
            await self._guard.ids_to_submit(list(request.specs))
            admitted = await self._ask(
                self._scheduler.AdmitTasks, scheduler_pb2.AdmitTasksRequest(specs=request.specs), 30.0
            )
        except MeshError as exc:
            await abort_with(context, exc)
        return gateway_pb2.SubmitTasksResponse(
            results=[
                gateway_pb2.SubmitTaskResponse(task_id=r.task_id, deduplicated=r.deduplicated, sequence=r.sequence)
                for r in admitted.results
            ]
        )

    async def WatchTasks(
        self, request: gateway_pb2.WatchTasksRequest, context: Context
    ) -> AsyncIterator[gateway_pb2.WatchTasksResponse]:
        if not request.task_ids:
            await abort_with(context, InvalidArgument("task_ids", "at least one task id is required"))
        if len(request.task_ids) > MAX_WATCHED:
            await abort_with(context, InvalidArgument("task_ids", f"at most {MAX_WATCHED} tasks per stream"))
        try:
            principal = await self._guard.from_grpc(context)
            for task_id in request.task_ids:
                check_task_id(task_id, "task_ids")
            task_ids = await self._guard.resolve_tasks(principal, "task.read", list(request.task_ids))
        except MeshError as exc:
            await abort_with(context, exc)
        stream = self._hub.watch_many(task_ids, request.final_only, protocol_of(context))
        async for event in self._leased(context, principal, stream):
            yield gateway_pb2.WatchTasksResponse(event=event)

    async def ListDeadLetters(
        self, request: gateway_pb2.ListDeadLettersRequest, context: Context
    ) -> gateway_pb2.ListDeadLettersResponse:
        try:
            principal = await self._guard.from_grpc(context)
            tenant = self._guard.tenant_for(principal, request.tenant)
            self._guard.check(principal, "dlq.read", tenant or ANY_TENANT)  # none named: every tenant's
        except MeshError as exc:
            await abort_with(context, exc)
        letters = await self._dead_letters.list(tenant, request.limit or 100)
        return gateway_pb2.ListDeadLettersResponse(dead_letters=letters)

    async def GetDeadLetter(
        self, request: gateway_pb2.GetDeadLetterRequest, context: Context
    ) -> gateway_pb2.GetDeadLetterResponse:
        try:
            principal = await self._guard.from_grpc(context)
            letter = await self._dead_letter(principal, "dlq.read", request.task_id)
        except MeshError as exc:
            await abort_with(context, exc)
        return gateway_pb2.GetDeadLetterResponse(dead_letter=letter)

    async def ReplayDeadLetter(
        self, request: gateway_pb2.ReplayDeadLetterRequest, context: Context
    ) -> gateway_pb2.ReplayDeadLetterResponse:
        """Admit the dead-lettered task again as `<task_id>-r`, labelled with the task it replays.

        The replay id is derived from the original, so repeating the call finds the same task.
        """
        try:
            principal = await self._guard.from_grpc(context)
            async with self._auditor.action(
                principal, "dlq.replay", f"dlq:{request.task_id}", surface_of(context.invocation_metadata())
            ) as act:
                admitted = await self._replay(principal, request.task_id, act)
        except MeshError as exc:
            await abort_with(context, exc)
        return gateway_pb2.ReplayDeadLetterResponse(task_id=admitted.task_id, deduplicated=admitted.deduplicated)

    async def _replay(
        self, principal: Principal | None, task_id: str, act: AuditedAction
    ) -> scheduler_pb2.AdmitTaskResponse:
        letter = await self._dead_letter(principal, "dlq.replay", task_id)
        # A letter whose task did not end DEAD_LETTERED (a worker crashed between the letter and
        # the final event, and the task then ran or was cancelled) is not a failure to run again.
        last = await self._events.last(letter.task_id)
        if last is not None and last.event.state != task_pb2.TASK_STATE_DEAD_LETTERED:
            state = task_pb2.TaskState.Name(last.event.state)
            raise Conflict(f"task {letter.task_id!r} did not end dead-lettered (it is {state}): nothing to replay")
        spec = task_pb2.TaskSpec()
        spec.CopyFrom(letter.spec)
        spec.task_id = f"{letter.task_id}-r"
        spec.labels[REPLAY_OF_LABEL] = letter.task_id
        spec.ClearField("deadline")  # the original's deadline has usually passed: a fresh default
        spec.idempotency_key = ""  # the original's key would resolve to the original task
        if len(spec.task_id) > 64:
            raise Conflict(f"task {letter.task_id!r} has been replayed too many times")
        await act.allowed(before=digest({"replayed_as": list(letter.replayed_as)}))
        admitted: scheduler_pb2.AdmitTaskResponse = await self._ask(
            self._scheduler.AdmitTask, scheduler_pb2.AdmitTaskRequest(spec=spec), 10.0
        )
        if admitted.task_id not in letter.replayed_as:
            letter.replayed_as.append(admitted.task_id)
            await self._dead_letters.record(letter)
        act.done(f"replayed as {admitted.task_id}", after=digest({"replayed_as": list(letter.replayed_as)}))
        return admitted

    async def PurgeDeadLetters(
        self, request: gateway_pb2.PurgeDeadLettersRequest, context: Context
    ) -> gateway_pb2.PurgeDeadLettersResponse:
        target = f"dlq:{request.task_id}" if request.task_id else f"dlq:tenant={request.tenant}"
        try:
            principal = await self._guard.from_grpc(context)
            async with self._auditor.action(
                principal, "dlq.purge", target, surface_of(context.invocation_metadata())
            ) as act:
                task_id, tenant = await self._purge_target(principal, request)
                act.approved(await self._guard.approve(principal, "dlq.purge", target))  # a fresh second factor
                await act.allowed()
                purged = await self._dead_letters.purge(task_id, tenant)
                act.done(f"purged {purged} dead letters")
        except MeshError as exc:
            await abort_with(context, exc)
        return gateway_pb2.PurgeDeadLettersResponse(purged=purged)

    async def _purge_target(
        self, principal: Principal | None, request: gateway_pb2.PurgeDeadLettersRequest
    ) -> tuple[str, str]:
        """What a purge deletes, as (task id, tenant): one letter the caller may purge, or a tenant's."""
        if request.task_id:
            if self._guard.wide(principal, "dlq.purge"):
                return check_task_id(request.task_id), ""  # a mesh id, purged whatever tenant owns it
            return (await self._dead_letter(principal, "dlq.purge", request.task_id)).task_id, ""
        if not request.tenant:
            self._guard.check(principal, "dlq.purge")  # a missing action first, then the missing field
            raise InvalidArgument("task_id", "name a task_id or a tenant to purge")
        self._guard.check(principal, "dlq.purge", request.tenant)
        return "", request.tenant

    async def admit(
        self, spec: task_pb2.TaskSpec, principal: Principal | None = None, *, mesh_id: str = ""
    ) -> scheduler_pb2.AdmitTaskResponse:
        """Admission through the scheduler, for gRPC, REST and WebSocket submits alike.
        `mesh_id`: an id this gateway chose with `new_task_id` for a spec that names none."""
        spec.tenant = self._guard.tenant_for(principal, spec.tenant)
        self._guard.check(principal, "task.submit", spec.tenant)
        self._guard.spend(principal)
        if self._limiter is not None:
            self._limiter.take(spec.tenant)
        await self._check_model(spec)
        spec.task_id = mesh_id or await self._guard.id_to_submit(spec.tenant, spec.task_id)
        return await self._admissions.admit(spec)

    async def _check_model(self, spec: task_pb2.TaskSpec, prefix: str = "") -> None:
        if self._signatures is None:
            return
        try:
            await self._signatures.check(spec)
        except InvalidArgument as exc:
            raise InvalidArgument(prefix + exc.field, exc.reason) from exc
        except NotFound as exc:
            raise NotFound(prefix + exc.message) from exc

    async def aclose(self) -> None:
        """Finish the admissions handed in; take no more."""
        await self._admissions.aclose()

    async def cancel(
        self, task_id: str, reason: str, principal: Principal | None = None, *, surface: str = "rest"
    ) -> int:
        """Cancellation through the scheduler, for every protocol (audited); returns the task's state."""
        async with self._auditor.action(principal, "task.cancel", f"task:{task_id}", surface) as act:
            mesh_id = await self._guard.resolve_task(principal, "task.cancel", task_id)
            await act.allowed(detail=reason)
            reply = await self._ask(
                self._scheduler.AbortTask, scheduler_pb2.AbortTaskRequest(task_id=mesh_id, reason=reason), 10.0
            )
            act.done(f"{task_pb2.TaskState.Name(reply.state)}: {reason}")
        return int(reply.state)

    @staticmethod
    async def _ask(method: Any, request: Any, timeout_s: float) -> Any:
        """Call the scheduler; its failures come back as the matching MeshError."""
        try:
            return await method(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)

    async def _dead_letter(self, principal: Principal | None, action: str, task_id: str) -> deadletter_pb2.DeadLetter:
        """The record of the task `task_id` names for `principal` (see `Guard.task_names`), which may
        take `action` on it. Another tenant's record answers exactly like a missing one, after the
        same reads."""
        self._guard.check(principal, action)  # the action first: a missing one says nothing of ids
        check_task_id(task_id)
        for candidate in self._guard.task_names(principal, task_id):
            letter = await self._dead_letters.get(candidate)
            if letter is not None and self._guard.allows(principal, action, letter.spec.tenant):
                return letter
        raise _no_dead_letter(task_id)

    async def WatchTask(
        self, request: gateway_pb2.WatchTaskRequest, context: Context
    ) -> AsyncIterator[gateway_pb2.WatchTaskResponse]:
        try:
            principal = await self._guard.from_grpc(context)
            task_id = await self._guard.resolve_task(principal, "task.read", check_task_id(request.task_id))
        except MeshError as exc:
            await abort_with(context, exc)
        stream = self._hub.watch(task_id, request.after_sequence, protocol=protocol_of(context))
        async for event in self._leased(context, principal, stream):
            yield gateway_pb2.WatchTaskResponse(event=event)

    async def RunTask(
        self, request: gateway_pb2.RunTaskRequest, context: Context
    ) -> AsyncIterator[gateway_pb2.RunTaskResponse]:
        pending: PendingWatch | None = None
        try:
            principal = await self._guard.from_grpc(context)
            if not request.HasField("spec"):
                raise InvalidArgument("spec", "is required")
            # Both actions before anything is stored: never admit a task the caller may not watch.
            self._guard.check(principal, "task.read", self._guard.tenant_for(principal, request.spec.tenant))
            if not request.spec.task_id:
                # The mesh's own id, chosen here: the watch joins before the task has an event,
                # so every event reaches it live and the store is not read back.
                pending = self._hub.watch_new(new_task_id(), protocol_of(context))
            admitted = await self.admit(request.spec, principal, mesh_id=pending.task_id if pending else "")
        except BaseException as exc:  # refused or cancelled: the joined watch leaves with it
            if pending is not None:
                await pending.aclose()
            if isinstance(exc, MeshError):
                await abort_with(context, exc)
            raise
        events: PendingWatch | AsyncIterator[task_pb2.TaskEvent]
        if pending is not None and admitted.task_id == pending.task_id:
            events = pending
        else:  # a client-chosen id, or an idempotency key that found an earlier task
            if pending is not None:
                await pending.aclose()
            events = self._hub.watch(admitted.task_id, 0, protocol=protocol_of(context))
        submitted = gateway_pb2.SubmitTaskResponse(
            task_id=admitted.task_id, deduplicated=admitted.deduplicated, sequence=admitted.sequence
        )
        try:
            async for response in self._leased(context, principal, _run_responses(submitted, events)):
                yield response
        finally:  # however the call ends, even before the events were looked at
            await events.aclose()  # type: ignore[union-attr]

    async def _leased(
        self, context: Context, principal: Principal | None, stream: AsyncIterator[T]
    ) -> AsyncIterator[T]:
        """`stream` under the caller's lease: announced, refreshable in-band, cut off when it ends."""
        with self._guard.lease(principal) as lease:
            try:
                await _announce(context, lease)
                async for event in guarded(stream, lease):
                    yield event
            except MeshError as exc:
                await abort_with(context, exc)
            finally:
                await stream.aclose()  # type: ignore[attr-defined]

    async def GetTask(self, request: gateway_pb2.GetTaskRequest, context: Context) -> gateway_pb2.GetTaskResponse:
        try:
            task = await self.get_task(request.task_id, await self._guard.from_grpc(context))
        except MeshError as exc:
            await abort_with(context, exc)
        return gateway_pb2.GetTaskResponse(task=task)

    async def get_task(self, task_id: str, principal: Principal | None) -> task_pb2.TaskInfo:
        """The task folded from its events, for gRPC and REST alike."""
        # Owner first, from the first event alone: another tenant's task must not cost the time a
        # fold of its whole chain takes, or it could be told from a missing one by timing.
        mesh_id = await self._guard.resolve_task(principal, "task.read", check_task_id(task_id))
        task = await self._fold(mesh_id)
        if task is None:
            raise no_such_task(task_id)
        return task

    async def CancelTask(
        self, request: gateway_pb2.CancelTaskRequest, context: Context
    ) -> gateway_pb2.CancelTaskResponse:
        try:
            principal = await self._guard.from_grpc(context)
            state = await self.cancel(
                check_task_id(request.task_id),
                request.reason,
                principal,
                surface=surface_of(context.invocation_metadata(), "grpc"),
            )
        except MeshError as exc:
            await abort_with(context, exc)
        return gateway_pb2.CancelTaskResponse(state=state)  # type: ignore[arg-type]

    async def GetMeshStatus(
        self, request: gateway_pb2.GetMeshStatusRequest, context: Context
    ) -> gateway_pb2.GetMeshStatusResponse:
        try:
            principal = await self._guard.from_grpc(context)
            self._guard.check(principal, "status.read")
            return await self.mesh_status(principal)
        except MeshError as exc:
            await abort_with(context, exc)

    async def WatchMeshStatus(
        self, request: gateway_pb2.WatchMeshStatusRequest, context: Context
    ) -> AsyncIterator[gateway_pb2.WatchMeshStatusResponse]:
        try:
            principal = await self._guard.from_grpc(context)
            self._guard.check(principal, "status.read")
        except MeshError as exc:
            await abort_with(context, exc)
        changes = status_changes(lambda: self.mesh_status(principal), interval_s(request.min_interval_ms))
        async for status in self._leased(context, principal, changes):
            yield gateway_pb2.WatchMeshStatusResponse(status=status)

    async def GetLoad(self, request: gateway_pb2.GetLoadRequest, context: Context) -> gateway_pb2.GetLoadResponse:
        try:
            principal = await self._guard.from_grpc(context)
            # Mesh-wide figures, every tenant's work summed: status.read in every tenant.
            self._guard.check(principal, "status.read", ANY_TENANT)
            request_s = scheduler_pb2.GetLoadReportRequest(window_s=request.window_s)
            reply = await self._ask(self._scheduler.GetLoadReport, request_s, 10.0)
        except MeshError as exc:
            await abort_with(context, exc)
        return gateway_pb2.GetLoadResponse(report=reply.report)

    async def mesh_status(self, principal: Principal | None) -> gateway_pb2.GetMeshStatusResponse:
        """The scheduler's queue and worker figures as `principal` may see them (status.read checked)."""
        reply = await self._ask(self._scheduler.GetQueueStatus, scheduler_pb2.GetQueueStatusRequest(), 10.0)
        queues, tenant_queues = list(reply.queues), list(reply.tenant_queues)
        reach = self._guard.reach(principal, "status.read")
        if reach is not None:
            # A tenant sees its own figures only: neither other tenants' names nor their depths.
            tenant_queues = [q for q in tenant_queues if q.tenant in reach]
            queues = lane_totals(tenant_queues)
        return gateway_pb2.GetMeshStatusResponse(
            queues=queues,
            tenant_queues=tenant_queues,
            workers=reply.workers,
            scaling=reply.scaling,
            inference_backends=reply.inference_backends,
        )

    async def ListTasks(self, request: gateway_pb2.ListTasksRequest, context: Context) -> gateway_pb2.ListTasksResponse:
        try:
            principal = await self._guard.from_grpc(context)
            tasks, token = await self.list_tasks(
                request.tenant, request.limit, request.page_token, principal, filter_of_request(request)
            )
        except MeshError as exc:
            await abort_with(context, exc)
        return gateway_pb2.ListTasksResponse(tasks=tasks, next_page_token=token)

    async def list_tasks(
        self,
        tenant: str,
        limit: int,
        page_token: str,
        principal: Principal | None,
        wanted: TaskFilter = TaskFilter(),  # noqa: B008 (frozen: one shared empty filter is safe)
    ) -> tuple[list[task_pb2.TaskInfo], str]:
        """A page of a tenant's tasks, newest first, that `wanted` keeps, for gRPC and REST alike
        (see `services.gateway._listing` for how a filtered page is found)."""
        tenant = self._guard.tenant_for(principal, tenant)
        if not tenant:
            raise InvalidArgument("tenant", "is required")
        check_task_id(tenant, "tenant")  # the same alphabet as task ids
        if page_token:
            check_task_id(page_token, "page_token")
        if limit > MAX_PAGE:
            raise InvalidArgument("limit", f"at most {MAX_PAGE}")
        self._guard.check(principal, "task.read", tenant)
        if self._index is None:
            raise Conflict("this gateway keeps no task index")

        async def fold_own(task_id: str) -> task_pb2.TaskInfo | None:
            # The index is the tenant's own list, but an entry can name a task id another tenant owns (a
            # client-chosen id claimed twice, its entry not yet taken back): never show someone else's task.
            task = await self._fold(task_id)
            return task if task is not None and task.spec.tenant == tenant else None

        async def states_of(task_ids: list[str]) -> dict[str, int]:
            return {task_id: stored.event.state for task_id, stored in (await self._events.last_many(task_ids)).items()}

        if wanted:
            ids = await self._index.ids(tenant, page_token)
            return await filtered_page(ids, wanted, limit or 50, fold_own, states_of)
        page, token = await self._index.page(tenant, limit or 50, page_token)
        tasks = await asyncio.gather(*(fold_own(task_id) for task_id in page))
        return [task for task in tasks if task is not None], token

    async def _fold(self, task_id: str) -> task_pb2.TaskInfo | None:
        events = [stored.event async for stored in self._events.read(task_id)]
        return fold(events) if events else None  # aged out of the event stream meanwhile

    async def RefreshStreamCredential(
        self, request: gateway_pb2.RefreshStreamCredentialRequest, context: Context
    ) -> gateway_pb2.RefreshStreamCredentialResponse:
        try:
            lease = self._guard.refresh(request.stream_id, await self._guard.from_grpc(context))
        except MeshError as exc:
            await abort_with(context, exc)
        response = gateway_pb2.RefreshStreamCredentialResponse()
        if lease.principal.expires_at is not None:
            response.expires_at.FromNanoseconds(int(lease.principal.expires_at * 1e9))
        return response

    async def CreateApiKey(
        self, request: gateway_pb2.CreateApiKeyRequest, context: Context
    ) -> gateway_pb2.CreateApiKeyResponse:
        try:
            principal = await self._guard.from_grpc(context)
            async with self._auditor.action(
                principal, "auth.key.create", f"tenant:{request.tenant}", surface_of(context.invocation_metadata())
            ) as act:
                key_id, token = await self._create_key(principal, request, act)
        except MeshError as exc:
            await abort_with(context, exc)
        return gateway_pb2.CreateApiKeyResponse(key_id=key_id, api_key=token)

    async def _create_key(
        self, principal: Principal | None, request: gateway_pb2.CreateApiKeyRequest, act: AuditedAction
    ) -> tuple[str, str]:
        if not request.tenant:
            raise InvalidArgument("tenant", "is required: the key's tenant, or '*' for every tenant")
        self._guard.check(principal, "auth.key.create", request.tenant)
        if self._guard.authenticator is None:
            raise Conflict("auth is off on this gateway: there is nowhere to keep keys")
        if request.tenant != ANY_TENANT:
            check_task_id(request.tenant, "tenant")  # same alphabet as task ids
        # As for tokens: a credential for every tenant holds only roles made for that, never a wide
        # reader's; and one for a tenant never a role for every tenant.
        roles = self._guard.roles.check_credential(request.tenant, request.roles)
        if principal is not None:
            beyond = self._guard.roles.beyond(principal.tenant, principal.roles, request.tenant, roles)
            if beyond:
                raise PermissionDenied(
                    f"credential {principal.credential_id} may not give roles: {beyond} "
                    "(a key never holds more than the credential that mints it)"
                )
        if "admin" in roles:  # minting an admin key wants a fresh second factor
            act.approved(await self._guard.approve(principal, "auth.key.create", act.resource))
        await act.allowed()
        key_id, token = await self._guard.authenticator.store.create_key(request.tenant, roles, request.name)
        # The key's id, tenant, roles and name; never its secret (it is shown once, to the caller only).
        kept = {"key_id": key_id, "tenant": request.tenant, "roles": sorted(roles), "name": request.name}
        act.done(f"key {key_id} for tenant {request.tenant}, roles {','.join(sorted(roles))}", after=digest(kept))
        return key_id, token

    async def RevokeCredential(
        self, request: gateway_pb2.RevokeCredentialRequest, context: Context
    ) -> gateway_pb2.RevokeCredentialResponse:
        try:
            principal = await self._guard.from_grpc(context)
            async with self._auditor.action(
                principal,
                "auth.revoke",
                f"credential:{request.credential_id}",
                surface_of(context.invocation_metadata()),
            ) as act:
                store = await self._check_revoke(principal, request.credential_id)
                revoked = await store.find_api_key(request.credential_id)
                if revoked is not None and "admin" in self._guard.roles.canonical(revoked.roles):
                    act.approved(await self._guard.approve(principal, "auth.revoke", act.resource))
                await act.allowed(detail=request.reason)
                await store.revoke(request.credential_id, request.reason)
                act.done(
                    f"revoked: {request.reason or 'revoked'}",
                    after=digest({"revoked": request.credential_id, "reason": request.reason}),
                )
        except MeshError as exc:
            await abort_with(context, exc)
        return gateway_pb2.RevokeCredentialResponse()

    async def _check_revoke(self, principal: Principal | None, credential_id: str) -> CredentialStore:
        """The store to revoke `credential_id` in, if `principal` may: a role for every tenant revokes
        any credential; a tenant's (tenant-admin) only the API keys of the tenants it reaches — a key
        of another tenant and no key at all answer the same."""
        self._guard.check(principal, "auth.revoke")
        if self._guard.authenticator is None:
            raise Conflict("auth is off on this gateway")
        store = self._guard.authenticator.store
        check_task_id(credential_id, "credential_id")
        if principal is None or self._guard.wide(principal, "auth.revoke"):
            return store
        key = await store.find_api_key(credential_id)
        if key is None or not self._guard.allows(principal, "auth.revoke", key.tenant):
            raise PermissionDenied(
                f"credential {principal.credential_id} may not auth.revoke {credential_id!r}: it is no API key of "
                "a tenant this credential administers (a token's jti needs a role for every tenant)"
            )
        return store


async def _run_responses(
    submitted: gateway_pb2.SubmitTaskResponse, events: PendingWatch | AsyncIterator[task_pb2.TaskEvent]
) -> AsyncIterator[gateway_pb2.RunTaskResponse]:
    """RunTask's stream: the admission, then the task's events from the first to the final one
    (RunTask closes `events`)."""
    yield gateway_pb2.RunTaskResponse(submitted=submitted)
    async for event in events:
        yield gateway_pb2.RunTaskResponse(event=event)


async def _announce(context: Context, lease: StreamLease | None) -> None:
    """Tell a stream's client the id to refresh its credential under."""
    if lease is not None:
        await context.send_initial_metadata((("tidemesh-stream-id", lease.stream_id),))


def _no_dead_letter(task_id: str) -> NotFound:
    return NotFound(f"task {task_id!r} has no dead-letter record")


def protocol_of(context: Context) -> str:
    """How the caller reached the gateway: ``grpc-web`` (a browser, through Envoy's gRPC-Web
    filter, which keeps the client's ``x-grpc-web`` header) or ``grpc``."""
    return "grpc-web" if any(key == "x-grpc-web" for key, _ in context.invocation_metadata() or ()) else "grpc"
