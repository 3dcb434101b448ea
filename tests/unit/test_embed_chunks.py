"""The doc_embed embed-chunks step ends its inference stream however the step ends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mesh.fabric import ChainMoved
from mesh.v1 import inference_pb2, task_pb2
from services.worker._steps import StepContext, embed_chunks


class _Call:
    """A stand-in for grpc.aio's stream call: yields replies, records cancel()."""

    def __init__(self, replies: int) -> None:
        self.replies = replies
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator[inference_pb2.InferStreamResponse]:
        return self._replies()

    async def _replies(self) -> AsyncIterator[inference_pb2.InferStreamResponse]:
        for sequence in range(1, self.replies + 1):
            yield inference_pb2.InferStreamResponse(
                sequence=sequence, embedding=task_pb2.Embedding(values=[1.0, 0.0]), partial_confidence=0.1
            )

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class _Inference:
    def __init__(self, call: _Call) -> None:
        self.call = call
        self.waits_for_ready: list[bool] = []

    def InferStream(
        self, request: inference_pb2.InferStreamRequest, timeout: float, wait_for_ready: bool = False
    ) -> _Call:
        self.waits_for_ready.append(wait_for_ready)
        return self.call


def _context(call: _Call, emit_fails_at: int) -> StepContext:
    emitted = []

    async def emit(output: task_pb2.TaskOutput, confidence: float) -> None:
        emitted.append(output)
        if len(emitted) == emit_fails_at:
            raise ChainMoved("the task was cancelled")

    spec = task_pb2.TaskSpec(kind="doc_embed")
    spec.payload.doc_embed.text = " ".join(f"w{i}" for i in range(100))
    spec.payload.doc_embed.chunk_words = 10
    carry = [task_pb2.TaskOutput(text=" ".join(f"w{i}" for i in range(s, s + 10))) for s in range(0, 100, 10)]
    return StepContext(
        spec=spec,
        carry=carry,
        attempt=1,
        resume_from=0,
        emit_partial=emit,
        inference=_Inference(call),  # type: ignore[arg-type]
    )


async def test_a_chain_that_moves_mid_stream_cancels_the_inference_stream() -> None:
    """A cancel can reach the step as a fenced write (ChainMoved) before the cancel notice: the
    stream — and with it the request inside Triton — must end there, not run on unread."""
    call = _Call(replies=10)
    with pytest.raises(ChainMoved):
        await embed_chunks(_context(call, emit_fails_at=2))
    assert call.cancelled


async def test_a_finished_stream_is_closed_too() -> None:
    """A stream read to its end is closed as well; it was asked to wait for a restarting service."""
    call = _Call(replies=10)
    ctx = _context(call, emit_fails_at=0)
    outputs = await embed_chunks(ctx)
    assert len(outputs) == 10 and call.cancelled
    assert ctx.inference.waits_for_ready == [True]  # type: ignore[union-attr]
