"""InferenceService servicer: validation, batching, streamed per-chunk results."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc.aio
import numpy as np

from mesh.errors import InvalidArgument, MeshError
from mesh.rpc import abort_with
from mesh.telemetry import METRICS
from mesh.v1 import inference_pb2, inference_pb2_grpc, task_pb2
from services.inference._backend import InferenceBackend, ModelSpec
from services.inference._batcher import Batcher

Context = grpc.aio.ServicerContext  # type: ignore[type-arg]

MAX_TEXTS = 256
MAX_TEXT_CHARS = 100_000
DEFAULT_CHUNK_WORDS = 128


class Inference(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, backend: InferenceBackend, batchers: dict[str, Batcher]) -> None:
        self._backend = backend
        self._models = {m.name: m for m in backend.models()}
        self._default = next(iter(self._models))
        self._batchers = batchers

    def _model(self, name: str) -> ModelSpec:
        model = self._models.get(name or self._default)
        if model is None:
            raise InvalidArgument("model", f"unknown model {name!r} (served: {', '.join(sorted(self._models))})")
        return model

    async def Infer(self, request: inference_pb2.InferRequest, context: Context) -> inference_pb2.InferResponse:
        try:
            model = self._model(request.model)
            if not request.texts:
                raise InvalidArgument("texts", "at least one text is required")
            if len(request.texts) > MAX_TEXTS:
                raise InvalidArgument("texts", f"at most {MAX_TEXTS} texts per request")
            for index, text in enumerate(request.texts):
                _check_text(f"texts[{index}]", text)
            vectors = await self._batchers[model.name].embed(list(request.texts), _rank(request.priority_class))
        except MeshError as exc:
            await abort_with(context, exc)
        METRICS.inference_requests.labels(model.name, self._backend.name).inc(len(request.texts))
        return inference_pb2.InferResponse(
            model=model.name,
            backend=self._backend.name,
            embeddings=[_embedding(model.name, v) for v in vectors],
        )

    async def InferStream(
        self, request: inference_pb2.InferStreamRequest, context: Context
    ) -> AsyncIterator[inference_pb2.InferStreamResponse]:
        try:
            model = self._model(request.model)
            _check_text("text", request.text)
        except MeshError as exc:
            await abort_with(context, exc)
        words = request.text.split()
        size = request.chunk_words or DEFAULT_CHUNK_WORDS
        chunks = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        batcher = self._batchers[model.name]
        total_words = len(words)
        covered = 0
        weighted = np.zeros(model.dimensions, dtype=np.float32)
        for sequence, chunk in enumerate(chunks, start=1):
            vector = (await batcher.embed([chunk], _rank(request.priority_class)))[0]
            chunk_words = len(chunk.split())
            covered += chunk_words
            weighted += vector * chunk_words
            yield inference_pb2.InferStreamResponse(
                sequence=sequence,
                chunk_text=chunk,
                embedding=_embedding(model.name, vector),
                partial_confidence=covered / total_words,
            )
        # The document vector: word-weighted mean of the chunk vectors, re-normalised.
        norm = float(np.linalg.norm(weighted)) or 1.0
        yield inference_pb2.InferStreamResponse(
            sequence=len(chunks) + 1,
            embedding=_embedding(model.name, weighted / norm),
            partial_confidence=1.0,
            final=True,
        )

    async def ListModels(
        self, request: inference_pb2.ListModelsRequest, context: Context
    ) -> inference_pb2.ListModelsResponse:
        return inference_pb2.ListModelsResponse(
            models=[
                inference_pb2.ModelInfo(
                    name=m.name,
                    dimensions=m.dimensions,
                    max_sequence_length=m.max_sequence_length,
                    backend=self._backend.name,
                    ready=True,
                )
                for m in self._models.values()
            ]
        )


def _check_text(field: str, text: str) -> None:
    if not text.strip():
        raise InvalidArgument(field, "is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidArgument(field, f"is {len(text)} characters, over the {MAX_TEXT_CHARS}-character limit")


def _rank(priority_class: int) -> int:
    return priority_class or task_pb2.PRIORITY_CLASS_STANDARD


def _embedding(model: str, vector: np.ndarray) -> task_pb2.Embedding:
    return task_pb2.Embedding(model=model, values=vector.tolist())
