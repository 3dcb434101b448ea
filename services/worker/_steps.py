"""The built-in kinds' step handlers, keyed by step name (the kinds are declared in `mesh.tasks.builtin`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import grpc.aio
import numpy as np

from mesh.tasks import split_words
from mesh.v1 import inference_pb2, task_pb2, tensor_pb2

if TYPE_CHECKING:
    from services.worker._children import ChildTasks
    from services.worker._webhook import WebhookClient


class InferenceClient(Protocol):
    """What steps call: the generated stub of one inference service, or `InferenceReplicas`."""

    @property
    def Infer(self) -> Any: ...

    @property
    def InferStream(self) -> Any: ...

    @property
    def ModelStreamInfer(self) -> Any: ...


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
    inference: InferenceClient | None
    # Orchestration: spawning and following child tasks, and recording their ids in the stream.
    children: ChildTasks | None = None
    emit_children: Callable[[list[str]], Awaitable[None]] | None = None
    webhooks: WebhookClient | None = None
    traceparent: str = ""
    # The latest checkpoint an earlier attempt of this step stored, and how to store one.
    checkpoint: bytes | None = None
    save_checkpoint: Callable[[bytes], Awaitable[None]] | None = None
    worker_id: str = ""


StepHandler = Callable[[StepContext], Awaitable[list[task_pb2.TaskOutput]]]


async def echo(ctx: StepContext) -> list[task_pb2.TaskOutput]:
    return [task_pb2.TaskOutput(text=ctx.spec.payload.echo.text)]


def _inference(ctx: StepContext) -> InferenceClient:
    if ctx.inference is None:
        raise StepFailed("dependency_down", "this worker has no inference endpoint", retryable=True)
    return ctx.inference


def _inference_failed(exc: grpc.aio.AioRpcError) -> StepFailed:
    """The inference service's refusal as a step failure: bad input is final, and so is the
    model's own failure on it (UNKNOWN: replay it from the dead letters once the model is fixed);
    the rest (a backend down, overload) retryable."""
    message = f"inference: {exc.code().name}: {exc.details()}"
    if exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
        return StepFailed("invalid_input", message, retryable=False)
    if exc.code() == grpc.StatusCode.UNKNOWN:
        return StepFailed("bug", message, retryable=False)
    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return StepFailed("resource_exhausted", message, retryable=True)
    return StepFailed("dependency_down", message, retryable=True)


async def _infer(ctx: StepContext, model: str, texts: list[str]) -> list[task_pb2.Embedding]:
    """Embeddings of `texts` from the inference service; its refusals become step failures."""
    try:
        response = await _inference(ctx).Infer(
            inference_pb2.InferRequest(model=model, texts=texts, priority_class=ctx.spec.priority_class),
            timeout=60.0,
            # A restarting inference service (kill -9, a renewal, an upgrade) is waited for within
            # the deadline instead of failing the attempt at once: three quick UNAVAILABLEs would
            # dead-letter the task while the service is still loading its model.
            wait_for_ready=True,
        )
    except grpc.aio.AioRpcError as exc:
        raise _inference_failed(exc) from exc
    return list(response.embeddings)


async def embed(ctx: StepContext) -> list[task_pb2.TaskOutput]:
    payload = ctx.spec.payload.embed
    [vector] = await _infer(ctx, payload.model, [payload.text])
    return [task_pb2.TaskOutput(embedding=vector)]


async def infer(ctx: StepContext) -> list[task_pb2.TaskOutput]:
    """Any model on the task's tensors, through the protocol's stream call: a decoupled model's
    every response is a partial output (a redelivered attempt skips those already stored) and
    the last one the output; any other model answers once. The priority class goes with the
    request into Triton's queue; cancelling the task cancels the call, and Triton's request."""
    payload = ctx.spec.payload.infer
    request = inference_pb2.ModelInferRequest(
        model_name=payload.model,
        model_version=payload.model_version,
        id=ctx.spec.task_id,
        inputs=payload.inputs,
        outputs=[tensor_pb2.InferRequestedOutputTensor(name=name) for name in payload.outputs],
        parameters=payload.parameters,
        raw_input_contents=payload.raw_input_contents,
        priority_class=ctx.spec.priority_class,
    )
    call = _inference(ctx).ModelStreamInfer(
        inference_pb2.ModelStreamInferRequest(request=request), timeout=300.0, wait_for_ready=True
    )
    last: task_pb2.TaskOutput | None = None
    responses = 0
    try:
        async for message in call:
            reply = message.infer_response
            if reply.outputs:
                last = task_pb2.TaskOutput(tensors=_tensors(payload.model, reply))
            if message.final:
                break
            responses += 1
            if last is not None and responses > ctx.resume_from:
                await ctx.emit_partial(last, 0.0)
    except grpc.aio.AioRpcError as exc:
        raise _inference_failed(exc) from exc
    finally:
        call.cancel()
    if last is None:
        raise StepFailed("bug", f"model {payload.model!r} sent no outputs", retryable=False)
    return [last]


def _tensors(model: str, reply: inference_pb2.ModelInferResponse) -> task_pb2.TensorOutput:
    return task_pb2.TensorOutput(
        model=model, outputs=reply.outputs, raw_output_contents=reply.raw_output_contents, backend=reply.backend
    )


async def chunk(ctx: StepContext) -> list[task_pb2.TaskOutput]:
    """Split the document into chunks of at most `chunk_words` words."""
    document = ctx.spec.payload.doc_embed
    return [task_pb2.TaskOutput(text=piece) for piece in split_words(document.text, document.chunk_words)]


async def embed_chunks(ctx: StepContext) -> list[task_pb2.TaskOutput]:
    """Embed the chunks through the inference service's chunk stream (Triton streams it natively),
    passing on one partial result — the chunk's vector — per chunk as it arrives. Cancelling the
    task cancels the stream, and with it the request inside Triton."""
    document = ctx.spec.payload.doc_embed
    texts = [piece.text for piece in ctx.carry]
    # The chunk step cut the text by the same rule, so the stream re-cuts it into exactly these chunks.
    request = inference_pb2.InferStreamRequest(
        model=document.model,
        text=" ".join(texts),
        chunk_words=document.chunk_words,
        priority_class=ctx.spec.priority_class,
    )
    outputs: list[task_pb2.TaskOutput] = []
    call = _inference(ctx).InferStream(request, timeout=600.0, wait_for_ready=True)  # see `_infer`
    try:
        async for reply in call:
            if reply.final:
                break
            outputs.append(task_pb2.TaskOutput(embedding=reply.embedding))
            if len(outputs) > ctx.resume_from:  # an earlier attempt streamed the ones before
                await ctx.emit_partial(outputs[-1], reply.partial_confidence)
    except grpc.aio.AioRpcError as exc:
        raise _inference_failed(exc) from exc
    finally:
        # However the step ends — done, failed, or its chain moved on (a cancel can surface as a
        # fenced write before the cancel notice arrives) — the stream, and Triton's request, end too.
        call.cancel()
    if len(outputs) != len(texts):
        raise StepFailed("internal", f"inference streamed {len(outputs)} chunks for {len(texts)}", retryable=True)
    return outputs


async def aggregate(ctx: StepContext) -> list[task_pb2.TaskOutput]:
    """The document vector: the normalized mean of the chunk vectors."""
    return [task_pb2.TaskOutput(embedding=mean_embedding([o.embedding for o in ctx.carry]))]


def mean_embedding(vectors: list[task_pb2.Embedding]) -> task_pb2.Embedding:
    values = np.array([list(v.values) for v in vectors], dtype=np.float32)
    mean = values.mean(axis=0)
    mean /= float(np.linalg.norm(mean)) or 1.0
    return task_pb2.Embedding(model=vectors[0].model, values=mean.tolist())


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


async def fan_out(ctx: StepContext) -> list[task_pb2.TaskOutput]:
    """Spawn one child per text, stream each child's result as it lands, then aggregate (fan-in)."""
    if ctx.children is None or ctx.emit_children is None:
        raise StepFailed("dependency_down", "this worker cannot run orchestration steps", retryable=True)
    payload = ctx.spec.payload.fan_out
    specs = [
        task_pb2.TaskSpec(kind=payload.child_kind, payload=_child_payload(payload.child_kind, text))
        for text in payload.texts
    ]
    child_ids = await ctx.children.spawn(ctx.spec, specs)
    await ctx.emit_children(child_ids)
    await ctx.children.boost(ctx.spec, child_ids)
    outputs: dict[str, task_pb2.TaskOutput] = {}
    async for event in ctx.children.finals(child_ids):
        if event.state != task_pb2.TASK_STATE_SUCCEEDED:
            state = task_pb2.TaskState.Name(event.state)
            raise StepFailed("child_failed", f"child {event.task_id} ended {state}: {event.error.message}", False)
        outputs[event.task_id] = event.output
        if len(outputs) > ctx.resume_from:
            await ctx.emit_partial(event.output, len(outputs) / len(child_ids))
    ordered = [outputs[child_id] for child_id in child_ids]
    if payload.child_kind == "embed":
        return [task_pb2.TaskOutput(embedding=mean_embedding([o.embedding for o in ordered]))]
    return [task_pb2.TaskOutput(text="\n".join(o.text for o in ordered))]


def _child_payload(kind: str, text: str) -> task_pb2.TaskPayload:
    if kind == "embed":
        return task_pb2.TaskPayload(embed=task_pb2.EmbedInput(text=text))
    return task_pb2.TaskPayload(echo=task_pb2.EchoInput(text=text))


async def call(ctx: StepContext) -> list[task_pb2.TaskOutput]:
    """POST the body; the idempotency key is the same on every attempt of this task's step."""
    if ctx.webhooks is None:
        raise StepFailed("dependency_down", "this worker does not make webhook calls", retryable=True)
    payload = ctx.spec.payload.webhook
    text = await ctx.webhooks.post(
        payload.url, payload.body, f"{ctx.spec.task_id}:call", ctx.spec.task_id, ctx.traceparent
    )
    return [task_pb2.TaskOutput(text=text)]


BUILTIN_HANDLERS: dict[str, StepHandler] = {
    "echo": echo,
    "embed": embed,
    "plan": plan,
    "emit": emit,
    "fan-out": fan_out,
    "call": call,
    "chunk": chunk,
    "embed-chunks": embed_chunks,
    "aggregate": aggregate,
    "infer": infer,
}
