"""Step implementations, keyed by step name (see `mesh.tasks` for the pipelines)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import grpc.aio

from mesh.v1 import inference_pb2, inference_pb2_grpc, task_pb2


class StepFailed(Exception):
    """A step could not produce its output. `retryable` decides between retry and failure."""

    def __init__(self, error_class: str, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.retryable = retryable


@dataclass
class StepContext:
    spec: task_pb2.TaskSpec
    carry: list[task_pb2.TaskOutput]
    attempt: int
    # Partial outputs of this step already in the task's stream (a redelivered step resumes there).
    resume_from: int
    emit_partial: Callable[[task_pb2.TaskOutput, float], Awaitable[None]]
    inference: inference_pb2_grpc.InferenceServiceStub | None


Step = Callable[[StepContext], Awaitable[list[task_pb2.TaskOutput]]]


async def echo(ctx: StepContext) -> list[task_pb2.TaskOutput]:
    return [task_pb2.TaskOutput(text=ctx.spec.payload.echo.text)]


async def embed(ctx: StepContext) -> list[task_pb2.TaskOutput]:
    if ctx.inference is None:
        raise StepFailed("dependency_down", "this worker has no inference endpoint", retryable=True)
    payload = ctx.spec.payload.embed
    try:
        response = await ctx.inference.Infer(
            inference_pb2.InferRequest(
                model=payload.model, texts=[payload.text], priority_class=ctx.spec.priority_class
            ),
            timeout=60.0,
        )
    except grpc.aio.AioRpcError as exc:
        fatal = exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        error_class = "invalid_input" if fatal else "dependency_down"
        raise StepFailed(error_class, f"inference: {exc.code().name}: {exc.details()}", not fatal) from exc
    return [task_pb2.TaskOutput(embedding=response.embeddings[0])]


async def plan(ctx: StepContext) -> list[task_pb2.TaskOutput]:
    """Split the text into `chunks` pieces of nearly equal word count."""
    payload = ctx.spec.payload.stream
    words = payload.text.split()
    count = payload.chunks
    pieces = []
    for index in range(count):
        start, end = index * len(words) // count, (index + 1) * len(words) // count
        pieces.append(" ".join(words[start:end]) or f"chunk {index + 1}")
    return [task_pb2.TaskOutput(text=piece) for piece in pieces]


async def emit(ctx: StepContext) -> list[task_pb2.TaskOutput]:
    """Process each planned piece, streaming one partial result per piece."""
    delay_s = ctx.spec.payload.stream.chunk_delay_ms / 1000
    total = len(ctx.carry)
    words = 0
    for index, piece in enumerate(ctx.carry):
        words += len(piece.text.split())
        if index < ctx.resume_from:
            continue  # already streamed by an earlier attempt
        if delay_s:
            await asyncio.sleep(delay_s)
        await ctx.emit_partial(task_pb2.TaskOutput(text=piece.text), (index + 1) / total)
    return [task_pb2.TaskOutput(text=f"{total} chunks, {words} words")]


STEPS: dict[str, Step] = {"echo": echo, "embed": embed, "plan": plan, "emit": emit}
