"""InferenceService servicer: validation, batching, routing, streamed per-chunk results."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import numpy as np

from mesh.errors import InvalidArgument, MeshError, Unavailable
from mesh.priority import urgency
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with
from mesh.tasks import split_words
from mesh.v1 import inference_pb2, inference_pb2_grpc, task_pb2
from services.inference._backend import BackendDown, Chunk, ModelSpec
from services.inference._batcher import Batchers
from services.inference._router import Router
from services.inference._tensors import token_rows

MAX_TEXTS = 256
MAX_TEXT_CHARS = 100_000


class Inference(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, router: Router, batchers: Batchers, instance: str, default_model: str) -> None:
        self._router = router
        self._batchers = batchers
        self._instance = instance
        self._default = default_model

    def _model(self, name: str) -> ModelSpec:
        model = self._router.models().get(name or self._default)
        if model is None:
            if (name or self._default) == self._default:  # configured, but no backend has come up with it yet
                raise Unavailable(f"no inference backend holds {self._default!r} yet")
            served = ", ".join(sorted(self._router.models())) or "none yet"
            raise InvalidArgument("model", f"unknown model {name!r} (served: {served})")
        return model

    async def Infer(self, request: inference_pb2.InferRequest, context: Context) -> inference_pb2.InferResponse:
        try:
            model = self._model(request.model)
            if request.HasField("input_ids"):
                if request.texts:
                    raise InvalidArgument("texts", "send either texts or input_ids, not both")
                mask = request.attention_mask if request.HasField("attention_mask") else None
                rows = token_rows(request.input_ids, mask, model.max_sequence_length)
                vectors, backend = await self._router.embed_tokens(model.name, rows)
            else:
                _check_texts(request.texts)
                vectors, backend = await (await self._batchers.get(model.name)).embed(
                    list(request.texts), urgency(request.priority_class)
                )
        except MeshError as exc:
            await abort_with(context, exc)
        return inference_pb2.InferResponse(
            model=model.name, backend=backend, embeddings=[_embedding(model.name, v) for v in vectors]
        )

    async def InferStream(
        self, request: inference_pb2.InferStreamRequest, context: Context
    ) -> AsyncIterator[inference_pb2.InferStreamResponse]:
        try:
            model = self._model(request.model)
            _check_text("text", request.text)
        except MeshError as exc:
            await abort_with(context, exc)
        chunks = split_words(request.text, request.chunk_words)
        total_words = sum(len(c.split()) for c in chunks)
        weighted = np.zeros(model.dimensions, dtype=np.float32)
        try:
            async for chunk in self._chunks(model, request, chunks, total_words):
                weighted += chunk.vector * len(chunk.text.split())
                yield inference_pb2.InferStreamResponse(
                    sequence=chunk.sequence,
                    chunk_text=chunk.text,
                    embedding=_embedding(model.name, chunk.vector),
                    partial_confidence=chunk.confidence,
                )
        except MeshError as exc:
            await abort_with(context, exc)
        # The document vector: word-weighted mean of the chunk vectors, re-normalised.
        norm = float(np.linalg.norm(weighted)) or 1.0
        yield inference_pb2.InferStreamResponse(
            sequence=len(chunks) + 1,
            embedding=_embedding(model.name, weighted / norm),
            partial_confidence=1.0,
            final=True,
        )

    async def _chunks(
        self, model: ModelSpec, request: inference_pb2.InferStreamRequest, chunks: list[str], total_words: int
    ) -> AsyncIterator[Chunk]:
        """Chunks from a backend that streams the model natively; where it fails part-way (or there is
        none), the rest come from the batcher, starting after the last chunk delivered."""
        rank = urgency(request.priority_class)
        done = 0
        native = self._router.streaming_backend(model.name)
        if native is not None:
            try:
                async for chunk in self._router.stream(native, model.name, request.text, request.chunk_words, rank):
                    done = chunk.sequence
                    yield chunk
            except BackendDown:
                pass  # fall through: the batcher finishes the document
        covered = sum(len(c.split()) for c in chunks[:done])
        batcher = await self._batchers.get(model.name)
        for sequence, text in enumerate(chunks[done:], start=done + 1):
            vectors, _ = await batcher.embed([text], rank)
            covered += len(text.split())
            yield Chunk(sequence, text, vectors[0], covered / total_words)

    async def ListModels(
        self, request: inference_pb2.ListModelsRequest, context: Context
    ) -> inference_pb2.ListModelsResponse:
        backends = self._router.snapshot(self._instance)
        models = self._router.models()
        return inference_pb2.ListModelsResponse(
            models=[
                inference_pb2.ModelInfo(
                    name=name,
                    dimensions=models[name].dimensions,
                    max_sequence_length=models[name].max_sequence_length,
                    backend=b.backend,
                    ready=b.circuit != "open",
                )
                for b in backends
                for name in b.models
            ],
            backends=backends,
        )


def _check_texts(texts: Sequence[str]) -> None:
    if not texts:
        raise InvalidArgument("texts", "at least one text (or input_ids) is required")
    if len(texts) > MAX_TEXTS:
        raise InvalidArgument("texts", f"at most {MAX_TEXTS} texts per request")
    for index, text in enumerate(texts):
        _check_text(f"texts[{index}]", text)


def _check_text(field: str, text: str) -> None:
    if not text.strip():
        raise InvalidArgument(field, "is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidArgument(field, f"is {len(text)} characters, over the {MAX_TEXT_CHARS}-character limit")


def _embedding(model: str, vector: np.ndarray) -> task_pb2.Embedding:
    return task_pb2.Embedding(model=model, values=vector.tolist())
