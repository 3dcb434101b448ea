"""A worker's liveness protocol with the scheduler: register, heartbeat (in-flight work, running
tasks, ack subjects of what it holds, and its load report: what `mesh.load.METER` counted since the
last heartbeat, and its slots per pool), and leave as DRAINING so the registry never mistakes a
draining worker for a dead one (whose work it would hand back)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable
from types import TracebackType
from typing import Self

import grpc.aio

from mesh.load import METER, LoadMeter
from mesh.telemetry import get_logger
from mesh.v1 import status_pb2, worker_pb2, worker_pb2_grpc
from services.worker._dispatch import Dispatcher

log = get_logger("services.worker")


class LivenessState(enum.Enum):
    NEW = "new"
    BEATING = "beating"
    LEFT = "left"


class Liveness:
    def __init__(
        self,
        stub: worker_pb2_grpc.WorkerServiceStub,
        status: status_pb2.WorkerStatus,
        dispatcher: Dispatcher,
        slots: Callable[[], list[status_pb2.PoolSlots]] | None = None,
        meter: LoadMeter = METER,
    ) -> None:
        """`slots`: what this process offers each pool now (default: `status.concurrency` in each
        of `status.pools`)."""
        self._stub = stub
        self._status = status
        self._dispatcher = dispatcher
        self._slots = slots or self._own_slots
        self._meter = meter
        self._beats: asyncio.Task[None] | None = None
        self.state = LivenessState.NEW

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.leave()

    def start(self) -> None:
        if self.state is not LivenessState.NEW:
            raise RuntimeError(f"liveness is {self.state.value}: it starts once")
        self._beats = asyncio.create_task(self._beat(), name="heartbeat")
        self.state = LivenessState.BEATING

    async def leave(self) -> None:
        """Stop beating and tell the scheduler this worker is draining (best effort)."""
        if self.state is not LivenessState.BEATING:
            return
        self.state = LivenessState.LEFT
        assert self._beats is not None
        self._beats.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._beats
        self._status.health = status_pb2.WORKER_HEALTH_DRAINING
        with contextlib.suppress(grpc.aio.AioRpcError):
            load = status_pb2.WorkerLoad(slices=self._meter.take())  # what it measured last
            await self._stub.Heartbeat(worker_pb2.HeartbeatRequest(worker=self._status, load=load), timeout=2.0)

    def _own_slots(self) -> list[status_pb2.PoolSlots]:
        pools, concurrency = self._status.pools, self._status.concurrency
        alone = len(pools) == 1
        return [
            status_pb2.PoolSlots(
                pool=pool,
                workers=1,
                slots=concurrency,
                dedicated_workers=int(alone),
                dedicated_slots=concurrency if alone else 0,
            )
            for pool in pools
        ]

    async def _heartbeat(self) -> None:
        """One heartbeat with the load measured since the last one; if it does not arrive, that
        load goes back to the meter for the next."""
        status, dispatcher = self._status, self._dispatcher
        load = status_pb2.WorkerLoad(slices=self._meter.take(), slots=self._slots())
        try:
            await self._stub.Heartbeat(
                worker_pb2.HeartbeatRequest(
                    worker=status,
                    running_task_ids=dispatcher.running_task_ids,
                    in_flight_ack_subjects=dispatcher.in_flight_ack_subjects,
                    load=load,
                ),
                timeout=5.0,
            )
        except BaseException:
            self._meter.put_back(load.slices)
            raise

    async def _beat(self) -> None:
        """Register, then report liveness; the scheduler declares a silent worker dead."""
        interval_s = 2.0
        registered = False
        status, dispatcher = self._status, self._dispatcher
        while True:
            status.in_flight = dispatcher.in_flight
            status.completed = dispatcher.completed
            try:
                if not registered:
                    request = worker_pb2.RegisterWorkerRequest(worker=status)
                    reply = await self._stub.RegisterWorker(request, timeout=5.0)
                    interval_s = reply.heartbeat_interval.ToMilliseconds() / 1000 or interval_s
                    registered = True
                else:
                    await self._heartbeat()
            except grpc.aio.AioRpcError as exc:
                log.warning("heartbeat failed: %s", exc.code().name)
                registered = False
            await asyncio.sleep(interval_s)
