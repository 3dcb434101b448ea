"""The gateway's coalesced admissions: each caller gets its own outcome of one AdmitEach call."""

from __future__ import annotations

import asyncio
import itertools

import grpc
import grpc.aio
import pytest

from mesh.errors import InvalidArgument, MeshError, ResourceExhausted, Unavailable
from mesh.rpc import refusal_of
from mesh.v1 import scheduler_pb2, task_pb2
from services.gateway._admit import Admissions

pytestmark = pytest.mark.asyncio


class _Scheduler:
    """Refuses a spec whose tenant says so, the way the scheduler's AdmitEach does."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.down = False

    async def AdmitEach(
        self,
        request: scheduler_pb2.AdmitEachRequest,
        timeout: float,  # noqa: ASYNC109 - the stub's signature
    ) -> scheduler_pb2.AdmitEachResponse:
        self.calls.append([spec.task_id for spec in request.specs])
        await asyncio.sleep(0)
        if self.down:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "scheduler down"
            )
        outcomes = []
        for spec in request.specs:
            if spec.tenant == "bad":
                refused = refusal_of(InvalidArgument("spec.payload", "is required"))
                outcomes.append(scheduler_pb2.AdmitOutcome(refused=refused))
            elif spec.tenant == "busy":
                outcomes.append(scheduler_pb2.AdmitOutcome(refused=refusal_of(ResourceExhausted("full", 2.5))))
            else:
                admitted = scheduler_pb2.AdmitTaskResponse(task_id=spec.task_id, sequence=1)
                outcomes.append(scheduler_pb2.AdmitOutcome(admitted=admitted))
        return scheduler_pb2.AdmitEachResponse(outcomes=outcomes)


def _spec(task_id: str, tenant: str = "ok") -> task_pb2.TaskSpec:
    return task_pb2.TaskSpec(task_id=task_id, tenant=tenant, kind="echo")


async def test_concurrent_submits_share_calls_and_a_refusal_is_only_its_callers() -> None:
    scheduler = _Scheduler()
    admissions = Admissions(scheduler)  # type: ignore[arg-type]
    specs = [_spec(f"t{i}", "bad" if i == 3 else "busy" if i == 5 else "ok") for i in range(12)]
    outcomes = await asyncio.gather(*(admissions.admit(spec) for spec in specs), return_exceptions=True)
    bad, busy = outcomes[3], outcomes[5]
    assert isinstance(bad, InvalidArgument) and (bad.field, bad.reason) == ("spec.payload", "is required")
    assert isinstance(busy, ResourceExhausted) and busy.retry_after_s == 2.5
    admitted = [o for i, o in enumerate(outcomes) if i not in (3, 5)]
    assert [o.task_id for o in admitted] == [f"t{i}" for i in range(12) if i not in (3, 5)]  # type: ignore[union-attr]
    assert len(scheduler.calls) < len(specs)  # shared: fewer AdmitEach calls than submits
    assert sorted(itertools.chain(*scheduler.calls)) == sorted(spec.task_id for spec in specs)  # each sent once


async def test_a_failed_call_fails_its_callers_as_the_status_says() -> None:
    scheduler = _Scheduler()
    scheduler.down = True
    admissions = Admissions(scheduler)  # type: ignore[arg-type]
    with pytest.raises(Unavailable):
        await admissions.admit(_spec("t1"))
    scheduler.down = False
    assert (await admissions.admit(_spec("t2"))).task_id == "t2"


async def test_a_closed_gateway_refuses_as_unavailable() -> None:
    admissions = Admissions(_Scheduler())  # type: ignore[arg-type]
    await admissions.aclose()
    with pytest.raises(Unavailable):
        await admissions.admit(_spec("t1"))


async def test_an_unknown_refusal_code_is_internal() -> None:
    from mesh.rpc import error_of_refusal

    error = error_of_refusal(scheduler_pb2.Refusal(code="NOT_A_CODE", message="?"))
    assert type(error) is MeshError
