"""One gateway's access control, shared by gRPC, REST, SSE and WebSocket.

Auth is on unless it is turned off out loud: `Guard(events, authenticator)` requires every
call to name a credential (see `_auth`), each call to be allowed its action on the tenant it
touches (`check`: one action per call, `_routes`; the decision is `mesh.access`'s, and a refusal
is PERMISSION_DENIED naming the action and why), a sensitive action to bring a fresh second
factor when step-up is on (`approve`, `_stepup`), streams to hold a lease (see `_leases`), and
rate-limits submits per credential as well as per tenant. `Guard.disabled(events)` — the only
way to get a guard without an authenticator — lets every caller in anonymously (`None`) and logs
that it does.

The guard also reads task ids as the caller means them (`task_names`, `resolve_task`,
`id_to_submit`): an id a tenant gives is its own task's mesh id or a name it chose, scoped to
that tenant (`mesh.tasks._ids`), so two tenants' names never meet and a foreign task is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import grpc.aio
from aiohttp import web

from mesh.access import Decision, RoleCatalog
from mesh.errors import NotFound, PermissionDenied
from mesh.fabric import TOKEN_RE, EventLog
from mesh.tasks import scoped_task_id
from mesh.telemetry import get_logger
from mesh.v1 import task_pb2
from services.gateway._auth import ANY_TENANT, BUILTIN, Authenticator, Principal
from services.gateway._leases import Leases, StreamLease
from services.gateway._ratelimit import RateLimiter
from services.gateway._stepup import STEP_UP_HEADER, SecondFactors

log = get_logger(__name__)

_CHECKS_AT_ONCE = 256


class Guard:
    def __init__(
        self,
        events: EventLog,
        authenticator: Authenticator,
        credential_limiter: RateLimiter | None = None,
        second_factors: SecondFactors | None = None,
    ) -> None:
        # Fail closed: a forgotten authenticator must not quietly mean "anyone may call".
        if not isinstance(authenticator, Authenticator):
            raise TypeError("Guard needs an Authenticator; Guard.disabled(events) turns auth off on purpose")
        self._setup(events, authenticator, credential_limiter)
        self.second_factors = second_factors  # None: no step-up for sensitive actions

    @classmethod
    def disabled(cls, events: EventLog) -> Guard:
        """A guard that lets every caller in without a credential (development only), said in the log."""
        log.warning(
            "AUTH IS OFF on this gateway: every caller is anonymous and may do anything "
            "(start it with --auth-dir to require credentials)"
        )
        guard = cls.__new__(cls)
        guard._setup(events, None, None)
        guard.second_factors = None
        return guard

    def _setup(
        self, events: EventLog, authenticator: Authenticator | None, credential_limiter: RateLimiter | None
    ) -> None:
        self._events = events
        self.authenticator = authenticator
        self._limiter = credential_limiter
        self.leases = Leases(authenticator.store) if authenticator else None

    @property
    def enabled(self) -> bool:
        return self.authenticator is not None

    async def authenticate(self, authorization: str = "", api_key: str = "", step_up: str = "") -> Principal | None:
        """The principal of a credential; an API key minted a moment ago on another replica counts."""
        if self.authenticator is None:
            return None
        return await self.authenticator.identify(authorization, api_key, step_up)

    async def from_grpc(self, context: grpc.aio.ServicerContext) -> Principal | None:  # type: ignore[type-arg]
        """The caller of a gRPC call; an API key minted a moment ago on another replica counts."""
        if self.authenticator is None:
            return None
        metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        return await self.authenticate(
            metadata.get("authorization", ""), metadata.get("x-api-key", ""), metadata.get(STEP_UP_HEADER, "")
        )

    async def from_http(self, request: web.Request) -> Principal | None:
        """Header first; browsers' EventSource and WebSocket can only send ?access_token=."""
        if self.authenticator is None:
            return None
        authorization = request.headers.get("Authorization", "")
        if not authorization and (token := request.query.get("access_token", "")):
            authorization = f"ApiKey {token}" if token.startswith("tmk_") else f"Bearer {token}"
        return await self.authenticate(
            authorization, request.headers.get("X-Api-Key", ""), request.headers.get(STEP_UP_HEADER, "")
        )

    @property
    def roles(self) -> RoleCatalog:
        return self.authenticator.roles if self.authenticator is not None else BUILTIN

    def decide(self, principal: Principal | None, action: str, tenant: str | None = None) -> Decision:
        """May `principal` take `action` on `tenant` (``*``: every tenant; None: in some tenant, the
        check before a call learns whose task it touches)? With auth off, anyone may."""
        if principal is None:
            return Decision(True, action, tenant, "", "auth is off on this gateway: every caller may do anything")
        return self.roles.decide(principal.tenant, principal.roles, action, tenant)

    def allows(self, principal: Principal | None, action: str, tenant: str | None = None) -> bool:
        return self.decide(principal, action, tenant).allowed

    def check(self, principal: Principal | None, action: str, tenant: str | None = None) -> None:
        """PermissionDenied naming `action` and why, unless `principal` may take it on `tenant`."""
        decision = self.decide(principal, action, tenant)
        if not decision.allowed:
            assert principal is not None
            raise PermissionDenied(f"credential {principal.credential_id} may not {action}: {decision.reason}")

    async def approve(self, principal: Principal | None, action: str, resource: str) -> Principal | None:
        """For a sensitive action (`_stepup.SENSITIVE`), after its permission: `principal` with the
        ``amr`` of the step-up token it brought for `action` on `resource`; StepUpRequired (a
        challenge) without one. With step-up off (or auth off) it is `principal` as it came."""
        if principal is None or self.second_factors is None:
            return principal
        return await self.second_factors.approve(principal, action, resource)

    def wide(self, principal: Principal | None, action: str) -> bool:
        """Whether `principal` may take `action` in every tenant (auth off: yes)."""
        return self.allows(principal, action, ANY_TENANT)

    def reach(self, principal: Principal | None, action: str) -> frozenset[str] | None:
        """The tenants in which `principal` may take `action` (None: every tenant)."""
        if principal is None:
            return None
        return self.roles.reach(principal.tenant, principal.roles, action)

    @staticmethod
    def tenant_for(principal: Principal | None, requested: str) -> str:
        """The tenant a call acts for: the one it names, else the credential's own (if it has one)."""
        if requested or principal is None or principal.tenant == ANY_TENANT:
            return requested
        return principal.tenant

    def task_names(self, principal: Principal | None, task_id: str) -> list[str]:
        """The mesh ids `task_id` may name for `principal`, in the order to try them: its own task
        with that mesh id, else its task of that client-chosen name (see `mesh.tasks._ids`). A
        credential for every tenant, or a caller with auth off, has no namespace of its own: it
        gives mesh ids."""
        if principal is None or not TOKEN_RE.match(principal.tenant):
            return [task_id]
        return [task_id, scoped_task_id(principal.tenant, task_id)]

    async def resolve_task(self, principal: Principal | None, action: str, task_id: str) -> str:
        """The mesh id of the task `task_id` names for `principal`, which may take `action` on it;
        NotFound otherwise. A caller allowed `action` in only some tenants gets every name tried, so
        another tenant's task and a missing one cost the same reads and answer the same words."""
        if self.wide(principal, action):
            return task_id
        assert principal is not None
        self.check(principal, action)  # before anything about the task: a missing action says nothing of ids
        for candidate in self.task_names(principal, task_id):
            first = await self._events.first(candidate)
            if first is not None and self.allows(principal, action, first.event.spec.tenant):
                return candidate
        raise no_such_task(task_id)

    async def resolve_tasks(self, principal: Principal | None, action: str, task_ids: list[str]) -> list[str]:
        """`resolve_task` for many tasks (in their order), their owners read side by side."""
        if self.wide(principal, action):
            return list(task_ids)
        unique = list(dict.fromkeys(task_ids))
        resolved: dict[str, str] = {}
        for start in range(0, len(unique), _CHECKS_AT_ONCE):
            chunk = unique[start : start + _CHECKS_AT_ONCE]
            found = await asyncio.gather(*(self.resolve_task(principal, action, task_id) for task_id in chunk))
            resolved.update(zip(chunk, found, strict=True))
        return [resolved[task_id] for task_id in task_ids]

    async def id_to_submit(self, tenant: str, task_id: str) -> str:
        """The mesh id a submit for `tenant` that names `task_id` goes under: the tenant's own task
        with that mesh id if it has one (a retry with the id submit returned, or a task admitted
        before ids were scoped), else the scoped id of that name — never another tenant's task."""
        if not task_id or not TOKEN_RE.match(task_id) or not TOKEN_RE.match(tenant):
            return task_id  # nothing chosen, or a bad id or tenant the scheduler refuses naming the field
        first = await self._events.first(task_id)
        if first is not None and first.event.spec.tenant == tenant:
            return task_id
        return scoped_task_id(tenant, task_id)

    async def ids_to_submit(self, specs: list[task_pb2.TaskSpec]) -> None:
        """`id_to_submit` for each spec naming an id, in place, the lookups side by side."""
        named = [spec for spec in specs if spec.task_id]
        for start in range(0, len(named), _CHECKS_AT_ONCE):
            chunk = named[start : start + _CHECKS_AT_ONCE]
            ids = await asyncio.gather(*(self.id_to_submit(spec.tenant, spec.task_id) for spec in chunk))
            for spec, task_id in zip(chunk, ids, strict=True):
                spec.task_id = task_id

    def spend(self, principal: Principal | None, count: int = 1) -> None:
        if principal is not None and self._limiter is not None:
            self._limiter.take(principal.credential_id, count)

    @contextlib.contextmanager
    def lease(self, principal: Principal | None) -> Iterator[StreamLease | None]:
        if principal is None or self.leases is None:
            yield None
            return
        with self.leases.hold(principal) as lease:
            yield lease

    def refresh(self, stream_id: str, principal: Principal | None) -> StreamLease:
        if principal is None or self.leases is None:
            raise NotFound("auth is off on this gateway: its streams hold no credential to refresh")
        return self.leases.refresh(stream_id, principal)


def no_such_task(task_id: str) -> NotFound:
    """What a missing task and another tenant's task both answer, word for word."""
    return NotFound(f"task {task_id!r} does not exist")
