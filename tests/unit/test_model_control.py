"""Model residency: the pure eviction policy (property-tested) and the router's model control
over a backend that loads and unloads on request — on-demand loads, the memory budget with the
least recently used idle model out first, never a model with calls in flight, one load shared by
concurrent callers, and residency re-read at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import Conflict, NotFound, ResourceExhausted
from mesh.oip import Signature, TensorData, TensorRequest, TensorSpec
from services.inference._backend import Chunk, Loadable, ModelSpec
from services.inference._residency import MIB, Resident, evictions
from services.inference._router import Router

# ---- the policy -----------------------------------------------------------------------------

residents = st.lists(
    st.builds(
        Resident,
        name=st.text("abcdefgh", min_size=1, max_size=3),
        memory_bytes=st.integers(1, 100),
        last_used=st.floats(0, 1000),
        in_flight=st.integers(0, 2),
        draining=st.booleans(),
    ),
    max_size=8,
    unique_by=lambda r: r.name,
)


@given(residents, st.integers(0, 400), st.integers(1, 150))
def test_evictions_make_room_with_idle_models_least_recently_used_first(
    held: list[Resident], budget: int, needed: int
) -> None:
    try:
        chosen = evictions(budget, held, "new", needed)
    except (ResourceExhausted, Conflict):
        idle = sum(r.memory_bytes for r in held if not r.in_flight and not r.draining)
        assert budget > 0 and sum(r.memory_bytes for r in held) - idle + needed > budget
        return
    by_name = {r.name: r for r in held}
    assert all(by_name[n].in_flight == 0 and not by_name[n].draining for n in chosen)
    if budget:
        assert sum(r.memory_bytes for r in held) - sum(by_name[n].memory_bytes for n in chosen) + needed <= budget
    # least recently used first, and no more than needed: without the last one it would not fit
    used_order = [by_name[n].last_used for n in chosen]
    assert used_order == sorted(used_order)
    if chosen:
        kept = sum(r.memory_bytes for r in held) - sum(by_name[n].memory_bytes for n in chosen[:-1])
        assert kept + needed > budget


def test_a_model_over_the_whole_budget_is_a_conflict_not_a_retry() -> None:
    with pytest.raises(Conflict):
        evictions(100, [], "huge", 101)


# ---- the router over a backend that controls its models -------------------------------------


def _signature(name: str) -> Signature:
    return Signature(name, (TensorSpec("X", "FP32", (1,)),), (TensorSpec("Y", "FP32", (1,)),))


class Repository:
    """A backend with a model repository: `load`/`unload` change what `refresh` reports."""

    name = "triton"
    address = "repo"
    capacity = 4
    accepts_tokens = False
    controls_models = True
    tier = 0
    device_kinds = frozenset({"cpu"})

    def __init__(self, models: dict[str, int], loaded: set[str]) -> None:
        self.memory = models  # name: MiB
        self.needs: dict[str, str] = {}  # name: the device kind its config needs
        self.loaded = set(loaded)
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.load_gate = asyncio.Event()
        self.load_gate.set()
        self.running = asyncio.Event()
        self.loading = asyncio.Event()

    async def refresh(self) -> list[ModelSpec]:
        return [ModelSpec(n, 0, 0, _signature(n)) for n in sorted(self.loaded)]

    def available(self) -> dict[str, Loadable]:
        return {
            n: Loadable(n, "READY" if n in self.loaded else "UNAVAILABLE", "", mib * MIB, self.needs.get(n, ""))
            for n, mib in self.memory.items()
        }

    async def load(self, model: str) -> None:
        self.calls.append(f"load {model}")
        self.loading.set()
        await self.load_gate.wait()
        self.loaded.add(model)

    async def unload(self, model: str) -> None:
        assert model in self.loaded
        self.calls.append(f"unload {model}")
        self.loaded.discard(model)

    async def infer(self, model: str, request: TensorRequest, rank: int) -> list[TensorData]:
        assert model in self.loaded, f"{model} ran while not loaded"
        self.running.set()
        await self.gate.wait()
        assert model in self.loaded, f"{model} was unloaded under a call in flight"
        return []

    async def embed(self, model: str, texts: list[str], rank: int) -> object:
        raise AssertionError("not used")

    async def embed_tokens(self, model: str, ids: list[list[int]]) -> object:
        raise AssertionError("not used")

    def streams(self, model: str) -> bool:
        return False

    def statistics(self) -> list[object]:
        return []

    def stream(self, model: str, text: str, chunk_words: int, rank: int) -> AsyncIterator[Chunk]:
        raise AssertionError("not used")

    async def close(self) -> None:
        pass


async def _router(*backends: Repository, budget_mib: int = 0) -> Router:
    router = Router(list(backends), probe_interval_s=3600, memory_budget_bytes=budget_mib * MIB, drain_timeout_s=5)  # type: ignore[arg-type]
    await router.start()
    return router


REQUEST = TensorRequest([TensorData("X", "FP32", (1,), b"\0\0\0\0")])


async def test_a_call_for_a_model_none_holds_loads_it_on_demand_and_residency_follows_at_once() -> None:
    repo = Repository({"a": 10, "b": 10}, loaded={"a"})
    router = await _router(repo)
    assert router.holders("b") == [] and router.loadable("b")
    _, backend = await router.infer("b", REQUEST, 1)
    assert backend == "triton" and repo.calls == ["load b"]
    assert router.holders("b") == ["triton"]  # no probe interval waited: re-read right after the load
    await router.close()


async def test_past_the_budget_the_least_recently_used_idle_model_is_unloaded_first() -> None:
    repo = Repository({"a": 40, "b": 40, "c": 40}, loaded={"a", "b"})
    router = await _router(repo, budget_mib=100)
    await router.infer("b", REQUEST, 1)
    await router.infer("a", REQUEST, 1)  # b is now the least recently used
    assert await router.load("c") == ("triton", ["b"])
    assert repo.loaded == {"a", "c"}
    assert repo.calls == ["unload b", "load c"]
    await router.close()


async def test_a_model_with_calls_in_flight_is_never_unloaded_to_make_room() -> None:
    repo = Repository({"a": 60, "b": 60}, loaded={"a"})
    router = await _router(repo, budget_mib=100)
    repo.gate.clear()
    busy = asyncio.create_task(router.infer("a", REQUEST, 1))
    await repo.running.wait()
    with pytest.raises(ResourceExhausted) as refused:
        await router.load("b")
    assert refused.value.retry_after_s > 0 and "'a'" in refused.value.message
    repo.gate.set()
    await busy
    assert (await router.load("b"))[1] == ["a"]  # idle now: it makes room
    await router.close()


async def test_an_unload_waits_for_calls_in_flight_while_new_calls_go_elsewhere() -> None:
    repo = Repository({"a": 10}, loaded={"a"})
    router = await _router(repo)
    repo.gate.clear()
    busy = asyncio.create_task(router.infer("a", REQUEST, 1))
    await repo.running.wait()
    unloading = asyncio.create_task(router.unload("a"))
    for _ in range(100):  # a few loop turns: the unload starts draining
        if not router.holders("a"):
            break
        await asyncio.sleep(0)
    assert router.holders("a") == []  # no new call is routed to it
    assert not unloading.done() and "unload a" not in repo.calls
    repo.gate.set()
    await busy  # it finished on a loaded model (Repository.infer asserts so)
    assert await unloading == ["triton"]
    assert repo.calls == ["unload a"] and router.holders("a") == []
    await router.close()


async def test_concurrent_calls_for_an_unloaded_model_share_one_load() -> None:
    repo = Repository({"a": 10}, loaded=set())
    router = await _router(repo)
    repo.load_gate.clear()
    calls = [asyncio.create_task(router.infer("a", REQUEST, 1)) for _ in range(5)]
    await repo.loading.wait()
    repo.load_gate.set()
    await asyncio.gather(*calls)
    assert repo.calls == ["load a"]
    await router.close()


async def test_unknown_models_are_not_found_and_the_loaded_one_is_not_loaded_twice() -> None:
    repo = Repository({"a": 10}, loaded={"a"})
    router = await _router(repo)
    with pytest.raises(NotFound):
        await router.load("nope")
    with pytest.raises(NotFound):
        await router.unload("nope")
    assert await router.load("a") == ("triton", [])
    assert repo.calls == []
    await router.close()


async def test_a_model_that_needs_a_gpu_is_placed_only_where_there_is_one() -> None:
    """A model whose config needs a GPU: a CPU-only backend never loads it (not loadable there,
    not offered in its registration), the GPU backend does, on demand too; with no GPU anywhere
    the load is a Conflict (FAILED_PRECONDITION) saying what it needs and what there is."""
    cpu_only, gpu = Repository({"detector": 10}, set()), Repository({"detector": 10}, set())
    cpu_only.name, gpu.name = "triton-cpu", "triton-gpu"
    cpu_only.needs = gpu.needs = {"detector": "gpu"}
    gpu.device_kinds = frozenset({"cpu", "gpu"})
    router = await _router(cpu_only, gpu)
    assert router.loadable("detector") and router.unfit("detector") == ""
    entries = {e.backend: e for e in router.snapshot("i")}
    assert list(entries["triton-gpu"].loadable_models) == ["detector"]
    assert list(entries["triton-cpu"].loadable_models) == [] and list(entries["triton-gpu"].device_kinds) == [
        "cpu",
        "gpu",
    ]
    await router.infer("detector", REQUEST, 1)  # on demand: the GPU backend loads it
    assert gpu.calls == ["load detector"] and cpu_only.calls == []
    await router.close()

    alone = await _router(cpu_only)
    assert not alone.loadable("detector")
    with pytest.raises(Conflict, match=r"needs a GPU .* triton-cpu \(cpu\)"):
        await alone.load("detector")
    await alone.close()
