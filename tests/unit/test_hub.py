"""EventHub over the in-memory fabric (`tests/unit/fakes.py`): how a watcher ends, what an idle one costs, and that
junk on the live subjects is skipped. (The real NATS and Envoy paths: tests/integration/test_watchers.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mesh.errors import NotFound, OutOfRange, Unavailable
from mesh.fabric import EVENTS_PREFIX, LIVE_PREFIX, event_subject, live_subject
from mesh.telemetry import METRICS
from mesh.v1 import task_pb2
from services.gateway import _hub
from services.gateway._auth import Principal
from services.gateway._hub import EventHub
from services.gateway._leases import StreamLease, guarded
from tests.conftest import eventually
from tests.unit.fakes import MemoryBus, MemoryFabric

Rig = tuple[EventHub, MemoryFabric, MemoryBus]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    store = MemoryFabric()
    bus = store.bus
    hub = EventHub(bus, store, recheck_s=0.2, reap_s=0.05)  # type: ignore[arg-type]
    await hub.start()
    try:
        yield hub, store, bus
    finally:
        await hub.close()


def _event(task_id: str, sequence: int, final: bool = False) -> task_pb2.TaskEvent:
    state = task_pb2.TASK_STATE_SUCCEEDED if final else task_pb2.TASK_STATE_RUNNING
    return task_pb2.TaskEvent(task_id=task_id, sequence=sequence, state=state, final=final)


async def _finished(store: MemoryFabric, task_id: str, events: int = 3) -> None:
    for sequence in range(1, events + 1):
        await store.put_event(_event(task_id, sequence, final=sequence == events))


async def _all(stream: AsyncIterator[task_pb2.TaskEvent]) -> list[int]:
    async with asyncio.timeout(5):
        return [event.sequence async for event in stream]


def _when(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return condition()

    return probe


def _watchers() -> float:
    return METRICS.watchers._value.get()


async def test_a_resume_at_the_final_event_ends_at_once_having_sent_nothing(rig: Rig) -> None:
    """Resumed at (or, reading from 0, through) the final event of a finished task, a watch ends."""
    hub, store, _ = rig
    await _finished(store, "t1")
    baseline = _watchers()
    assert await _all(hub.watch("t1", 3)) == []
    assert await _all(hub.watch("t1", 1)) == [2, 3]
    assert _watchers() == baseline and hub.watched_tasks == 0


async def test_a_resume_past_the_last_event_is_out_of_range_naming_the_field(rig: Rig) -> None:
    """A position past the task's last sequence (finished or not) is OutOfRange on the named field."""
    hub, store, _ = rig
    await _finished(store, "done")
    await store.put_event(_event("running", 1))
    baseline = _watchers()
    for task_id, after in [("done", 4), ("done", 2**64), ("running", 2), ("running", 10**30)]:
        with pytest.raises(OutOfRange) as raised:
            await _all(hub.watch(task_id, after, resume_field="Last-Event-ID"))
        assert raised.value.field == "Last-Event-ID"
    with pytest.raises(NotFound):
        await _all(hub.watch("nope"))
    assert _watchers() == baseline and hub.watched_tasks == 0


async def test_idle_watchers_cost_batched_reconciliation_not_a_read_each(rig: Rig) -> None:
    """1 000 quiet watchers of 1 000 tasks: after several reconciliation periods no watcher has read
    the store again; the hub asked for all of them in requests of at most 256 tasks."""
    hub, store, _ = rig
    for index in range(1000):
        await store.put_event(_event(f"idle{index}", 1))
    streams = [hub.watch(f"idle{index}") for index in range(1000)]
    assert [(await anext(stream)).sequence for stream in streams] == [1] * 1000
    waiting = [asyncio.ensure_future(anext(stream)) for stream in streams]
    reads_before = store.reads
    # Wait until every task was compared with the store at least 5 times (backoff reached 0.2 s).
    await eventually(_when(lambda: sum(store.last_many_calls) >= 5000), what="5 reconciliations of every task")
    try:
        assert store.reads == reads_before  # no watcher re-read the store on its own timer
        assert max(store.last_many_calls) <= 256
        assert len(store.last_many_calls) <= 4 * sum(store.last_many_calls) / 256 + 40  # mostly full batches
        assert not any(future.done() for future in waiting)
    finally:
        for future in waiting:
            future.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]
    assert hub.watched_tasks == 0


async def test_an_event_whose_live_notice_was_lost_is_found_by_reconciliation(rig: Rig) -> None:
    """The store moved without a live notice (lost across a reconnect): the watcher is woken and
    reads it, with no gap and no duplicate, though nothing else arrives live."""
    hub, store, _ = rig
    await store.put_event(_event("lost", 1))
    stream = hub.watch("lost")
    assert (await anext(stream)).sequence == 1
    await store.put_event(_event("lost", 2), publish=False)
    await store.put_event(_event("lost", 3, final=True), publish=False)
    assert await _all(stream) == [2, 3]


async def test_junk_live_messages_are_skipped_and_counted_never_ending_a_watcher(rig: Rig) -> None:
    """Bytes that are no TaskEvent, and a TaskEvent naming another task, on tm.evt.* and tm.live.*:
    each counted once, and the watcher goes on to the real events."""
    hub, store, bus = rig
    await store.put_event(_event("junk", 1))
    stream = hub.watch("junk")
    assert (await anext(stream)).sequence == 1
    counted = {
        prefix: METRICS.watch_malformed.labels(prefix=prefix)._value.get() for prefix in (EVENTS_PREFIX, LIVE_PREFIX)
    }
    following = asyncio.ensure_future(anext(stream))
    impostor = _event("other", 2, final=True).SerializeToString()
    for subject in (event_subject("junk"), live_subject("junk")):
        await bus.publish(subject, b"\xff\xff\xff not protobuf")
        await bus.publish(subject, impostor)
    await store.put_event(_event("junk", 2, final=True))
    assert (await asyncio.wait_for(following, 5)).sequence == 2
    for prefix in (EVENTS_PREFIX, LIVE_PREFIX):
        assert METRICS.watch_malformed.labels(prefix=prefix)._value.get() == counted[prefix] + 2


async def test_a_watcher_whose_client_went_away_ends(rig: Rig) -> None:
    """With a client_gone probe (SSE), the hub's one reaping pass ends a quiet watcher once it says so."""
    hub, store, _ = rig
    await store.put_event(_event("quiet", 1))
    gone = False
    baseline = _watchers()
    stream = hub.watch("quiet", client_gone=lambda: gone)
    assert (await anext(stream)).sequence == 1
    following = asyncio.ensure_future(anext(stream))
    gone = True
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(following, 5)
    assert _watchers() == baseline and hub.watched_tasks == 0


async def test_watch_many_counts_one_watcher_and_lets_go_of_finished_tasks(rig: Rig) -> None:
    """The gauge counts a multi-task stream once; a task that ended leaves the hub's watch list."""
    hub, store, _ = rig
    await _finished(store, "m1", 2)
    await store.put_event(_event("m2", 1))
    baseline = _watchers()
    stream = hub.watch_many(["m1", "m2", "m1"])
    seen = [(await anext(stream)).sequence for _ in range(3)]
    assert seen == [1, 2, 1] and _watchers() == baseline + 1
    assert hub.watched_tasks == 1  # m1 finished
    await store.put_event(_event("m2", 2, final=True), publish=False)  # found by reconciliation
    assert await _all(stream) == [2]
    assert _watchers() == baseline and hub.watched_tasks == 0


async def test_guarded_cancelled_mid_read_lets_the_stream_close(rig: Rig) -> None:
    """A leased stream cancelled while it waits (a client that went away): the pending read is
    stopped first, so aclose() works (no 'already running') and the watcher is released."""
    hub, store, _ = rig
    await store.put_event(_event("leased", 1))
    baseline = _watchers()
    lease = StreamLease("s1", Principal("key1", "acme", frozenset({"read"})))
    stream = hub.watch("leased")

    async def consume() -> None:
        async for _ in guarded(stream, lease):
            pass

    consumer = asyncio.create_task(consume())
    await eventually(_when(lambda: hub.watched_tasks == 1), what="the watcher joined")
    await eventually(_when(lambda: store.reads == 1 and not consumer.done()), what="the watcher is waiting")
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    await stream.aclose()  # type: ignore[attr-defined]  # raised RuntimeError: already running
    assert _watchers() == baseline and hub.watched_tasks == 0


async def test_a_reconnect_compares_every_watched_task_with_the_store_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events stored while the live connection was down (no notice ever comes) reach a quiet watcher
    within about a second of the reconnect, though its first recheck is almost a minute away."""
    monkeypatch.setattr(_hub, "NEW_WATCHER_QUIET", 10)  # first recheck after 0.05 s x 2^10 = 51 s
    store = MemoryFabric()
    bus = store.bus
    hub = EventHub(bus, store, recheck_s=60.0)  # type: ignore[arg-type]
    await hub.start()
    try:
        await store.put_event(_event("gap", 1))
        stream = hub.watch("gap")
        assert (await anext(stream)).sequence == 1
        await store.put_event(_event("gap", 2, final=True), publish=False)
        following = asyncio.ensure_future(anext(stream))
        bus.stats["reconnects"] += 1
        async with asyncio.timeout(3):
            assert (await following).sequence == 2
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await hub.close()


async def test_a_watch_joined_before_its_task_exists_gets_every_event_live_without_a_read(rig: Rig) -> None:
    """RunTask's watch: joined before admission, it is handed every event as it is stored and
    never reads the store; left unused, it is released by aclose."""
    hub, store, _ = rig
    before = _watchers()
    pending = hub.watch_new("fresh")
    assert _watchers() == before + 1
    await _finished(store, "fresh", 3)
    assert await _all(aiter(pending)) == [1, 2, 3]
    assert (store.reads, store.lasts) == (0, 0)
    assert _watchers() == before
    unused = hub.watch_new("never-admitted")
    await unused.aclose()
    assert _watchers() == before
    with pytest.raises(RuntimeError):
        aiter(unused)
    never_started = hub.watch_new("iterator-never-started")
    aiter(never_started)  # handed out, never read: closing still leaves the hub
    await never_started.aclose()
    await never_started.aclose()
    assert _watchers() == before


async def test_a_joined_watch_that_missed_its_first_notice_reads_the_gap(rig: Rig) -> None:
    """The QUEUED notice lost (a reconnect): the next event shows the gap, and the store fills it
    in order, once each."""
    hub, store, _ = rig
    pending = hub.watch_new("gap")
    await store.put_event(_event("gap", 1), publish=False)
    await store.put_event(_event("gap", 2))
    await store.put_event(_event("gap", 3, final=True))
    assert await _all(aiter(pending)) == [1, 2, 3]


async def test_a_stopped_hub_refuses_new_watches_as_unavailable() -> None:
    """A watch on a hub that no longer delivers would never end: it is refused, retryable elsewhere."""
    store = MemoryFabric()
    hub = EventHub(store.bus, store)  # type: ignore[arg-type]
    await hub.start()
    await store.put_event(_event("t1", 1))
    await hub.close()
    with pytest.raises(Unavailable, match="the event hub is stopped"):
        await anext(hub.watch("t1", 0))
    with pytest.raises(Unavailable):
        hub.watch_new("t2")


async def test_a_notice_that_outruns_the_store_and_the_join_still_reaches_a_late_watcher() -> None:
    """Core NATS delivers an event as it is published, JetStream stores it alongside: a client that
    submits, then watches a task that just finished, can join after the final notice went by and
    read the store before it shows the event. The hub hands it the notice it kept; no
    reconciliation is needed (before, the watcher waited for the first one, ~0.8 s)."""
    store = MemoryFabric()
    hub = EventHub(store.bus, store, recheck_s=60.0)  # type: ignore[arg-type]
    await hub.start()
    try:
        await store.put_event(_event("fast", 1))
        await store.put_event(_event("fast", 2))
        final = _event("fast", 3, final=True)
        await store.bus.publish(event_subject("fast"), final.SerializeToString())  # notice first...
        watching = asyncio.create_task(_all(hub.watch("fast", 0)))
        await eventually(_when(lambda: store.reads == 1), 5.0, "the watcher's replay read")
        assert await watching == [1, 2, 3]  # ...the store shows it later (or, here, never)
        assert store.last_many_calls == []  # found without reconciling
    finally:
        await hub.close()
