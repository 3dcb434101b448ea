"""The runner over an in-memory fabric (`tests/unit/fakes.py`): what it stores, in which order, and
when it settles the item. (The same runner on real NATS: tests/integration/test_fabric.py and the
chaos suite.)"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import pytest

from mesh.errors import Unavailable
from mesh.tasks import KINDS, new_task_id
from mesh.v1 import deadletter_pb2, task_pb2, work_pb2
from services.worker._items import PoisonMessage
from services.worker._retry import RetryPolicy
from services.worker._runner import Runner
from services.worker._steps import StepContext, StepFailed
from tests.unit.fakes import MemoryDelivery, MemoryFabric

Handler = Callable[[StepContext], Awaitable[list[task_pb2.TaskOutput]]]


def _spec(kind: str = "echo", **fields: object) -> task_pb2.TaskSpec:
    payload = task_pb2.TaskPayload(echo=task_pb2.EchoInput(text="hi"))
    if kind == "stream":
        payload = task_pb2.TaskPayload(stream=task_pb2.StreamInput(text="a b c", chunks=3))
    return task_pb2.TaskSpec(task_id=new_task_id(), tenant="acme", kind=kind, payload=payload, **fields)  # type: ignore[arg-type]


def _runner(fabric: MemoryFabric, handler: Handler, worker_id: str = "w-1") -> Runner:
    return Runner(
        fabric,
        fabric,
        fabric,
        fabric.bus,
        worker_id,
        None,
        30.0,
        retry=RetryPolicy(base_delay_s=0.5, max_delay_s=4.0),
        handlers=lambda kind, index: handler,
    )


async def _echo(ctx: StepContext) -> list[task_pb2.TaskOutput]:
    return [task_pb2.TaskOutput(text=ctx.spec.payload.echo.text)]


async def test_the_last_step_stores_its_final_event_and_only_then_acks() -> None:
    fabric = MemoryFabric()
    msg = await fabric.admit(_spec())
    await _runner(fabric, _echo).run(msg)
    task_id = msg.task_id
    assert fabric.states(task_id) == ["TASK_STATE_QUEUED", "TASK_STATE_RUNNING", "TASK_STATE_SUCCEEDED"]
    final = fabric.chains[task_id][-1].event
    assert final.final and final.output.text == "hi" and final.worker_id == "w-1"
    assert fabric.log[-2:] == [("event", task_id, "TASK_STATE_SUCCEEDED"), ("ack", task_id)]


async def test_a_middle_step_stores_the_next_item_fenced_on_its_running_event_then_acks() -> None:
    fabric = MemoryFabric()
    msg = await fabric.admit(_spec("stream"))

    async def plan(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        return [task_pb2.TaskOutput(text="plan")]

    await _runner(fabric, plan).run(msg)
    task_id = msg.task_id
    running = fabric.chains[task_id][-1]
    assert running.event.state == task_pb2.TASK_STATE_RUNNING
    following = work_pb2.WorkItem.FromString(fabric.delivery(task_id, step_index=1).data)
    assert (following.step_index, following.last_event_sequence, following.last_event_stream_sequence) == (
        1,
        running.event.sequence,
        running.stream_sequence,
    )
    assert [c.text for c in following.carry] == ["plan"]
    assert fabric.log[-2:] == [("item", task_id, "1"), ("ack", task_id)]


async def test_an_output_that_cannot_be_stored_leaves_the_item_unacked() -> None:
    """The broker refuses the next item: the runner raises and the item is redelivered later."""
    fabric = MemoryFabric()
    msg = await fabric.admit(_spec("stream"))
    fabric.refuse_items = Unavailable("work queue did not store the item")
    with pytest.raises(Unavailable):
        await _runner(fabric, _echo).run(msg)
    assert msg.settled is None


async def test_a_retryable_failure_with_attempts_left_is_retried_after_a_bounded_delay() -> None:
    fabric = MemoryFabric()
    msg = await fabric.admit(_spec())

    async def flaky(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        raise StepFailed("dependency_down", "inference restarting", retryable=True)

    await _runner(fabric, flaky).run(msg)
    retrying = fabric.chains[msg.task_id][-1].event
    assert retrying.state == task_pb2.TASK_STATE_RETRYING and retrying.error.error_class == "dependency_down"
    assert msg.settled == "nak" and msg.nak_delay is not None and 0.25 <= msg.nak_delay <= 0.5
    assert retrying.retry_after.ToMilliseconds() == pytest.approx(msg.nak_delay * 1000, abs=1)
    assert not fabric.letters


async def test_the_last_attempt_of_a_retryable_failure_dead_letters_letter_first_then_acks() -> None:
    fabric = MemoryFabric()
    spec = _spec()
    await fabric.admit(spec)
    msg = fabric.delivery(spec.task_id, attempt=3)  # echo allows 3 attempts

    async def flaky(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        raise StepFailed("dependency_down", "still down", retryable=True)

    await _runner(fabric, flaky).run(msg)
    assert fabric.states(spec.task_id)[-1] == "TASK_STATE_DEAD_LETTERED"
    [letter] = fabric.letters.values()
    assert (letter.error_class, letter.attempts, list(letter.worker_ids)) == ("dependency_down", 3, ["w-1"])
    assert letter.classification == deadletter_pb2.FAILURE_CLASS_DEPENDENCY_DOWN
    order = [entry[0] for entry in fabric.log[-3:]]
    assert order == ["letter", "event", "ack"] and fabric.alerts == [spec.task_id]


async def test_a_failure_that_is_not_retryable_dead_letters_on_the_first_attempt() -> None:
    fabric = MemoryFabric()
    msg = await fabric.admit(_spec())

    async def broken(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        raise StepFailed("invalid_output", "no such field", retryable=False)

    await _runner(fabric, broken).run(msg)
    assert fabric.states(msg.task_id)[-1] == "TASK_STATE_DEAD_LETTERED" and msg.settled == "ack"


async def test_a_cancel_written_mid_step_wins_and_the_item_is_acked_without_an_outcome() -> None:
    """The scheduler writes CANCELLED while the step runs: the fenced SUCCEEDED loses, nothing else is
    written, and the item is acked because the chain is over."""
    fabric = MemoryFabric()
    msg = await fabric.admit(_spec())

    async def cancelled_meanwhile(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        last = fabric.chains[ctx.spec.task_id][-1]
        cancel = task_pb2.TaskEvent(
            task_id=ctx.spec.task_id, sequence=last.event.sequence + 1, state=task_pb2.TASK_STATE_CANCELLED, final=True
        )
        await fabric.append(cancel, last.stream_sequence)
        return [task_pb2.TaskOutput(text="late")]

    await _runner(fabric, cancelled_meanwhile).run(msg)
    assert fabric.states(msg.task_id) == ["TASK_STATE_QUEUED", "TASK_STATE_RUNNING", "TASK_STATE_CANCELLED"]
    assert msg.settled == "ack"


async def test_a_takeover_mid_step_leaves_the_item_to_the_new_owner() -> None:
    """Another runner wrote RUNNING meanwhile (this one was presumed dead): no outcome, no ack."""
    fabric = MemoryFabric()
    msg = await fabric.admit(_spec())

    async def taken_over(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        last = fabric.chains[ctx.spec.task_id][-1]
        other = task_pb2.TaskEvent(
            task_id=ctx.spec.task_id, sequence=last.event.sequence + 1, state=task_pb2.TASK_STATE_RUNNING, step="echo"
        )
        await fabric.append(other, last.stream_sequence)
        return [task_pb2.TaskOutput(text="mine")]

    await _runner(fabric, taken_over).run(msg)
    assert fabric.states(msg.task_id)[-1] == "TASK_STATE_RUNNING" and msg.settled is None


async def test_a_stale_copy_of_an_earlier_step_is_acked_without_running() -> None:
    fabric = MemoryFabric()
    spec = _spec("stream")
    first = await fabric.admit(spec)
    await _runner(fabric, _echo).run(first)  # step 0 done, step 1 queued
    later = fabric.delivery(spec.task_id, step_index=1)
    await _runner(fabric, _echo).run(later)  # step 1 done too: SUCCEEDED
    stale = fabric.delivery(spec.task_id, step_index=0, attempt=2)
    ran: list[str] = []

    async def must_not_run(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        ran.append(ctx.spec.task_id)
        return []

    before = list(fabric.chains[spec.task_id])
    await _runner(fabric, must_not_run).run(stale)
    assert ran == [] and stale.settled == "ack" and fabric.chains[spec.task_id] == before


async def test_a_redelivered_step_resumes_from_what_the_earlier_attempt_stored() -> None:
    """Attempt 1 streamed two partials and a checkpoint, then died: attempt 2 starts from there."""
    fabric = MemoryFabric()
    spec = _spec()
    await fabric.admit(spec)
    died = asyncio.Event()

    async def dies_midway(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        await ctx.emit_partial(task_pb2.TaskOutput(text="1"), 0.3)
        await ctx.emit_partial(task_pb2.TaskOutput(text="2"), 0.6)
        assert ctx.save_checkpoint is not None
        await ctx.save_checkpoint(b"offset=2")
        died.set()
        await asyncio.Event().wait()  # the process is killed here
        return []

    first = fabric.delivery(spec.task_id)
    attempt_1 = asyncio.create_task(_runner(fabric, dies_midway, "w-dead").run(first))
    await died.wait()
    attempt_1.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt_1
    assert first.settled is None
    seen: list[tuple[int, bytes | None, int]] = []

    async def resumes(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        seen.append((ctx.resume_from, ctx.checkpoint, ctx.attempt))
        return [task_pb2.TaskOutput(text="done")]

    again = fabric.delivery(spec.task_id, attempt=2)
    await _runner(fabric, resumes, "w-2").run(again)
    assert seen == [(2, b"offset=2", 2)]
    assert fabric.states(spec.task_id)[-1] == "TASK_STATE_SUCCEEDED" and again.settled == "ack"


async def test_a_first_delivery_of_another_copy_while_the_step_runs_is_set_aside() -> None:
    """A second copy (a priority boost) delivered for the first time while the original runs: the
    original owns the task; the copy is acked without running."""
    fabric = MemoryFabric()
    spec = _spec()
    original = await fabric.admit(spec)
    item = work_pb2.WorkItem.FromString(original.data)
    await fabric.put_item(item, copy="boost")
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        started.set()
        await finish.wait()
        return [task_pb2.TaskOutput(text="once")]

    running = asyncio.create_task(_runner(fabric, slow).run(original))
    await started.wait()
    copy = fabric.delivery(spec.task_id, copy="boost")
    runs: list[str] = []

    async def counted(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        runs.append("copy")
        return []

    await _runner(fabric, counted, "w-2").run(copy)
    finish.set()
    await running
    assert runs == [] and copy.settled == "ack" and original.settled == "ack"
    assert fabric.states(spec.task_id).count("TASK_STATE_SUCCEEDED") == 1


async def test_a_deadline_that_passed_in_the_queue_dead_letters_as_a_timeout_without_running() -> None:
    fabric = MemoryFabric()
    spec = _spec()
    spec.deadline.FromSeconds(1)  # 1970
    msg = await fabric.admit(spec)
    await _runner(fabric, _echo).run(msg)
    [letter] = fabric.letters.values()
    assert letter.error_class == "timeout" and fabric.states(spec.task_id)[-1] == "TASK_STATE_DEAD_LETTERED"
    assert msg.settled == "ack"


async def test_a_step_past_its_time_limit_is_abandoned_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KINDS._kinds, "echo", dataclasses.replace(KINDS["echo"], step_timeout_s=0.05))
    fabric = MemoryFabric()
    msg = await fabric.admit(_spec())

    async def hangs(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        await asyncio.Event().wait()
        return []

    await _runner(fabric, hangs).run(msg)
    retrying = fabric.chains[msg.task_id][-1].event
    assert retrying.state == task_pb2.TASK_STATE_RETRYING and retrying.error.error_class == "timeout"
    assert msg.settled == "nak"


def _a_cancel_wins_before_dead_lettered(fabric: MemoryFabric) -> None:
    """Make the scheduler's CANCELLED land just before any DEAD_LETTERED append (a lost race)."""
    real_append = fabric.append

    async def a_cancel_gets_in_first(event: task_pb2.TaskEvent, after: int, *, urgent: bool = False) -> int:
        if event.state == task_pb2.TASK_STATE_DEAD_LETTERED:
            last = fabric.chains[event.task_id][-1]
            cancel = task_pb2.TaskEvent(
                task_id=event.task_id, sequence=event.sequence, state=task_pb2.TASK_STATE_CANCELLED, final=True
            )
            await real_append(cancel, last.stream_sequence)
        return await real_append(event, after, urgent=urgent)

    fabric.append = a_cancel_gets_in_first  # type: ignore[method-assign]


def _unrunnable(fabric: MemoryFabric, spec: task_pb2.TaskSpec) -> tuple[MemoryDelivery, PoisonMessage]:
    broken = task_pb2.TaskSpec()
    broken.CopyFrom(spec)
    poison = PoisonMessage("schema_mismatch", "spec.kind: unknown", spec.task_id, work_pb2.WorkItem(spec=broken))
    return fabric.delivery(spec.task_id), poison


async def test_an_unrunnable_task_ends_dead_lettered_with_its_letter() -> None:
    """An unrunnable item of a task still QUEUED stores a schema_mismatch letter, ends the chain, alerts."""
    fabric = MemoryFabric()
    spec = _spec()
    await fabric.admit(spec)
    msg, poison = _unrunnable(fabric, spec)
    assert await _runner(fabric, _echo).end_unrunnable(msg, poison)
    final = fabric.chains[spec.task_id][-1].event
    assert final.state == task_pb2.TASK_STATE_DEAD_LETTERED and final.final
    [letter] = fabric.letters.values()
    assert letter.classification == deadletter_pb2.FAILURE_CLASS_SCHEMA_MISMATCH
    assert (letter.error_class, list(letter.worker_ids), fabric.alerts) == ("schema_mismatch", ["w-1"], [spec.task_id])


async def test_an_unrunnable_task_that_loses_the_race_has_no_dead_letter() -> None:
    """If the fenced DEAD_LETTERED event loses to another writer, the letter is withdrawn: none is left."""
    fabric = MemoryFabric()
    spec = _spec()
    await fabric.admit(spec)
    msg, poison = _unrunnable(fabric, spec)
    _a_cancel_wins_before_dead_lettered(fabric)
    assert not await _runner(fabric, _echo).end_unrunnable(msg, poison)
    assert (fabric.letters, fabric.alerts) == ({}, [])
    assert ("withdrawn", spec.task_id) in fabric.log


async def test_a_forged_item_naming_another_task_ends_nothing() -> None:
    """An item whose spec is not the one its task was admitted with is not that task's own."""
    fabric = MemoryFabric()
    spec = _spec()
    await fabric.admit(spec)
    msg, poison = _unrunnable(fabric, spec)
    assert poison.item is not None
    poison.item.spec.tenant = "someone-else"
    assert not await _runner(fabric, _echo).end_unrunnable(msg, poison)
    assert fabric.states(spec.task_id) == ["TASK_STATE_QUEUED"] and not fabric.letters


async def test_a_stale_copy_of_an_earlier_step_is_acked_without_running_while_a_later_step_runs() -> None:
    """Step 1 already started (RUNNING of step `emit`): a redelivered copy of step 0 is superseded."""
    fabric = MemoryFabric()
    spec = _spec("stream")
    await _runner(fabric, _echo).run(await fabric.admit(spec))  # step 0 done, step 1 queued
    later = fabric.delivery(spec.task_id, step_index=1)
    started, finish = asyncio.Event(), asyncio.Event()

    async def emitting(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        started.set()
        await finish.wait()
        return [task_pb2.TaskOutput(text="done")]

    step_1 = asyncio.create_task(_runner(fabric, emitting).run(later))
    await started.wait()
    stale = fabric.delivery(spec.task_id, step_index=0, attempt=2)
    ran: list[str] = []

    async def must_not_run(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        ran.append(ctx.spec.task_id)
        return []

    await _runner(fabric, must_not_run, "w-2").run(stale)
    assert ran == [] and stale.settled == "ack"
    assert fabric.chains[spec.task_id][-1].event.step == "emit"  # the stale copy wrote nothing
    finish.set()
    await step_1
    assert fabric.states(spec.task_id)[-1] == "TASK_STATE_SUCCEEDED" and later.settled == "ack"


async def test_a_fatal_failure_that_loses_to_a_cancel_withdraws_its_letter_and_acks() -> None:
    """The step fails fatally; while the runner dead-letters, a cancel ends the chain first: the letter
    is withdrawn (none is left to replay) and the item is acked, the chain being over."""
    fabric = MemoryFabric()
    msg = await fabric.admit(_spec())
    _a_cancel_wins_before_dead_lettered(fabric)

    async def broken(ctx: StepContext) -> list[task_pb2.TaskOutput]:
        raise StepFailed("invalid_output", "no such field", retryable=False)

    await _runner(fabric, broken).run(msg)
    assert fabric.states(msg.task_id)[-1] == "TASK_STATE_CANCELLED"
    assert fabric.letters == {} and ("withdrawn", msg.task_id) in fabric.log and msg.settled == "ack"


async def test_an_item_of_an_unknown_kind_is_dead_lettered_as_a_schema_mismatch() -> None:
    """A task admitted under a kind this worker does not know (an upgrade in between) ends
    DEAD_LETTERED with a schema_mismatch letter instead of staying QUEUED."""
    fabric = MemoryFabric()
    spec = _spec()
    spec.kind = "no-such-kind"
    await fabric.put_event(
        task_pb2.TaskEvent(task_id=spec.task_id, sequence=1, state=task_pb2.TASK_STATE_QUEUED, spec=spec)
    )
    item = work_pb2.WorkItem(spec=spec, step_index=0, last_event_sequence=1, last_event_stream_sequence=1)
    msg = MemoryDelivery(fabric, "tm.work.u-x.standard.acme", item.SerializeToString(), 2, 1)
    poison = PoisonMessage("schema_mismatch", "spec.kind: unknown", spec.task_id, work_pb2.WorkItem(spec=spec))
    assert await _runner(fabric, _echo).end_unrunnable(msg, poison)
    assert fabric.states(spec.task_id) == ["TASK_STATE_QUEUED", "TASK_STATE_DEAD_LETTERED"]
