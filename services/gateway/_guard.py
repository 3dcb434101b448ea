"""One gateway's access control, shared by gRPC, REST, SSE and WebSocket.

Auth is on unless it is turned off out loud: `Guard(events, authenticator)` requires every
call to name a credential (see `_auth`), each operation to hold a role on the tenant it
touches, streams to hold a lease (see `_leases`), and rate-limits submits per credential as
well as per tenant. `Guard.disabled(events)` — the only way to get a guard without an
authenticator — lets every caller in anonymously (`None`) and logs that it does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import grpc.aio
from aiohttp import web

from mesh.errors import MeshError, NotFound
from mesh.fabric import EventLog
from mesh.telemetry import get_logger
from services.gateway._auth import ANY_TENANT, Authenticator, Principal, authorize
from services.gateway._leases import Leases, StreamLease
from services.gateway._ratelimit import RateLimiter

log = get_logger(__name__)

_CHECKS_AT_ONCE = 256


class Guard:
    def __init__(
        self,
        events: EventLog,
        authenticator: Authenticator,
        credential_limiter: RateLimiter | None = None,
    ) -> None:
        # Fail closed: a forgotten authenticator must not quietly mean "anyone may call".
        if not isinstance(authenticator, Authenticator):
            raise TypeError("Guard needs an Authenticator; Guard.disabled(events) turns auth off on purpose")
        self._setup(events, authenticator, credential_limiter)

    @classmethod
    def disabled(cls, events: EventLog) -> Guard:
        """A guard that lets every caller in without a credential (development only), said in the log."""
        log.warning(
            "AUTH IS OFF on this gateway: every caller is anonymous and may do anything "
            "(start it with --auth-dir to require credentials)"
        )
        guard = cls.__new__(cls)
        guard._setup(events, None, None)
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

    async def authenticate(self, authorization: str = "", api_key: str = "") -> Principal | None:
        """The principal of a credential; an API key minted a moment ago on another replica counts."""
        if self.authenticator is None:
            return None
        return await self.authenticator.identify(authorization, api_key)

    async def from_grpc(self, context: grpc.aio.ServicerContext) -> Principal | None:  # type: ignore[type-arg]
        """The caller of a gRPC call; an API key minted a moment ago on another replica counts."""
        if self.authenticator is None:
            return None
        metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        return await self.authenticate(metadata.get("authorization", ""), metadata.get("x-api-key", ""))

    async def from_http(self, request: web.Request) -> Principal | None:
        """Header first; browsers' EventSource and WebSocket can only send ?access_token=."""
        if self.authenticator is None:
            return None
        authorization = request.headers.get("Authorization", "")
        if not authorization and (token := request.query.get("access_token", "")):
            authorization = f"ApiKey {token}" if token.startswith("tmk_") else f"Bearer {token}"
        return await self.authenticate(authorization, request.headers.get("X-Api-Key", ""))

    @staticmethod
    def check(principal: Principal | None, role: str, tenant: str | None = None) -> None:
        authorize(principal, role, tenant)

    @staticmethod
    def tenant_for(principal: Principal | None, requested: str) -> str:
        """The tenant a call acts for: the one it names, else the credential's own (if it has one)."""
        if requested or principal is None or principal.tenant == ANY_TENANT:
            return requested
        return principal.tenant

    @staticmethod
    def check_owned(principal: Principal | None, role: str, tenant: str, missing: MeshError) -> None:
        """`principal` may act as `role` on something `tenant` owns. Another tenant's thing is
        answered exactly like a missing one (`missing`), so ids cannot be probed across tenants;
        a credential without the role at all is refused as such (that says nothing about ids)."""
        authorize(principal, role)
        if principal is not None and not principal.may(role, tenant):
            raise missing

    async def check_task(self, principal: Principal | None, role: str, task_id: str) -> None:
        """`principal` may act as `role` on the tenant that owns `task_id`; NotFound otherwise."""
        if principal is None or "admin" in principal.roles:
            return
        authorize(principal, role)  # before anything about the task: a missing role says nothing of ids
        first = await self._events.first(task_id)
        if first is None or not principal.may(role, first.event.spec.tenant):
            raise no_such_task(task_id)

    async def check_tasks(self, principal: Principal | None, role: str, task_ids: list[str]) -> None:
        """`check_task` for many tasks, their owners read side by side rather than one by one."""
        if principal is None or "admin" in principal.roles:
            return
        unique = list(dict.fromkeys(task_ids))
        for start in range(0, len(unique), _CHECKS_AT_ONCE):
            chunk = unique[start : start + _CHECKS_AT_ONCE]
            await asyncio.gather(*(self.check_task(principal, role, task_id) for task_id in chunk))

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
