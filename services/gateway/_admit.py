"""Admissions of every caller, coalesced into one scheduler call.

Each submit (gRPC, REST, WebSocket) used to be its own AdmitTask call to the scheduler: a TLS'd
gRPC round trip per task on both sides, the largest share of the CPU a task costs there. Here
concurrent submits share one AdmitEach call (`mesh.coalesce`: alone when the mesh is
idle, batched when it is busy) and each caller gets its own outcome: a refused spec is that
caller's error only, exactly the MeshError its own AdmitTask would have raised. Each spec goes
with its caller's trace context (`traceparents`), so a batch of strangers' tasks keeps one trace
per task.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc.aio

from mesh.coalesce import Coalescer, CoalescerClosed
from mesh.errors import MeshError, Unavailable
from mesh.rpc import error_of_refusal, raise_from_rpc_error
from mesh.telemetry import current_traceparent
from mesh.v1 import scheduler_pb2, scheduler_pb2_grpc, task_pb2

MAX_COALESCED = 256  # the scheduler's MAX_BATCH bounds a call too
MAX_COALESCED_BYTES = 4 * 1024 * 1024  # well inside the mesh channels' 16 MiB message limit


class Admissions:
    def __init__(self, scheduler: scheduler_pb2_grpc.SchedulerServiceStub, timeout_s: float = 10.0) -> None:
        self._scheduler = scheduler
        self._timeout_s = timeout_s
        self._calls: Coalescer[tuple[task_pb2.TaskSpec, str], scheduler_pb2.AdmitTaskResponse] = Coalescer(
            self._admit_each,
            max_batch=MAX_COALESCED,
            name="gateway-admissions",
            weigh=lambda call: call[0].ByteSize(),
            max_weight=MAX_COALESCED_BYTES,
        )

    async def aclose(self) -> None:
        await self._calls.aclose()

    async def admit(self, spec: task_pb2.TaskSpec) -> scheduler_pb2.AdmitTaskResponse:
        """Admit one checked spec; raises the MeshError the scheduler refused it with."""
        try:
            return await self._calls.call((spec, current_traceparent()))
        except CoalescerClosed as exc:
            raise Unavailable("the gateway is shutting down") from exc

    async def _admit_each(
        self, calls: list[tuple[task_pb2.TaskSpec, str]]
    ) -> Sequence[scheduler_pb2.AdmitTaskResponse | Exception]:
        specs = [spec for spec, _ in calls]
        request = scheduler_pb2.AdmitEachRequest(specs=specs, traceparents=[parent for _, parent in calls])
        try:
            reply = await self._scheduler.AdmitEach(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)  # the whole call failed: every caller of it gets this
        if len(reply.outcomes) != len(specs):
            raise MeshError(f"scheduler answered {len(reply.outcomes)} outcomes for {len(specs)} specs")
        return [
            outcome.admitted if outcome.WhichOneof("outcome") == "admitted" else error_of_refusal(outcome.refused)
            for outcome in reply.outcomes
        ]
