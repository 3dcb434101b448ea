"""AccessService servicer: the caller's own decisions, explained (`tidemesh auth can-i`), and its
second factor — TOTP enrolment and step-up tokens for sensitive actions (`_stepup`).

Any authenticated caller may ask, of its own credential only: whether it may take an action in a
tenant (its own when it names none; ``*`` for every tenant), and why — the role that allows it,
or what is missing (the action, or the tenant). The answer is the decision the gateway makes when
the call itself comes (`Guard.decide`), so ``can-i`` and the call never disagree.

EnrollTotp, ConfirmTotp and StepUp act on the caller's own second factor only; with step-up off
on this gateway they are FAILED_PRECONDITION saying so. Secrets and codes are never logged.
"""

from __future__ import annotations

from mesh.access import action_named
from mesh.errors import Conflict, MeshError
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with
from mesh.tasks import check_task_id
from mesh.v1 import access_pb2, access_pb2_grpc
from services.gateway._auth import ANY_TENANT, Principal
from services.gateway._guard import Guard
from services.gateway._stepup import SecondFactors


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

    async def _own(self, context: Context) -> tuple[SecondFactors, Principal]:
        principal = await self._guard.from_grpc(context)
        factors = self._guard.second_factors
        if factors is None or principal is None:
            raise Conflict("step-up is off on this gateway (it was started without --step-up, or auth is off)")
        return factors, principal

    async def EnrollTotp(
        self, request: access_pb2.EnrollTotpRequest, context: Context
    ) -> access_pb2.EnrollTotpResponse:
        try:
            factors, principal = await self._own(context)
            enrolment = await factors.enroll(principal, request.current_code)
        except MeshError as exc:
            await abort_with(context, exc)
        return access_pb2.EnrollTotpResponse(
            secret=enrolment.secret, provisioning_uri=enrolment.provisioning_uri, operator=enrolment.operator
        )

    async def ConfirmTotp(
        self, request: access_pb2.ConfirmTotpRequest, context: Context
    ) -> access_pb2.ConfirmTotpResponse:
        try:
            factors, principal = await self._own(context)
            await factors.confirm(principal, request.code)
        except MeshError as exc:
            await abort_with(context, exc)
        return access_pb2.ConfirmTotpResponse()

    async def StepUp(self, request: access_pb2.StepUpRequest, context: Context) -> access_pb2.StepUpResponse:
        try:
            factors, principal = await self._own(context)
            minted = await factors.step_up(principal, request.action, request.resource, request.code)
        except MeshError as exc:
            await abort_with(context, exc)
        response = access_pb2.StepUpResponse(token=minted.token, amr=list(minted.amr))
        response.expires_at.FromNanoseconds(int(minted.expires_at * 1e9))
        return response
