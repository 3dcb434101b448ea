"""The model-aware router: which backend runs each model call, and which models stay loaded.

Backends register the models they hold (re-read every `probe_interval_s`) and their capacity.
A call goes to a backend that holds the model and whose circuit is closed, by pool and load: the
preferred pool that holds it (the lowest `tier`: Triton, where the accelerators are, before the
embedded CPU model) while one of its backends has room, the one with the least expected wait
``(in flight + waiting ahead + 1) / capacity * recent latency``. When all are full, a call waits
there if that wait is within its priority class's bound (`spill_after_s`), and otherwise spills to
another pool — capacity running out, not only a failure, moves work to the CPU. No backend runs
more calls at once than its capacity: a call waits for room, and the most urgent waiting call
gets it first. The queue is bounded: a call that would expect to wait longer than `max_wait_s`
(or find `max_waiting` calls already queued) wherever it could go is refused with
RESOURCE_EXHAUSTED and a retry-after — the time the queue needs to drain back to the bound — so
overload is an answer at once, not a deadline expiring. A backend that fails is skipped (its
circuit opens) and the call is retried on the next one, so a call fails only when every backend
that holds the model has failed it.

Backends that control their models (Triton in explicit mode) load one on request or on demand
— a call for a model none holds but one could load — within a memory budget: the least
recently used idle models are unloaded first (`_residency`), and a model is unloaded only once
its calls in flight have finished (new ones go elsewhere meanwhile). Residency is re-read right
after each load or unload.

A model may be a variant of another (its config's `family`: an FP16 build of an FP32 model,
promising vectors within its `min_cosine`): a call for the variant may run wherever the
reference is — so an FP16 model on the GPU pool spills to the FP32 model on the CPU pool — but
never the other way round, and only while both take and give the same tensors.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

import numpy as np

from mesh.errors import Conflict, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from mesh.oip import TensorData, TensorRequest
from mesh.priority import CLASS_NAMES
from mesh.telemetry import METRICS, get_logger
from mesh.v1 import status_pb2
from services.inference._backend import BackendDown, Chunk, InferenceBackend, Loadable, ModelSpec
from services.inference._breaker import BreakerState, CircuitBreaker
from services.inference._residency import MIB, Resident, evictions

log = get_logger(__name__)
T = TypeVar("T")

_LATENCY_PRIOR_S = 0.05
# How long a call of each class (interactive, standard, batch) may expect to wait for the
# preferred pool before it spills to another: interactive at once, batch after a second.
SPILL_AFTER_S = (0.0, 0.1, 1.0)
# The longest a call may expect to queue, and the most calls queued per backend, before overload
# is refused (RESOURCE_EXHAUSTED) rather than waited out.
MAX_WAIT_S = 10.0
MAX_WAITING = 1024
_ARRIVALS = itertools.count()
_EWMA = 0.2


@dataclass(frozen=True)
class Catalogued:
    """One model as one backend has it (`Router.catalogue`)."""

    backend: str
    entry: Loadable  # its state in the backend's repository
    spec: ModelSpec | None  # when loaded
    in_flight: int
    last_used: float | None  # wall time of its last call here
    memory_bytes: int  # what it counts against the budget
    usable: bool  # loaded, not draining, the backend's circuit letting calls in


@dataclass(eq=False)  # a backend's place: compared by identity
class _Slot:
    backend: InferenceBackend
    breaker: CircuitBreaker
    models: dict[str, ModelSpec] = field(default_factory=dict)
    in_flight: int = 0
    latency_s: float = _LATENCY_PRIOR_S
    texts_served: int = 0
    failures: int = 0
    last_error: str = ""
    using: Counter[str] = field(default_factory=Counter)  # calls in flight per model
    last_used: dict[str, tuple[float, float]] = field(default_factory=dict)  # model: (monotonic, wall)
    draining: set[str] = field(default_factory=set)  # being unloaded: no new calls
    loading: dict[str, asyncio.Task[list[str]]] = field(default_factory=dict)
    idle: dict[str, asyncio.Event] = field(default_factory=dict)  # set when a draining model's calls end
    probe_failed: bool = False  # its last refresh failed: what it holds is not known now
    # Calls waiting for room (the capacity is a cap), most urgent first, then first come.
    waiters: list[tuple[int, int, asyncio.Future[None]]] = field(default_factory=list)

    def usable(self, model: str) -> bool:
        return model in self.models and model not in self.draining and self.breaker.would_allow()

    def serves(self, names: Sequence[str]) -> str | None:
        """The first of `names` (a model, then its family's reference) this backend takes calls for."""
        return next((n for n in names if self.usable(n)), None)

    @property
    def tier(self) -> int:
        return self.backend.tier

    def has_room(self) -> bool:
        return self.in_flight < max(self.backend.capacity, 1)

    @property
    def waiting(self) -> int:
        return sum(1 for *_, turn in self.waiters if not turn.done())

    @contextlib.asynccontextmanager
    async def use(self, model: str, rank: int = 1) -> AsyncIterator[None]:
        """One call of `model` on this backend, once it has room (at most `capacity` at once);
        waiting calls get the room in order of urgency (`rank`), then of arrival."""
        if self.has_room() and not self.waiting:
            self.in_flight += 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self.waiters, (rank, next(_ARRIVALS), turn))
            try:
                await turn  # handed over with in_flight already counted (see `_hand_on`)
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self.in_flight -= 1  # given the room just as it was cancelled: pass it on
                    self._hand_on()
                raise
        self.using[model] += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._hand_on()
            self.using[model] -= 1
            self.last_used[model] = (time.monotonic(), time.time())
            if self.using[model] <= 0:
                del self.using[model]
                if model in self.idle:
                    self.idle[model].set()

    def _hand_on(self) -> None:
        """Room freed: give it to the most urgent waiter still waiting."""
        while self.waiters and self.has_room():
            *_, turn = heapq.heappop(self.waiters)
            if not turn.done():
                self.in_flight += 1
                turn.set_result(None)

    def expected_wait(self, rank: int = 2) -> float:
        """How long a call of urgency `rank` may expect to wait here and run: the calls in flight,
        and the waiting ones it would not jump (as urgent or more), over the capacity, times the
        recent latency."""
        ahead = sum(1 for r, _, turn in self.waiters if r <= rank and not turn.done())
        return (self.in_flight + ahead + 1) / max(self.backend.capacity, 1) * self.latency_s


class Router:
    def __init__(
        self,
        backends: list[InferenceBackend],
        probe_interval_s: float = 1.0,
        breaker: Callable[[], CircuitBreaker] = CircuitBreaker,
        memory_budget_bytes: int = 0,
        default_model_bytes: int = 256 * MIB,
        drain_timeout_s: float = 30.0,
        spill_after_s: Sequence[float] = SPILL_AFTER_S,
        max_wait_s: float = MAX_WAIT_S,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self._slots = [_Slot(b, breaker()) for b in backends]
        self._budget = memory_budget_bytes
        self._default_model_bytes = default_model_bytes
        self._drain_timeout_s = drain_timeout_s
        self._spill_after_s = tuple(spill_after_s)  # by urgency: interactive, standard, batch
        self._max_wait_s = max_wait_s
        self._max_waiting = max_waiting
        # Every model some backend has held: one that is merely down is unavailable, not unknown.
        self._known: dict[str, ModelSpec] = {}
        self._probe_interval_s = probe_interval_s
        self._probe_task: asyncio.Task[None] | None = None
        self._unexport: Callable[[], None] | None = None

    async def start(self) -> None:
        await self._probe_all()
        self._probe_task = asyncio.create_task(self._probe_loop())
        self._unexport = METRICS.inference_breaker_open.provide(self._breakers_open)

    def _breakers_open(self) -> list[tuple[list[str], float]]:
        """1 per backend whose circuit keeps calls from it (open, or half-open), read when scraped."""
        return [([s.backend.name], float(s.breaker.state is not BreakerState.CLOSED)) for s in self._slots]

    async def close(self) -> None:
        if self._unexport is not None:
            self._unexport()
            self._unexport = None
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
        for slot in self._slots:
            await slot.backend.close()

    # ---- registry -------------------------------------------------------------------------

    def models(self) -> Mapping[str, ModelSpec]:
        """Every model a backend has registered (held now or before), first registration first."""
        return MappingProxyType(self._known)

    def unreachable(self) -> list[str]:
        """Backends whose last probe failed: what they hold is not known now."""
        return [s.backend.name for s in self._slots if s.probe_failed]

    def holders(self, model: str) -> list[str]:
        """The backends that hold `model` now and take calls."""
        return [s.backend.name for s in self._slots if s.usable(model)]

    def capacity(self, model: str) -> int:
        """Calls of `model` that can run at once: on every backend that holds it (or, for a
        variant, its family's reference)."""
        names = self._names(model)
        return sum(s.backend.capacity for s in self._slots if any(n in s.models for n in names)) or 1

    def snapshot(self, instance: str, endpoint: str = "") -> list[status_pb2.InferenceBackendStatus]:
        out = []
        for slot in self._slots:
            entry = status_pb2.InferenceBackendStatus(
                instance=instance,
                endpoint=endpoint,
                backend=slot.backend.name,
                address=slot.backend.address,
                circuit=slot.breaker.state.value,
                models=sorted(slot.models),
                streaming_models=sorted(m for m in slot.models if slot.backend.streams(m)),
                capacity=slot.backend.capacity,
                in_flight=slot.in_flight,
                latency_ms=slot.latency_s * 1000,
                texts_served=slot.texts_served,
                failures=slot.failures,
                last_error=slot.last_error,
                device_kinds=sorted(slot.backend.device_kinds),
                waiting=slot.waiting,
                loadable_models=sorted(
                    m
                    for m in slot.backend.available()
                    if m not in slot.models and any(c is slot for c in self._controllers(m))
                ),
                memory_budget_bytes=self._budget if slot.backend.controls_models else 0,
                memory_resident_bytes=sum(self._memory(slot, m) for m in slot.models)
                if slot.backend.controls_models
                else 0,
                model_statistics=slot.backend.statistics(),
            )
            entry.updated.GetCurrentTime()
            out.append(entry)
        return out

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval_s)
            await self._probe_all()

    async def _probe_all(self) -> None:
        await asyncio.gather(*(self._probe(slot) for slot in self._slots))
        await asyncio.gather(*(self._keep_budget(slot) for slot in self._slots))

    async def _keep_budget(self, slot: _Slot) -> None:
        """A backend over its budget (models loaded before this service, or at Triton's start)
        is brought under it: idle models out, least recently used (and never used) first."""
        if not (self._budget and slot.backend.controls_models) or slot.loading or slot.draining:
            return
        try:
            victims = evictions(self._budget, self._residents(slot), "", 0)
        except (Conflict, ResourceExhausted):
            return  # over budget with models in use: try again at the next probe
        if victims:
            await self._unload_idle(slot, victims, "over the memory budget")

    async def _unload_idle(self, slot: _Slot, victims: list[str], why: str, then: str = "") -> None:
        """Unload idle `victims` (no call is routed to them from the first line on), then load
        `then` if given; residency is re-read right after, whatever happened."""
        slot.draining.update(victims)
        try:
            for victim in victims:
                await slot.backend.unload(victim)
                log.info(f"model unloaded: {why}", extra={"model": victim, "backend": slot.backend.name})
            if then:
                await slot.backend.load(then)
        finally:
            await self._probe(slot)
            slot.draining.difference_update(victims)

    async def _probe(self, slot: _Slot) -> None:
        try:
            specs = await slot.backend.refresh()
        except BackendDown as exc:
            if slot.models:
                log.warning("inference backend down", extra={"backend": slot.backend.name, "error": exc.message})
            slot.models = {}
            slot.probe_failed = True
            self._failed(slot, exc, fatal=True)
            return
        slot.probe_failed = False
        slot.models = {s.name: s for s in specs}
        METRICS.backend_model_statistics.set(slot.backend.name, slot.backend.address, slot.backend.statistics())
        for spec in specs:
            self._known[spec.name] = spec  # the latest registration: a reloaded model's new signature
        if slot.breaker.state is BreakerState.HALF_OPEN:
            slot.breaker.success()  # it answers again: let work back in

    # ---- routing --------------------------------------------------------------------------

    def _names(self, model: str) -> tuple[str, ...]:
        """What may serve a call of `model`: the model, then — for a variant (an FP16 build, …)
        whose family's reference is known with the same tensors — the reference, whose outputs
        the variant only approximates. A reference's call never runs on a variant."""
        spec = self._known.get(model)
        reference = self._known.get(spec.family) if spec and spec.family and spec.family != model else None
        return (model, reference.name) if spec and reference and spec.same_tensors(reference) else (model,)

    def _pick(self, model: str, tried: set[int], tokens: bool = False, rank: int = 1) -> _Slot | None:
        """The backend for a call of `model` at urgency `rank` (see the module's placement rule);
        a backend that holds only its family's reference is a candidate too."""
        names = self._names(model)
        candidates = [
            s
            for i, s in enumerate(self._slots)
            if i not in tried and s.serves(names) and (s.backend.accepts_tokens or not tokens)
        ]
        if not candidates:
            return None
        tier = min(s.tier for s in candidates)
        preferred = [s for s in candidates if s.tier == tier]
        with_room = [s for s in preferred if s.has_room()]

        def wait(slot: _Slot) -> float:
            return slot.expected_wait(rank)

        if with_room:
            chosen = min(with_room, key=wait)
        else:
            best = min(preferred, key=wait)
            bound = self._spill_after_s[min(rank, len(self._spill_after_s) - 1)]
            elsewhere = [s for s in candidates if s.tier != tier]
            if elsewhere and wait(best) > min(bound, self._max_wait_s):  # past the class's bound, or refused
                # Spill: to a pool with room, else to whichever this call would wait least for.
                chosen = min([s for s in elsewhere if s.has_room()] or [*elsewhere, best], key=wait)
                if chosen is not best:
                    METRICS.inference_spills.labels(
                        model, best.backend.name, chosen.backend.name, CLASS_NAMES[rank]
                    ).inc()
            else:
                chosen = best  # waits for room there
            if not chosen.has_room():  # it would queue: within the bound, or refused
                self._admit(model, chosen, rank)
        return chosen if chosen.breaker.allows() else None

    def _admit(self, model: str, slot: _Slot, rank: int) -> None:
        """A call about to queue at `slot` (the least wait it has anywhere): refused when the
        wait passes the bound or the queue is full, with the time it needs to drain to the bound."""
        wait = slot.expected_wait(rank)
        if wait <= self._max_wait_s and slot.waiting < self._max_waiting:
            return
        METRICS.inference_refused.labels(model, slot.backend.name, CLASS_NAMES[rank]).inc()
        raise ResourceExhausted(
            f"inference for {model!r} is saturated: a call would wait ~{wait:.1f} s on "
            f"{slot.backend.name} behind {slot.waiting} queued (bound {self._max_wait_s:g} s, "
            f"{self._max_waiting} calls)",
            retry_after_s=max(wait - self._max_wait_s, slot.latency_s),
        )

    async def _call(
        self,
        model: str,
        size: int,
        call: Callable[[InferenceBackend, str], Awaitable[T]],
        tokens: bool,
        rank: int = 1,
    ) -> tuple[T, str]:
        """`call` (a backend, the model it runs there) on the best backend for `model`, falling
        back on failure; its result and the backend's name."""
        tried: set[int] = set()
        previous: _Slot | None = None
        await self._resident(model, tokens, rank)
        while True:
            slot = self._pick(model, tried, tokens, rank)
            served = slot.serves(self._names(model)) if slot else None
            if slot is None or served is None:
                if model not in self._known and not self.loadable(model):
                    raise InvalidArgument("model", f"unknown model {model!r} (served: {', '.join(self._known)})")
                raise Unavailable(f"no inference backend can run {model!r} now")
            if previous is not None:
                METRICS.inference_fallbacks.labels(model, previous.backend.name, slot.backend.name).inc()
            tried.add(self._slots.index(slot))
            started = time.monotonic()
            try:
                async with slot.use(served, rank):
                    result = await call(slot.backend, served)
            except BackendDown as exc:
                METRICS.inference_failures.labels(served, slot.backend.name).inc()
                self._failed(slot, exc, fatal=True)
                previous = slot
                continue
            elapsed_s = time.monotonic() - started
            slot.latency_s += _EWMA * (elapsed_s - slot.latency_s)
            slot.texts_served += size
            slot.breaker.success()
            METRICS.inference_requests.labels(served, slot.backend.name).inc(size)
            METRICS.inferred(served, slot.backend.name, size, elapsed_s)
            return result, slot.backend.name

    async def _resident(self, model: str, tokens: bool, rank: int) -> None:
        """None holds `model` itself but a backend could load it: load it on demand first (its
        family's reference elsewhere does not stand in for a variant that is merely unloaded)."""
        held = any(s.usable(model) and (s.backend.accepts_tokens or not tokens) for s in self._slots)
        if not held and self.loadable(model):
            await self.load(model)

    def _failed(self, slot: _Slot, exc: BackendDown, fatal: bool) -> None:
        trips = slot.breaker.trips
        slot.breaker.failure(fatal=fatal)
        slot.failures += 1
        slot.last_error = exc.message
        if slot.breaker.trips > trips:
            METRICS.inference_breaker_trips.labels(slot.backend.name).inc()
            log.warning("inference circuit opened", extra={"backend": slot.backend.name, "error": exc.message})

    async def embed(self, model: str, texts: list[str], rank: int) -> tuple[np.ndarray, str]:
        """Vectors for `texts` and the name of the backend that computed them."""
        return await self._call(model, len(texts), lambda b, m: b.embed(m, texts, rank), tokens=False, rank=rank)

    async def embed_tokens(self, model: str, ids: list[list[int]]) -> tuple[np.ndarray, str]:
        return await self._call(model, len(ids), lambda b, m: b.embed_tokens(m, ids), tokens=True)

    async def infer(self, model: str, request: TensorRequest, rank: int) -> tuple[list[TensorData], str]:
        """Any model on checked tensors: its outputs and the name of the backend that ran it."""
        return await self._call(model, 1, lambda b, m: b.infer(m, request, rank), tokens=False, rank=rank)

    async def stream_infer(
        self, model: str, request: TensorRequest, rank: int
    ) -> AsyncIterator[tuple[list[TensorData], str]]:
        """Every response of a decoupled model, from the best backend that holds it. A backend
        that fails before its first response is skipped, as in `infer`; one that fails after
        has already answered in part, so the failure is the caller's."""
        tried: set[int] = set()
        await self._resident(model, False, rank)
        while True:
            slot = self._pick(model, tried, rank=rank)
            served = slot.serves(self._names(model)) if slot else None
            if slot is None or served is None:
                raise Unavailable(f"no inference backend can run {model!r} now")
            tried.add(self._slots.index(slot))
            answered = False
            try:
                async with slot.use(served, rank):
                    async for outputs in slot.backend.stream_infer(served, request, rank):
                        answered = True
                        slot.texts_served += 1
                        yield outputs, slot.backend.name
                slot.breaker.success()
                METRICS.inference_requests.labels(served, slot.backend.name).inc()
                return
            except BackendDown as exc:
                self._failed(slot, exc, fatal=True)
                if answered:
                    raise

    # ---- model control ----------------------------------------------------------------------

    def _controllers(self, model: str, backend: str = "", fitting: bool = True) -> list[_Slot]:
        """The healthy backends that could load `model` (`fitting`: whose devices can run it)."""
        return [
            s
            for s in self._slots
            if s.backend.controls_models
            and (entry := s.backend.available().get(model)) is not None
            and (not fitting or not entry.device_kind or entry.device_kind in s.backend.device_kinds)
            and (not backend or s.backend.name == backend)
            and s.breaker.would_allow()
        ]

    def loadable(self, model: str) -> bool:
        """Whether a backend that controls its models could load `model` (on devices that fit)."""
        return bool(self._controllers(model))

    def unfit(self, model: str, backend: str = "") -> str:
        """Why `model` cannot be loaded although a backend has it: none of those backends has the
        device its config needs ("" when one could load it, or none has it at all)."""
        if self._controllers(model, backend):
            return ""
        having = self._controllers(model, backend, fitting=False)
        if not having:
            return ""
        kind = having[0].backend.available()[model].device_kind
        where = ", ".join(f"{s.backend.name} ({'/'.join(sorted(s.backend.device_kinds))})" for s in having)
        return f"model {model!r} needs a {kind.upper()} and no backend that has it has one: {where}"

    def _memory(self, slot: _Slot, model: str) -> int:
        entry = slot.backend.available().get(model)
        return (entry.memory_bytes if entry else 0) or self._default_model_bytes

    def _residents(self, slot: _Slot) -> list[Resident]:
        return [
            Resident(
                name,
                self._memory(slot, name),
                slot.last_used.get(name, (0.0, 0.0))[0],
                slot.using[name],
                name in slot.draining,
            )
            for name in slot.models
        ]

    async def load(self, model: str, backend: str = "") -> tuple[str, list[str]]:
        """Load `model` on a backend that can (`backend`, or the one with the least to unload);
        the backend's name and the idle models unloaded to make room. Concurrent loads of one
        model on one backend share the first."""
        held = [s for s in self._slots if model in s.models and (not backend or s.backend.name == backend)]
        if held:
            return held[0].backend.name, []
        slots = self._controllers(model, backend)
        if not slots:
            if reason := self.unfit(model, backend):
                raise Conflict(reason)
            where = f"backend {backend!r}" if backend else "any backend"
            raise NotFound(f"no model {model!r} in the repositories of {where}")

        def cost(slot: _Slot) -> int:
            try:
                return len(evictions(self._budget, self._residents(slot), model, self._memory(slot, model)))
            except (Conflict, ResourceExhausted):
                return 1 << 30

        slot = min(slots, key=cost)
        task = slot.loading.get(model)
        if task is None:
            task = asyncio.create_task(self._load(slot, model))
            slot.loading[model] = task
            task.add_done_callback(lambda _: slot.loading.pop(model, None))
        return slot.backend.name, await asyncio.shield(task)

    async def _load(self, slot: _Slot, model: str) -> list[str]:
        victims = evictions(self._budget, self._residents(slot), model, self._memory(slot, model))
        await self._unload_idle(slot, victims, f"to make room for {model!r}", then=model)
        log.info("model loaded", extra={"model": model, "backend": slot.backend.name, "unloaded": victims})
        return victims

    async def unload(self, model: str, backend: str = "") -> list[str]:
        """Unload `model` from every backend that holds it (or `backend`), each once its calls in
        flight have finished; new calls go to other holders meanwhile. The backends it left."""
        slots = [s for s in self._slots if model in s.models and (not backend or s.backend.name == backend)]
        if not slots:
            raise NotFound(f"no backend holds a model {model!r}" + (f" on {backend!r}" if backend else ""))
        fixed = [s.backend.name for s in slots if not s.backend.controls_models]
        slots = [s for s in slots if s.backend.controls_models]  # the embedded model always stays
        if not slots:
            raise Conflict(f"model {model!r} is held only by backends that always hold it ({', '.join(fixed)})")
        await asyncio.gather(*(self._unload(slot, model) for slot in slots))
        return [s.backend.name for s in slots]

    async def _unload(self, slot: _Slot, model: str) -> None:
        slot.draining.add(model)
        idle = slot.idle.setdefault(model, asyncio.Event())
        try:
            if slot.using[model]:
                try:
                    async with asyncio.timeout(self._drain_timeout_s):
                        await idle.wait()
                except TimeoutError:
                    raise Conflict(
                        f"model {model!r} still has {slot.using[model]} calls in flight on "
                        f"{slot.backend.name} after {self._drain_timeout_s:.0f} s; not unloaded"
                    ) from None
            await slot.backend.unload(model)
            await self._probe(slot)
        finally:
            slot.draining.discard(model)
            slot.idle.pop(model, None)
        log.info("model unloaded", extra={"model": model, "backend": slot.backend.name})

    def catalogue(self) -> list[Catalogued]:
        """Every model each backend holds or could load."""
        out = []
        for slot in self._slots:
            for name, entry in sorted(slot.backend.available().items()):
                used = slot.last_used.get(name)
                out.append(
                    Catalogued(
                        slot.backend.name,
                        entry,
                        slot.models.get(name),
                        slot.using[name],
                        used[1] if used else None,
                        self._memory(slot, name),
                        slot.usable(name),
                    )
                )
        return out

    def streaming_backend(self, model: str) -> InferenceBackend | None:
        """A healthy backend that streams `model` natively, if one has room (else the service chunks)."""
        for slot in self._slots:
            if slot.usable(model) and slot.backend.streams(model) and slot.has_room():
                return slot.backend
        return None

    async def stream(
        self, backend: InferenceBackend, model: str, text: str, size: int, rank: int
    ) -> AsyncIterator[Chunk]:
        """`backend`'s native chunk stream, counted as load; a failure marks the backend failed."""
        slot = next(s for s in self._slots if s.backend is backend)
        try:
            async with slot.use(model, rank):
                async for chunk in backend.stream(model, text, size, rank):
                    slot.texts_served += 1
                    yield chunk
        except BackendDown as exc:
            self._failed(slot, exc, fatal=True)
            raise
