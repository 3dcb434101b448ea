"""The kinds the mesh ships with, declared through the same registry a user kind uses."""

from __future__ import annotations

from mesh.tasks._registry import KINDS, StepSpec, TaskKind, builtin_kind
from mesh.v1 import task_pb2

BUILTIN_KINDS: tuple[TaskKind, ...] = (
    builtin_kind("echo", task_pb2.EchoInput, (StepSpec("echo", "ingestion"),), description="returns its text"),
    # Inference can be briefly unavailable (restart, Triton failover): retry longer.
    builtin_kind(
        "embed",
        task_pb2.EmbedInput,
        (StepSpec("embed", "inference"),),
        max_attempts=5,
        step_timeout_s=120.0,
        description="one text embedded by the inference service",
    ),
    builtin_kind(
        "stream",
        task_pb2.StreamInput,
        (StepSpec("plan", "ingestion"), StepSpec("emit", "post-processing")),
        step_timeout_s=0,
        description="plans chunks, streams one partial result per chunk",
    ),
    builtin_kind(
        "fan_out",
        task_pb2.FanOutInput,
        (StepSpec("fan-out", "orchestration"),),
        step_timeout_s=0,
        description="spawns one child per text and aggregates their results",
    ),
    # An effect outside the mesh: retried longer, always with the same idempotency key.
    builtin_kind(
        "webhook",
        task_pb2.WebhookInput,
        (StepSpec("call", "post-processing"),),
        max_attempts=6,
        step_timeout_s=60.0,
        description="POSTs a body to an allowed URL, idempotently",
    ),
    # ingest → embed → post-process, each step in its own pool.
    builtin_kind(
        "doc_embed",
        task_pb2.DocEmbedInput,
        (
            StepSpec("chunk", "ingestion"),
            StepSpec("embed-chunks", "inference"),
            StepSpec("aggregate", "post-processing"),
        ),
        max_attempts=5,
        description="chunks a document, embeds the chunks, aggregates one document vector",
    ),
    # Any model a backend holds or can load (tidemesh model list), on tensors; a decoupled
    # model's responses stream as partial outputs. Loading on demand can take a while.
    builtin_kind(
        "infer",
        task_pb2.InferInput,
        (StepSpec("infer", "inference"),),
        max_attempts=5,
        step_timeout_s=300.0,
        description="runs a model on tensors (the Open Inference Protocol); streams a decoupled model",
    ),
)

for _kind in BUILTIN_KINDS:
    KINDS.register(_kind)
