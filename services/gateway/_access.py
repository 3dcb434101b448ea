"""AccessService servicer: the caller's own decisions, explained (`tidemesh auth can-i`).

Any authenticated caller may ask, of its own credential only: whether it may take an action in a
tenant (its own when it names none; ``*`` for every tenant), and why — the role that allows it,
or what is missing (the action, or the tenant). The answer is the decision the gateway makes when
the call itself comes (`Guard.decide`), so ``can-i`` and the call never disagree.
"""

from __future__ import annotations

from mesh.access import action_named
from mesh.errors import MeshError
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with
from mesh.tasks import check_task_id
from mesh.v1 import access_pb2, access_pb2_grpc
from services.gateway._auth import ANY_TENANT
from services.gateway._guard import Guard


class AccessApi(access_pb2_grpc.AccessServiceServicer):
    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    async def CheckAccess(
        self, request: access_pb2.CheckAccessRequest, context: Context
    ) -> access_pb2.CheckAccessResponse:
        try:
            principal = await self._guard.from_grpc(context)
            action = action_named(request.action)
            tenant: str | None = None
            if action.scope == "tenant":
                tenant = request.tenant or (principal.tenant if principal is not None else "") or None
                if tenant is not None and tenant != ANY_TENANT:
                    check_task_id(tenant, "tenant")  # the same alphabet as task ids
            decision = self._guard.decide(principal, action.name, tenant)
        except MeshError as exc:
            await abort_with(context, exc)
        return access_pb2.CheckAccessResponse(
            allowed=decision.allowed,
            action=action.name,
            tenant=tenant or "",
            role=decision.role,
            reason=decision.reason,
            credential_id=principal.credential_id if principal is not None else "",
            credential_tenant=principal.tenant if principal is not None else "",
            roles=sorted(principal.roles) if principal is not None else [],
        )
