"""The task kinds the mesh knows: which payload each takes and the pipeline that runs it.

A kind is a pipeline of steps; each step runs in the worker pool it names. The
scheduler validates against this catalog, workers execute it — it is the one
definition both share.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    name: str
    pool: str


@dataclass(frozen=True)
class Kind:
    name: str
    # The TaskPayload oneof case this kind requires.
    payload_field: str
    steps: tuple[Step, ...]
    # Attempts per step before a retryable failure is dead-lettered.
    max_attempts: int = 3
    # A step running longer than this is abandoned and retried (0: no limit, e.g. a step that
    # waits on children or streams for as long as its input asks).
    step_timeout_s: float = 300.0


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("echo", "echo", (Step("echo", "ingestion"),)),
        # Inference can be briefly unavailable (restart, Triton failover): retry longer.
        Kind("embed", "embed", (Step("embed", "inference"),), max_attempts=5, step_timeout_s=120.0),
        Kind("stream", "stream", (Step("plan", "ingestion"), Step("emit", "post-processing")), step_timeout_s=0),
        Kind("fan_out", "fan_out", (Step("fan-out", "orchestration"),), step_timeout_s=0),
        # An effect outside the mesh: retried longer, always with the same idempotency key.
        Kind("webhook", "webhook", (Step("call", "post-processing"),), max_attempts=6, step_timeout_s=60.0),
        # ingest → embed → post-process, each step in its own pool.
        Kind(
            "doc_embed",
            "doc_embed",
            (Step("chunk", "ingestion"), Step("embed-chunks", "inference"), Step("aggregate", "post-processing")),
            max_attempts=5,
        ),
    )
}


def kind_of(name: str) -> Kind | None:
    return KINDS.get(name)
