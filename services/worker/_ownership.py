"""Whether a delivered work item is still this runner's to run, decided from the task's chain.

A runner claims a step by writing RUNNING fenced on the chain as its item saw it. If the
chain moved since (a cancel, another copy of the item, an earlier attempt that died
mid-way), the chain's last event decides: a final state or a later step means the item is
stale (`Superseded`); a first delivery of another copy while the step already runs belongs to
that copy; a redelivery of the same step resumes where the earlier attempt stopped (the
partials it streamed, its last checkpoint) and claims the chain afresh.
"""

from __future__ import annotations

from mesh.fabric import TERMINAL_STATES, Chain, ChainMoved, EventStore
from mesh.tasks import TaskKind
from mesh.v1 import task_pb2


class Superseded(Exception):
    """The task's chain shows this item is stale (finished, cancelled, or taken over)."""

    def __init__(self, task_id: str, state: int = task_pb2.TASK_STATE_UNSPECIFIED) -> None:
        super().__init__(task_id)
        self.state = state


async def claim(events: EventStore, chain: Chain, kind: TaskKind, index: int) -> None:
    """Write RUNNING for step `index`; raises Superseded if the item is no longer ours to run."""
    try:
        await chain.emit(events, task_pb2.TASK_STATE_RUNNING)
        return
    except ChainMoved:
        pass  # someone wrote since this item was queued: look at the chain below
    last = await events.last(chain.task_id)
    if last is None or last.event.state in TERMINAL_STATES:
        raise Superseded(chain.task_id, last.event.state if last else task_pb2.TASK_STATE_UNSPECIFIED)
    last_index = kind.step_index(last.event.step)
    if last_index > index:
        raise Superseded(chain.task_id)  # a later step already started: this item is a stale copy
    if last_index == index:
        same_item = chain.work_item_sequence != 0 and last.event.work_item_sequence == chain.work_item_sequence
        if chain.attempt == 1 and not same_item:
            # First delivery of another copy of the item (a priority boost, or a re-published
            # admission) while the step already runs: the other copy owns the task. The same
            # item seen again is a redelivery, whatever its count says (a broker restart can
            # lose the count).
            raise Superseded(chain.task_id)
        # A redelivery: an earlier attempt of this step died mid-way. Count what it streamed.
        chain.partials, chain.checkpoint = await resume_point(events, chain.task_id, kind.steps[index].name)
    chain.sequence, chain.stream_sequence = last.event.sequence, last.stream_sequence
    try:
        await chain.emit(events, task_pb2.TASK_STATE_RUNNING)
    except ChainMoved as exc:
        raise Superseded(chain.task_id) from exc


async def resume_point(events: EventStore, task_id: str, step: str) -> tuple[int, bytes | None]:
    """What earlier attempts of `step` left: the partials they streamed, the latest checkpoint."""
    count = 0
    checkpoint = None
    async for stored in events.read(task_id):
        event = stored.event
        if event.step != step:
            continue
        if event.HasField("output") and not event.final:
            count += 1
        if event.checkpoint:
            checkpoint = event.checkpoint
    return count, checkpoint


async def is_over(events: EventStore, task_id: str) -> bool:
    """Whether the task's chain has ended (so a stale item of it may be acked)."""
    last = await events.last(task_id)
    return last is not None and last.event.state in TERMINAL_STATES
