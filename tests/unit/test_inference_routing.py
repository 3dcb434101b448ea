"""The inference service's batcher, router and circuit breaker, behind the backend seam
(scripted backends; the real ones are exercised in tests/integration/test_inference.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest

from mesh.errors import InvalidArgument, ResourceExhausted, Unavailable
from mesh.telemetry import METRICS
from services.inference._backend import BackendDown, Chunk, Loadable, ModelSpec
from services.inference._batcher import Batcher
from services.inference._breaker import BreakerState, CircuitBreaker
from services.inference._router import Router

MODEL = "m"


class Scripted:
    """A backend whose calls block until `gate` opens; it records every batch it was given."""

    accepts_tokens = False
    controls_models = False
    tier = 0
    device_kinds = frozenset({"cpu"})

    def __init__(self, name: str, capacity: int = 1, fail: bool = False) -> None:
        self.name = name
        self.address = name
        self.capacity = capacity
        self.fail = fail
        self.down = False
        self.gate = asyncio.Event()
        self.gate.set()
        self.batches: list[list[str]] = []
        self.started = asyncio.Event()
        self.cancelled = 0
        self.specs = [ModelSpec(MODEL, 2, 8)]  # what it holds
        self.called: list[str] = []  # the model of each call

    async def refresh(self) -> list[ModelSpec]:
        if self.down:
            raise BackendDown(f"{self.name} is down")
        return self.specs

    async def embed(self, model: str, texts: list[str], rank: int) -> np.ndarray:
        self.batches.append(texts)
        self.called.append(model)
        self.started.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail:
            raise BackendDown(f"{self.name} failed")
        return np.array([[float(len(t)), 0.0] for t in texts], dtype=np.float32)

    async def embed_tokens(self, model: str, ids: list[list[int]]) -> np.ndarray:
        raise AssertionError("not used")

    def available(self) -> dict[str, Loadable]:
        return {MODEL: Loadable(MODEL, "READY")}

    def streams(self, model: str) -> bool:
        return False

    def statistics(self) -> list[object]:
        return []

    def stream(self, model: str, text: str, chunk_words: int, rank: int) -> AsyncIterator[Chunk]:
        raise AssertionError("not used")

    async def close(self) -> None:
        pass


async def _router(*backends: Scripted, **kwargs: object) -> Router:
    router = Router(list(backends), probe_interval_s=3600, **kwargs)  # type: ignore[arg-type]
    await router.start()
    return router


@contextlib.asynccontextmanager
async def _held_batcher(backend: Scripted) -> AsyncIterator[Batcher]:
    """A started batcher (up to 4 texts per batch) over `backend`, whose calls block until released."""
    batcher = Batcher(await _router(backend), MODEL, max_batch=4, max_delay_s=0.001)
    await batcher.start()
    backend.gate.clear()
    try:
        yield batcher
    finally:
        await batcher.close()


async def test_interactive_requests_join_the_next_batch_ahead_of_waiting_batch_work() -> None:
    backend = Scripted("b")
    async with _held_batcher(backend) as batcher:
        first = asyncio.create_task(batcher.embed(["batch-0"], rank=2))
        await backend.started.wait()  # the backend (capacity 1) is busy with the first batch
        queued = [asyncio.create_task(batcher.embed([f"batch-{i}"], rank=2)) for i in range(1, 9)]
        urgent = [asyncio.create_task(batcher.embed([f"interactive-{i}"], rank=0)) for i in range(3)]
        await asyncio.sleep(0)  # let every request reach the queue
        backend.gate.set()
        await asyncio.gather(first, *queued, *urgent)
    assert backend.batches[0] == ["batch-0"]
    assert backend.batches[1] == ["interactive-0", "interactive-1", "interactive-2", "batch-1"]
    assert [t for b in backend.batches for t in b if t.startswith("batch")] == [f"batch-{i}" for i in range(9)]


async def test_a_batch_whose_requests_all_went_away_cancels_its_model_call() -> None:
    backend = Scripted("b")
    async with _held_batcher(backend) as batcher:
        calls = [asyncio.create_task(batcher.embed([f"t{i}"], rank=1)) for i in range(3)]
        await backend.started.wait()
        calls[0].cancel()
        await asyncio.sleep(0)
        assert backend.cancelled == 0  # two requests still want the answer
        for call in calls[1:]:
            call.cancel()
        for _ in range(5):
            await asyncio.sleep(0)
        assert backend.cancelled == 1


async def test_router_prefers_the_backend_with_room_and_falls_back_when_one_fails() -> None:
    fast, slow = Scripted("fast", capacity=2), Scripted("slow", capacity=1)
    router = await _router(fast, slow)
    _, used = await router.embed(MODEL, ["a"], 2)
    assert used == "fast"  # equal latency prior: twice the capacity halves the expected wait
    fast.gate.clear()
    held = [asyncio.create_task(router.embed(MODEL, [f"h{i}"], 2)) for i in range(2)]
    await asyncio.sleep(0)
    _, used = await router.embed(MODEL, ["b"], 2)
    assert used == "slow"  # fast is full: load sends it elsewhere
    fast.gate.set()
    await asyncio.gather(*held)

    fast.fail = True
    vectors, used = await router.embed(MODEL, ["abc"], 2)
    assert used == "slow" and vectors[0][0] == 3.0  # answered by the fallback, not failed
    status = {s.backend: s for s in router.snapshot("i")}
    assert status["fast"].circuit == "open" and status["fast"].failures == 1
    assert status["slow"].circuit == "closed"


async def test_router_errors_unknown_model_and_no_backend_left() -> None:
    only = Scripted("only", fail=True)
    router = await _router(only)
    with pytest.raises(InvalidArgument, match="model: unknown model 'other'"):
        await router.embed("other", ["x"], 2)
    with pytest.raises(Unavailable):
        await router.embed(MODEL, ["x"], 2)
    with pytest.raises(Unavailable):  # its circuit is open now: not even tried
        await router.embed(MODEL, ["x"], 2)
    assert len(only.batches) == 1


async def test_a_backend_that_stops_answering_probes_loses_its_models_until_it_returns() -> None:
    now = [0.0]
    backend, cpu = Scripted("triton", capacity=4), Scripted("cpu")
    router = await _router(backend, cpu, breaker=lambda: CircuitBreaker(threshold=3, reset_s=5, clock=lambda: now[0]))
    backend.down = True
    await router._probe_all()
    assert {s.backend: list(s.models) for s in router.snapshot("i")} == {"triton": [], "cpu": [MODEL]}
    assert (await router.embed(MODEL, ["x"], 2))[1] == "cpu"
    backend.down = False
    await router._probe_all()  # answers again, but the circuit rests for reset_s first
    assert (await router.embed(MODEL, ["x"], 2))[1] == "cpu"
    now[0] = 6.0
    await router._probe_all()  # half-open + a good probe: closed
    assert {s.backend: s.circuit for s in router.snapshot("i")}["triton"] == "closed"
    assert (await router.embed(MODEL, ["x"], 2))[1] == "triton"
    backend.down = cpu.down = True
    await router._probe_all()
    assert MODEL in router.models()  # no backend holds it now: unavailable (retry later), not unknown
    with pytest.raises(Unavailable):
        await router.embed(MODEL, ["x"], 2)


def test_breaker_opens_after_threshold_and_lets_one_trial_through_after_reset() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, reset_s=5, clock=lambda: now[0])
    for _ in range(2):
        breaker.failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allows()
    breaker.failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allows() and breaker.trips == 1
    now[0] = 5.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allows() and not breaker.allows()  # exactly one trial
    breaker.failure()
    assert breaker.state is BreakerState.OPEN and breaker.trips == 1  # still the same outage
    now[0] = 10.0
    assert breaker.allows()
    breaker.success()
    assert breaker.state is BreakerState.CLOSED and breaker.allows() and breaker.allows()
    breaker.failure(fatal=True)
    assert breaker.state is BreakerState.OPEN and breaker.trips == 2


async def _held(
    router: Router, backend: Scripted, count: int, rank: int, model: str = MODEL
) -> list[asyncio.Task[tuple[object, str]]]:
    """`count` calls of `model` held inside `backend` (its gate closed)."""
    backend.gate.clear()
    before = len(backend.batches)
    held = [asyncio.create_task(router.embed(model, [f"held-{i}"], rank)) for i in range(count)]
    for _ in range(100):
        if len(backend.batches) >= before + count:
            break
        await asyncio.sleep(0)
    assert len(backend.batches) == before + count
    return held  # type: ignore[return-value]


async def test_a_full_preferred_pool_spills_urgent_work_at_once_and_keeps_batch_work_within_its_bound() -> None:
    """Triton (tier 0) full: an interactive call goes to the CPU pool straight away (capacity running
    out, not a failure); a batch call expects to wait less than its bound, so it waits for Triton."""
    triton, cpu = Scripted("triton", capacity=1), Scripted("cpu", capacity=1)
    cpu.tier = 1  # the fallback pool
    router = await _router(triton, cpu)
    _, used = await router.embed(MODEL, ["idle"], 2)
    assert used == "triton"  # the preferred pool while it has room, whatever the class
    held = await _held(router, triton, 1, 2)
    _, used = await router.embed(MODEL, ["urgent"], 0)
    assert used == "cpu"
    waiting = asyncio.create_task(router.embed(MODEL, ["bulk"], 2))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done() and cpu.batches == [["urgent"]]  # batch work waits for Triton ...
    assert [b.in_flight for b in router.snapshot("i")] == [1, 0]  # ... and Triton never runs over its cap
    triton.gate.set()
    await asyncio.gather(*held)
    assert (await waiting)[1] == "triton"
    spills = METRICS.inference_spills.labels(MODEL, "triton", "cpu", "interactive")._value.get()
    assert spills >= 1
    await router.close()


async def test_past_its_bound_batch_work_spills_too() -> None:
    triton, cpu = Scripted("triton", capacity=1), Scripted("cpu", capacity=1)
    cpu.tier = 1  # the fallback pool
    router = await _router(triton, cpu, spill_after_s=(0.0, 0.0, 0.01))
    held = await _held(router, triton, 1, 2)
    _, used = await router.embed(MODEL, ["bulk"], 2)  # expected wait 2 x 50 ms prior > 10 ms
    assert used == "cpu"
    triton.gate.set()
    await asyncio.gather(*held)
    await router.close()


async def test_calls_waiting_for_room_get_it_most_urgent_first() -> None:
    only = Scripted("triton", capacity=1)
    router = await _router(only)
    held = await _held(router, only, 1, 2)
    bulk = asyncio.create_task(router.embed(MODEL, ["bulk"], 2))
    for _ in range(5):
        await asyncio.sleep(0)
    urgent = asyncio.create_task(router.embed(MODEL, ["urgent"], 0))
    gone = asyncio.create_task(router.embed(MODEL, ["gone"], 0))
    for _ in range(5):
        await asyncio.sleep(0)
    gone.cancel()  # a waiter that leaves does not hold the room
    only.gate.set()
    await asyncio.gather(*held, bulk, urgent)
    assert [b[0] for b in only.batches[-2:]] == ["urgent", "bulk"]  # arrived later, ran first
    assert [s.in_flight for s in router.snapshot("i")] == [0]
    await router.close()


async def test_a_queue_past_its_bound_refuses_at_once_with_the_time_it_needs_to_drain() -> None:
    """Overload is an answer (RESOURCE_EXHAUSTED with a retry-after), not a call left to time out:
    a call that would wait past `max_wait_s` everywhere is refused, one within it still queues."""
    only = Scripted("triton", capacity=1)
    router = await _router(only, max_wait_s=0.12)  # latency prior 50 ms: two calls ahead = 0.15 s
    held = await _held(router, only, 1, 2)
    queued = asyncio.create_task(router.embed(MODEL, ["queued"], 2))  # (1 + 0 + 1) x 50 ms: admitted
    for _ in range(5):
        await asyncio.sleep(0)
    assert not queued.done()
    with pytest.raises(ResourceExhausted) as refused:
        await router.embed(MODEL, ["one too many"], 2)
    assert 0 < refused.value.retry_after_s <= 0.15 and "saturated" in refused.value.message
    # The bound is per urgency: an interactive call does not wait behind the batch call, so it queues.
    urgent = asyncio.create_task(router.embed(MODEL, ["urgent"], 0))
    only.gate.set()
    await asyncio.gather(*held, queued, urgent)
    assert [b[0] for b in only.batches[-3:]] == ["held-0", "urgent", "queued"]
    assert METRICS.inference_refused.labels(MODEL, "triton", "batch")._value.get() >= 1
    await router.close()


async def test_a_full_queue_refuses_even_when_the_wait_looks_short() -> None:
    only = Scripted("triton", capacity=1)
    router = await _router(only, max_waiting=1)
    held = await _held(router, only, 1, 2)
    queued = asyncio.create_task(router.embed(MODEL, ["queued"], 2))
    for _ in range(5):
        await asyncio.sleep(0)
    with pytest.raises(ResourceExhausted):
        await router.embed(MODEL, ["over"], 0)
    only.gate.set()
    await asyncio.gather(*held, queued)
    await router.close()


async def test_a_variant_spills_to_its_family_reference_and_the_reference_never_runs_on_a_variant() -> None:
    """An FP16 variant on the GPU pool, its FP32 reference on the CPU pool: the variant's calls run
    on the variant while it has room and spill to the reference (the variant only approximates it)
    when it is full; the reference's calls never go to the variant, and a "variant" whose tensors
    differ from its reference's gets no stand-in."""
    variant = "m-fp16"
    gpu, cpu = Scripted("triton"), Scripted("cpu")
    cpu.tier = 1
    gpu.specs = [ModelSpec(variant, 2, 8, family=MODEL, min_cosine=0.999, precision="fp16")]
    router = await _router(gpu, cpu)
    assert (await router.embed(variant, ["idle"], 2))[1] == "triton"
    held = await _held(router, gpu, 1, 2, model=variant)
    _, used = await router.embed(variant, ["urgent"], 0)
    assert used == "cpu" and cpu.called == [MODEL]  # the reference ran it
    gpu.gate.set()
    await asyncio.gather(*held)
    assert (await router.embed(MODEL, ["reference"], 0))[1] == "cpu"
    assert gpu.called == [variant, variant]
    gpu.specs = [ModelSpec(variant, 3, 8, family=MODEL, min_cosine=0.999)]  # 3-d vectors: not the family's
    await router._probe_all()
    held = await _held(router, gpu, 1, 0, model=variant)
    waiting = asyncio.create_task(router.embed(variant, ["no stand-in"], 0))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done() and cpu.called == [MODEL, MODEL]  # it waits for the variant instead
    gpu.gate.set()
    await asyncio.gather(*held, waiting)
    await router.close()


async def test_a_saturated_variant_spills_to_its_reference_rather_than_being_refused() -> None:
    """The bound on queueing applies where the call would go: with the variant's pool past it but
    its reference free, the call runs on the reference instead of being refused."""
    variant = "m-fp16"
    gpu, cpu = Scripted("triton"), Scripted("cpu")
    cpu.tier = 1
    gpu.specs = [ModelSpec(variant, 2, 8, family=MODEL, min_cosine=0.999)]
    router = await _router(gpu, cpu, max_wait_s=0.01, spill_after_s=(1.0, 1.0, 1.0))
    held = await _held(router, gpu, 1, 2, model=variant)
    assert (await router.embed(variant, ["batch"], 2))[1] == "cpu"
    gpu.gate.set()
    await asyncio.gather(*held)
    await router.close()
