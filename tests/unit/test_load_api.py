"""GetLoad at the gateway: mesh-wide figures, so status.read in every tenant — a tenant's viewer
is refused naming it, a role for every tenant (policy-admin, which plans changes) gets the
scheduler's report as it came, its window passed on."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from mesh.access import RoleCatalog
from mesh.v1 import gateway_pb2, scheduler_pb2, status_pb2
from services.gateway._audit import Auditor
from services.gateway._auth import Authenticator, CredentialStore
from services.gateway._guard import Guard
from services.gateway._service import Gateway

VIEWER, PLANNER = "tmk_k1_viewer", "tmk_k2_planner"


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class _Context:
    def __init__(self, key: str) -> None:
        self._key = key

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self._key),)

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Refused(code, details)

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass


class _Scheduler:
    def __init__(self) -> None:
        self.asked: list[scheduler_pb2.GetLoadReportRequest] = []

    async def GetLoadReport(self, request: Any, timeout: float) -> scheduler_pb2.GetLoadReportResponse:  # noqa: ASYNC109
        self.asked.append(request)
        load = status_pb2.PoolClassLoad(pool="inference", arrival_per_s=2.5, service_s_samples=[0.1, 0.2])
        return scheduler_pb2.GetLoadReportResponse(report=status_pb2.LoadReport(window_s=60.0, loads=[load]))


def _gateway(scheduler: _Scheduler) -> Gateway:
    store = CredentialStore(None, None)  # type: ignore[arg-type]  (keys known in memory)
    store.add_static_key(VIEWER, "acme", ["viewer"], "viewer")
    store.add_static_key(PLANNER, "*", ["policy-admin"], "planner")
    guard = Guard(None, Authenticator(store, None, RoleCatalog()))  # type: ignore[arg-type]
    none: Any = None
    return Gateway(scheduler, none, none, none, guard=guard, auditor=Auditor.disabled())  # type: ignore[arg-type]


async def test_a_tenants_viewer_is_refused_and_a_role_for_every_tenant_gets_the_report() -> None:
    scheduler = _Scheduler()
    gateway = _gateway(scheduler)
    with pytest.raises(_Refused) as refused:
        await gateway.GetLoad(gateway_pb2.GetLoadRequest(), _Context(VIEWER))  # type: ignore[arg-type]
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED and "status.read" in refused.value.details
    assert not scheduler.asked
    reply = await gateway.GetLoad(gateway_pb2.GetLoadRequest(window_s=60.0), _Context(PLANNER))  # type: ignore[arg-type]
    assert [r.window_s for r in scheduler.asked] == [60.0]
    assert reply.report.window_s == 60.0 and list(reply.report.loads[0].service_s_samples) == [0.1, 0.2]
