"""User kinds beyond one step: a two-step pipeline whose first step hands its outputs to the
second (each step a handler of its own), and an orchestration step that spawns child tasks of
another user kind and aggregates their results as they finish."""

from __future__ import annotations

from types import ModuleType

import pytest
from google.protobuf.message import Message

from clients.sdk import Client, TaskContext, Worker, unpack
from mesh.v1 import task_pb2
from tests.integration._textpipe import events_of, python_worker, running
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration


def _pipelines(mesh: Mesh, textpipe: ModuleType) -> Worker:
    """The textpipe worker plus two kinds declared in this test: textpipe.lines (split → total)
    and textpipe.fanout (one child textpipe.count per line)."""
    CountRequest, CountResult = textpipe.CountRequest, textpipe.CountResult
    worker = python_worker(mesh, textpipe, "py-pipelines", capacity=6)

    @worker.task("textpipe.lines", input=CountRequest, output=CountRequest, step="split")
    async def split(request: Message, ctx: TaskContext) -> Message:
        # Hands each line on as its own request: only the last step must return the kind's output.
        raise_if_not(ctx.step == "split")
        return CountRequest(text=request.text.upper())  # type: ignore[attr-defined]

    @worker.task("textpipe.lines", input=CountRequest, output=CountResult, step="total")
    async def total(request: Message, ctx: TaskContext) -> Message:
        [carried] = ctx.carried(CountRequest)
        lines = carried.text.split("\n")  # type: ignore[attr-defined]
        return CountResult(lines=len(lines), words=sum(len(line.split()) for line in lines))

    @worker.task("textpipe.fanout", input=CountRequest, output=CountResult)
    async def fanout(request: Message, ctx: TaskContext) -> Message:
        lines = request.text.split("\n")  # type: ignore[attr-defined]
        child_ids = await ctx.spawn([("textpipe.count", CountRequest(text=line)) for line in lines])
        words, seen = 0, 0
        async for event in ctx.child_results():
            if event.state != task_pb2.TASK_STATE_SUCCEEDED:
                raise RuntimeError(f"child {event.task_id} ended {event.state}")
            words += unpack(event.output, CountResult).words
            seen += 1
            await ctx.emit_partial(CountResult(lines=seen, words=words), seen / len(child_ids), index=seen)
            if seen == len(child_ids):
                break
        return CountResult(lines=len(lines), words=words)

    return worker


def raise_if_not(condition: bool) -> None:
    if not condition:
        raise AssertionError("the split handler ran for another step")


async def test_a_two_step_user_kind_hands_the_first_steps_output_to_the_second(
    mesh: Mesh, textpipe: ModuleType, registered: None
) -> None:
    """split then total, each its own assignment: the second reads the first's output as its carry."""
    worker = _pipelines(mesh, textpipe)
    await worker.register()
    async with running(worker), Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
        reply = await client.submit("textpipe.lines", textpipe.CountRequest(text="a b\nc"))
        events = await events_of(client, reply.task_id)
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED, events[-1]
    assert [e.step for e in events if e.state == task_pb2.TASK_STATE_RUNNING][:1] == ["split"]
    assert "total" in {e.step for e in events}
    result = unpack(events[-1].output, textpipe.CountResult)
    assert (result.lines, result.words) == (2, 3)


async def test_an_orchestration_step_spawns_user_children_and_aggregates_them(
    mesh: Mesh, textpipe: ModuleType, registered: None
) -> None:
    """One child textpipe.count per line, spawned through the worker protocol; their ids are in the
    parent's events, a partial per finished child, the sum as the result."""
    worker = _pipelines(mesh, textpipe)
    await worker.register()
    async with running(worker), Client(mesh.endpoint, ca=mesh.plan.ca_path) as client:
        reply = await client.submit("textpipe.fanout", textpipe.CountRequest(text="a b\nc d e\nf"))
        events = await events_of(client, reply.task_id)
        spawned = [list(e.child_task_ids) for e in events if e.child_task_ids]
        assert len(spawned) == 1 and len(spawned[0]) == 3
        children = [(await events_of(client, child))[-1] for child in spawned[0]]
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED, events[-1]
    assert unpack(events[-1].output, textpipe.CountResult).words == 6
    assert all(c.state == task_pb2.TASK_STATE_SUCCEEDED for c in children)
    partials = [unpack(e.output, textpipe.CountResult).lines for e in events if e.HasField("output") and not e.final]
    assert partials == [1, 2, 3]
