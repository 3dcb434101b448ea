"""Cancellation: end a task's chain with CANCELLED and interrupt whoever runs it."""

from __future__ import annotations

from nats.aio.client import Client

from mesh.errors import Conflict, NotFound
from mesh.fabric import TERMINAL_STATES, Chain, ChainMoved, EventLog, cancel_subject
from mesh.v1 import task_pb2

_MAX_RACES = 20


async def cancel_task(nc: Client, events: EventLog, task_id: str, reason: str) -> int:
    """Return the task's resulting state. A task already final keeps its state."""
    for _ in range(_MAX_RACES):
        last = await events.last(task_id)
        if last is None:
            raise NotFound(f"task {task_id!r} does not exist")
        if last.event.state in TERMINAL_STATES:
            return last.event.state
        error = task_pb2.TaskError(error_class="cancelled", message=reason or "cancelled by request")
        try:
            await Chain.after(last).emit(events, task_pb2.TASK_STATE_CANCELLED, final=True, error=error)
        except ChainMoved:
            continue  # the worker wrote meanwhile; look again
        # Best effort: a worker running the task stops at once; one that only has it
        # queued finds the CANCELLED event when it tries to start.
        await nc.publish(cancel_subject(task_id), reason.encode())
        return task_pb2.TASK_STATE_CANCELLED
    raise Conflict(f"task {task_id!r} kept changing; cancel again")
