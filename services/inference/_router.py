"""The model-aware router: which backend runs each model call.

Backends register the models they hold (re-read every `probe_interval_s`) and their capacity.
A call goes to a backend that holds the model and whose circuit is closed, choosing by load:
the expected wait ``(in_flight + 1) / capacity * recent latency``, preferring backends that
still have room. A backend that fails is skipped (its circuit opens) and the call is retried
on the next one — in practice Triton falls back to the embedded CPU model — so a call fails
only when every backend that holds the model has failed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

import numpy as np

from mesh.errors import InvalidArgument, Unavailable
from mesh.telemetry import METRICS, get_logger
from mesh.v1 import status_pb2
from services.inference._backend import BackendDown, Chunk, InferenceBackend, ModelSpec
from services.inference._breaker import BreakerState, CircuitBreaker

log = get_logger(__name__)
T = TypeVar("T")

_LATENCY_PRIOR_S = 0.05
_EWMA = 0.2


@dataclass
class _Slot:
    backend: InferenceBackend
    breaker: CircuitBreaker
    models: dict[str, ModelSpec] = field(default_factory=dict)
    in_flight: int = 0
    latency_s: float = _LATENCY_PRIOR_S
    texts_served: int = 0
    failures: int = 0
    last_error: str = ""

    def usable(self, model: str) -> bool:
        return model in self.models and self.breaker.would_allow()

    def expected_wait(self) -> float:
        return (self.in_flight + 1) / max(self.backend.capacity, 1) * self.latency_s


class Router:
    def __init__(
        self,
        backends: list[InferenceBackend],
        probe_interval_s: float = 1.0,
        breaker: Callable[[], CircuitBreaker] = CircuitBreaker,
    ) -> None:
        self._slots = [_Slot(b, breaker()) for b in backends]
        # Every model some backend has held: one that is merely down is unavailable, not unknown.
        self._known: dict[str, ModelSpec] = {}
        self._probe_interval_s = probe_interval_s
        self._probe_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._probe_all()
        self._probe_task = asyncio.create_task(self._probe_loop())

    async def close(self) -> None:
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

    def capacity(self, model: str) -> int:
        return sum(s.backend.capacity for s in self._slots if model in s.models) or 1

    def snapshot(self, instance: str) -> list[status_pb2.InferenceBackendStatus]:
        out = []
        for slot in self._slots:
            entry = status_pb2.InferenceBackendStatus(
                instance=instance,
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

    async def _probe(self, slot: _Slot) -> None:
        try:
            specs = await slot.backend.refresh()
        except BackendDown as exc:
            if slot.models:
                log.warning("inference backend down", extra={"backend": slot.backend.name, "error": exc.message})
            slot.models = {}
            self._failed(slot, exc, fatal=True)
            return
        slot.models = {s.name: s for s in specs}
        for spec in specs:
            self._known.setdefault(spec.name, spec)
        if slot.breaker.state is BreakerState.HALF_OPEN:
            slot.breaker.success()  # it answers again: let work back in

    # ---- routing --------------------------------------------------------------------------

    def _pick(self, model: str, tried: set[int], tokens: bool = False) -> _Slot | None:
        candidates = [
            s
            for i, s in enumerate(self._slots)
            if i not in tried and s.usable(model) and (s.backend.accepts_tokens or not tokens)
        ]
        if not candidates:
            return None
        with_room = [s for s in candidates if s.in_flight < s.backend.capacity]
        chosen = min(with_room or candidates, key=_Slot.expected_wait)
        return chosen if chosen.breaker.allows() else None

    async def _call(
        self, model: str, size: int, call: Callable[[InferenceBackend], Awaitable[T]], tokens: bool
    ) -> tuple[T, str]:
        """`call` on the best backend for `model`, falling back on failure; its result and the backend's name."""
        tried: set[int] = set()
        previous: _Slot | None = None
        while True:
            slot = self._pick(model, tried, tokens)
            if slot is None:
                if model not in self._known:
                    raise InvalidArgument("model", f"unknown model {model!r} (served: {', '.join(self._known)})")
                raise Unavailable(f"no inference backend can run {model!r} now")
            if previous is not None:
                METRICS.inference_fallbacks.labels(model, previous.backend.name, slot.backend.name).inc()
            tried.add(self._slots.index(slot))
            slot.in_flight += 1
            started = time.monotonic()
            try:
                result = await call(slot.backend)
            except BackendDown as exc:
                self._failed(slot, exc, fatal=True)
                previous = slot
                continue
            finally:
                slot.in_flight -= 1
            slot.latency_s += _EWMA * (time.monotonic() - started - slot.latency_s)
            slot.texts_served += size
            slot.breaker.success()
            METRICS.inference_requests.labels(model, slot.backend.name).inc(size)
            return result, slot.backend.name

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
        return await self._call(model, len(texts), lambda b: b.embed(model, texts, rank), tokens=False)

    async def embed_tokens(self, model: str, ids: list[list[int]]) -> tuple[np.ndarray, str]:
        return await self._call(model, len(ids), lambda b: b.embed_tokens(model, ids), tokens=True)

    def streaming_backend(self, model: str) -> InferenceBackend | None:
        """A healthy backend that streams `model` natively, if one has room (else the service chunks)."""
        for slot in self._slots:
            if slot.usable(model) and slot.backend.streams(model) and slot.in_flight < slot.backend.capacity:
                return slot.backend
        return None

    async def stream(
        self, backend: InferenceBackend, model: str, text: str, size: int, rank: int
    ) -> AsyncIterator[Chunk]:
        """`backend`'s native chunk stream, counted as load; a failure marks the backend failed."""
        slot = next(s for s in self._slots if s.backend is backend)
        slot.in_flight += 1
        try:
            async for chunk in backend.stream(model, text, size, rank):
                slot.texts_served += 1
                yield chunk
        except BackendDown as exc:
            self._failed(slot, exc, fatal=True)
            raise
        finally:
            slot.in_flight -= 1
