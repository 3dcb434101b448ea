"""Child tasks for orchestration steps: spawn with inheritance, follow to their final events, boost.

Children inherit the parent's tenant, priority class, QoS and deadline, and get
idempotency keys derived from the parent, so a re-run orchestration step finds
its existing children instead of spawning them twice. A child that is still
queued at a lower class than the parent waiting on it is boosted: a copy of its
first work item goes to the parent's lane, and whichever copy claims the task
first runs it (the event chain fences out the other).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from mesh.fabric import EventLog, WorkQueue, event_subject
from mesh.priority import urgency
from mesh.v1 import scheduler_pb2, scheduler_pb2_grpc, task_pb2, work_pb2
from services.worker._steps import StepFailed


class ChildTasks:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        events: EventLog,
        scheduler: scheduler_pb2_grpc.SchedulerServiceStub | None,
        recheck_s: float = 2.0,
    ) -> None:
        self._nc = nc
        self._js = js
        self._work = WorkQueue(nc, js)
        self._events = events
        self._scheduler = scheduler
        self._recheck_s = recheck_s

    async def spawn(self, parent: task_pb2.TaskSpec, children: list[task_pb2.TaskSpec]) -> list[str]:
        if self._scheduler is None:
            raise StepFailed("dependency_down", "this worker has no scheduler endpoint to admit children", True)
        for index, child in enumerate(children):
            child.tenant = parent.tenant
            child.parent_task_id = parent.task_id
            child.priority_class = parent.priority_class
            child.qos = parent.qos
            child.idempotency_key = f"{parent.task_id}:child:{index}"
            if parent.HasField("deadline"):
                child.deadline.CopyFrom(parent.deadline)
        try:
            reply = await self._scheduler.AdmitTasks(
                scheduler_pb2.AdmitTasksRequest(specs=children), timeout=30.0, wait_for_ready=True
            )  # a restarting scheduler is waited for within the deadline
        except grpc.aio.AioRpcError as exc:
            fatal = exc.code() == grpc.StatusCode.INVALID_ARGUMENT
            raise StepFailed(
                "invalid_input" if fatal else "dependency_down", f"admitting children: {exc.details()}", not fatal
            ) from exc
        return [result.task_id for result in reply.results]

    async def boost(self, parent: task_pb2.TaskSpec, child_ids: list[str]) -> int:
        """Move children still queued at a lower class than `parent` to its lane; returns how many."""
        boosted = 0
        current = await self._events.last_many(child_ids)
        for stored in current.values():
            event = stored.event
            if event.state != task_pb2.TASK_STATE_QUEUED or not event.HasField("spec"):
                continue
            if urgency(event.spec.priority_class) <= urgency(parent.priority_class):
                continue
            spec = task_pb2.TaskSpec()
            spec.CopyFrom(event.spec)
            spec.priority_class = parent.priority_class
            item = work_pb2.WorkItem(
                spec=spec,
                step_index=0,
                last_event_sequence=event.sequence,
                last_event_stream_sequence=stored.stream_sequence,
                traceparent=event.traceparent,
            )
            item.enqueued.GetCurrentTime()
            await self._work.put_item(item, copy=f"boost:{spec.priority_class}")
            boosted += 1
        return boosted

    async def finals(self, child_ids: list[str]) -> AsyncIterator[task_pb2.TaskEvent]:
        """Each child's final event, in completion order."""
        remaining = set(child_ids)
        arrived: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_event(msg: Msg) -> None:
            arrived.put_nowait(msg.data)

        subscriptions = [await self._nc.subscribe(event_subject(child), cb=on_event) for child in child_ids]
        try:
            for stored in (await self._events.last_many(child_ids)).values():
                if stored.event.final and stored.event.task_id in remaining:
                    remaining.discard(stored.event.task_id)
                    yield stored.event
            while remaining:
                try:
                    event = task_pb2.TaskEvent.FromString(await asyncio.wait_for(arrived.get(), self._recheck_s))
                except TimeoutError:
                    # Quiet: re-read the store in case a final event slipped past the subscription.
                    for stored in (await self._events.last_many(remaining)).values():
                        if stored.event.final and stored.event.task_id in remaining:
                            remaining.discard(stored.event.task_id)
                            yield stored.event
                    continue
                if event.final and event.task_id in remaining:
                    remaining.discard(event.task_id)
                    yield event
        finally:
            for subscription in subscriptions:
                await subscription.unsubscribe()
