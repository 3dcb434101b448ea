"""SchedulerService and WorkerService servicers: thin gRPC adapters over admission, cancel, registry."""

from __future__ import annotations

import asyncio

from google.protobuf.duration_pb2 import Duration
from nats.aio.client import Client
from nats.js import JetStreamContext

from mesh.errors import InvalidArgument, MeshError
from mesh.fabric import POOLS, EventLog, KeySequencer
from mesh.load import METER, LoadWindow
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with, refusal_of
from mesh.telemetry import METRICS, bind_task, get_logger
from mesh.v1 import scheduler_pb2, scheduler_pb2_grpc, status_pb2, worker_pb2, worker_pb2_grpc
from services.scheduler._admission import Admitter
from services.scheduler._autoscale import Scaler
from services.scheduler._backends import inference_backends
from services.scheduler._cancel import cancel_task
from services.scheduler._queues import queue_status
from services.scheduler._registry import WorkerRegistry

MAX_BATCH = 1000
log = get_logger(__name__)


class Scheduler(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        events: EventLog,
        admitter: Admitter,
        registry: WorkerRegistry,
        sequencer: KeySequencer | None = None,
        scaler: Scaler | None = None,
        load: LoadWindow | None = None,
    ) -> None:
        self._load = load or LoadWindow(pools=POOLS)
        self._sequencer = sequencer
        self._scaler = scaler
        self._nc = nc
        self._js = js
        self._admitter = admitter
        self._events = events
        self._registry = registry

    async def AdmitTask(
        self, request: scheduler_pb2.AdmitTaskRequest, context: Context
    ) -> scheduler_pb2.AdmitTaskResponse:
        try:
            if not request.HasField("spec"):
                raise InvalidArgument("spec", "is required")
            response = await self._admitter.admit(request.spec)
        except MeshError as exc:
            METRICS.tasks_rejected.labels(exc.error_class).inc()
            await abort_with(context, exc)
        return response

    async def AdmitEach(
        self, request: scheduler_pb2.AdmitEachRequest, context: Context
    ) -> scheduler_pb2.AdmitEachResponse:
        if len(request.specs) > MAX_BATCH:
            await abort_with(context, InvalidArgument("specs", f"at most {MAX_BATCH} tasks per call"))
        outcomes = []
        for outcome in await self._admitter.admit_each(list(request.specs), list(request.traceparents)):
            if isinstance(outcome, MeshError):
                METRICS.tasks_rejected.labels(outcome.error_class).inc()
                outcomes.append(scheduler_pb2.AdmitOutcome(refused=refusal_of(outcome)))
            else:
                outcomes.append(scheduler_pb2.AdmitOutcome(admitted=outcome))
        return scheduler_pb2.AdmitEachResponse(outcomes=outcomes)

    async def AdmitTasks(
        self, request: scheduler_pb2.AdmitTasksRequest, context: Context
    ) -> scheduler_pb2.AdmitTasksResponse:
        try:
            if len(request.specs) > MAX_BATCH:
                raise InvalidArgument("specs", f"at most {MAX_BATCH} tasks per call")
            results = await self._admitter.admit_many(list(request.specs))
        except MeshError as exc:
            METRICS.tasks_rejected.labels(exc.error_class).inc()
            await abort_with(context, exc)
        return scheduler_pb2.AdmitTasksResponse(results=results)

    async def AbortTask(
        self, request: scheduler_pb2.AbortTaskRequest, context: Context
    ) -> scheduler_pb2.AbortTaskResponse:
        try:
            if not request.task_id:
                raise InvalidArgument("task_id", "is required")
            with bind_task(request.task_id):
                state = await self._cancel_tree(request.task_id, request.reason)
        except MeshError as exc:
            await abort_with(context, exc)
        return scheduler_pb2.AbortTaskResponse(state=state)  # type: ignore[arg-type]

    async def _cancel_tree(self, task_id: str, reason: str) -> int:
        """Cancel a task, hand its ordering key on, and cancel the children it spawned, recursively."""
        state = await cancel_task(self._nc, self._events, task_id, reason)
        events = [stored.event async for stored in self._events.read(task_id)]
        if self._sequencer is not None and events and events[0].spec.ordering_key:
            await self._sequencer.release(events[0].spec, state)
        for child in [c for event in events for c in event.child_task_ids]:
            try:
                await self._cancel_tree(child, f"parent {task_id} cancelled")
            except MeshError as exc:  # one child that cannot be cancelled must not stop the rest
                log.warning("could not cancel child", extra={"child": child, "error": exc.message})
        return state

    async def GetQueueStatus(
        self, request: scheduler_pb2.GetQueueStatusRequest, context: Context
    ) -> scheduler_pb2.GetQueueStatusResponse:
        sample, backends = await asyncio.gather(queue_status(self._js), inference_backends(self._js))
        return scheduler_pb2.GetQueueStatusResponse(
            queues=sample.lanes,
            tenant_queues=sample.tenants,
            inference_backends=backends,
            workers=self._registry.snapshot(),
            scaling=self._scaler.latest if self._scaler else [],
        )

    async def GetLoadReport(
        self, request: scheduler_pb2.GetLoadReportRequest, context: Context
    ) -> scheduler_pb2.GetLoadReportResponse:
        try:
            self._load.check(request.window_s)  # before anything is read
            self._load.record(METER.take())  # what this process stored itself (step 0 of each admission)
            sample = await queue_status(self._js)
            alive = {w.worker_id for w in self._registry.snapshot() if w.health == status_pb2.WORKER_HEALTH_ALIVE}
            report = self._load.report(request.window_s, alive=alive, queues=sample.tenants)
        except MeshError as exc:
            await abort_with(context, exc)
        return scheduler_pb2.GetLoadReportResponse(report=report)


class Workers(worker_pb2_grpc.WorkerServiceServicer):
    def __init__(self, registry: WorkerRegistry, load: LoadWindow | None = None) -> None:
        self._registry = registry
        self._load = load

    async def RegisterWorker(
        self, request: worker_pb2.RegisterWorkerRequest, context: Context
    ) -> worker_pb2.RegisterWorkerResponse:
        if not request.worker.worker_id:
            await abort_with(context, InvalidArgument("worker.worker_id", "is required"))
        self._registry.register(request.worker)
        interval = Duration()
        interval.FromMilliseconds(int(self._registry.heartbeat_interval_s * 1000))
        return worker_pb2.RegisterWorkerResponse(heartbeat_interval=interval)

    async def Heartbeat(self, request: worker_pb2.HeartbeatRequest, context: Context) -> worker_pb2.HeartbeatResponse:
        if not request.worker.worker_id:
            await abort_with(context, InvalidArgument("worker.worker_id", "is required"))
        self._registry.heartbeat(
            request.worker, list(request.running_task_ids), ack_subjects=list(request.in_flight_ack_subjects)
        )
        if self._load is not None:
            self._load.record(request.load.slices, request.worker.worker_id, request.load.slots)
            self._load.record(METER.take())  # this process's own arrivals, heard as often as the workers'
        return worker_pb2.HeartbeatResponse()

    async def ListWorkers(
        self, request: worker_pb2.ListWorkersRequest, context: Context
    ) -> worker_pb2.ListWorkersResponse:
        return worker_pb2.ListWorkersResponse(workers=self._registry.snapshot())
