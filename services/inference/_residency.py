"""Which models a backend keeps loaded: a memory budget, least recently used out first, never
a model with requests in flight.

Pure: the router passes what a backend holds now and what it wants loaded, and gets back what
to unload first (or ResourceExhausted, when even every idle model gone would not make room). A model
counts against the budget by the memory it declares (its Triton config's ``memory_mb``
parameter) or the backend's default estimate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mesh.errors import Conflict, ResourceExhausted

MIB = 1024 * 1024


@dataclass(frozen=True)
class Resident:
    name: str
    memory_bytes: int
    last_used: float  # monotonic seconds; 0: loaded but never used
    in_flight: int = 0
    draining: bool = False  # being unloaded: neither counted as room nor unloaded twice


def _no_room(model: str, needed: int, budget: int, busy: Iterable[str]) -> ResourceExhausted:
    """The budget is full of models in use: retry once some finish."""
    names = ", ".join(repr(n) for n in sorted(busy)) or "none"
    return ResourceExhausted(
        f"model {model!r} needs {needed // MIB} MiB; the backend's budget of {budget // MIB} MiB "
        f"is held by models with requests in flight ({names})",
        retry_after_s=1.0,
    )


def evictions(budget_bytes: int, resident: Iterable[Resident], model: str, needed_bytes: int) -> list[str]:
    """The idle models to unload, least recently used first, so `model` fits in `budget_bytes`
    (0: no budget). Models being drained still count as used until they are gone."""
    if budget_bytes <= 0:
        return []
    held = [r for r in resident if r.name != model]
    used = sum(r.memory_bytes for r in held)
    if used + needed_bytes <= budget_bytes:
        return []
    idle = sorted((r for r in held if r.in_flight == 0 and not r.draining), key=lambda r: (r.last_used, r.name))
    chosen = []
    for candidate in idle:
        chosen.append(candidate.name)
        used -= candidate.memory_bytes
        if used + needed_bytes <= budget_bytes:
            return chosen
    if needed_bytes > budget_bytes:
        raise Conflict(
            f"model {model!r} needs {needed_bytes // MIB} MiB, over the backend's whole budget of "
            f"{budget_bytes // MIB} MiB"
        )
    raise _no_room(model, needed_bytes, budget_bytes, [r.name for r in held if r.in_flight or r.draining])
