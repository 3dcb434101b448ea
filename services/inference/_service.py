"""InferenceService servicer: validation, batching, routing, streamed per-chunk results.

Two faces over one router: the Open Inference Protocol for any model a backend holds
(`ModelMetadata`, `ModelReady`, `ModelInfer`, `ModelStreamInfer`: tensors checked against the
model's signature in `mesh.oip`), and the typed embedding RPCs (`Infer`, `InferStream`) for the
models that take TEXT and give EMBEDDING, which every backend runs as the same tensor call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import numpy as np

from mesh.errors import Conflict, InvalidArgument, MeshError, NotFound, Unavailable
from mesh.oip import Signature, TensorData, TensorRequest, check_request, response_proto
from mesh.priority import urgency
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with
from mesh.tasks import split_words
from mesh.v1 import inference_pb2, inference_pb2_grpc, task_pb2
from services.inference._backend import BackendDown, Chunk, ModelSpec
from services.inference._batcher import Batchers
from services.inference._router import Catalogued, Router
from services.inference._tensors import token_rows

MAX_TEXTS = 256
MAX_TEXT_CHARS = 100_000


class Inference(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, router: Router, batchers: Batchers, instance: str, default_model: str) -> None:
        self._router = router
        self._batchers = batchers
        self._instance = instance
        self._default = default_model

    async def _model(self, name: str) -> ModelSpec:
        """The embedding model a request names (empty: the default), loaded first where none
        holds it but a backend could (an on-demand model: the FP16 variant, a user's)."""
        wanted = name or self._default
        await self._on_demand(wanted)
        model = self._router.models().get(wanted)
        if model is None:
            if (name or self._default) == self._default:  # configured, but no backend has come up with it yet
                raise Unavailable(f"no inference backend holds {self._default!r} yet")
            served = ", ".join(sorted(self._router.models())) or "none yet"
            raise InvalidArgument("model", f"unknown model {name!r} (served: {served})")
        if not model.embeds:
            raise InvalidArgument("model", f"model {model.name!r} is not an embedding model: call ModelInfer")
        return model

    async def _on_demand(self, name: str) -> None:
        """Load `name` where no backend has registered it but one could; a model whose config
        needs a device no backend that has it offers is FAILED_PRECONDITION, saying which."""
        if name and name not in self._router.models():
            if self._router.loadable(name):
                await self._router.load(name)
            elif reason := self._router.unfit(name):
                raise Conflict(reason)

    async def _known(self, name: str) -> Signature | None:
        """The signature of a model a backend has registered, or can load (it is loaded now to
        learn it); None if none has it. Unavailable while a backend that might is unreachable:
        that is a retry, not the caller's mistake."""
        await self._on_demand(name)
        model = self._router.models().get(name)
        if model is not None and model.signature is not None:
            return model.signature
        if name and (down := self._router.unreachable()):
            raise Unavailable(f"model {name!r} is not known to the backends that answer; down: {', '.join(down)}")
        return None

    async def _signature(self, name: str, field: str) -> Signature:
        """The signature of the model a request names; an unknown name is `field`'s fault."""
        signature = await self._known(name)
        if signature is None:
            served = ", ".join(sorted(m for m, s in self._router.models().items() if s.signature)) or "none yet"
            if not name:
                raise InvalidArgument(field, f"is required (models: {served})")
            raise InvalidArgument(field, f"unknown model {name!r} (models: {served})")
        return signature

    async def ModelMetadata(
        self, request: inference_pb2.ModelMetadataRequest, context: Context
    ) -> inference_pb2.ModelMetadataResponse:
        try:
            signature = await self._known(request.name)
            if signature is None:
                raise NotFound(f"no backend has registered a model {request.name!r}")
            if request.version and signature.versions and request.version not in signature.versions:
                raise NotFound(f"model {request.name!r} has no version {request.version!r}")
        except MeshError as exc:
            await abort_with(context, exc)
        return signature.to_proto(self._router.holders(request.name))

    async def ModelReady(
        self, request: inference_pb2.ModelReadyRequest, context: Context
    ) -> inference_pb2.ModelReadyResponse:
        return inference_pb2.ModelReadyResponse(ready=bool(self._router.holders(request.name)))

    async def _checked(self, request: inference_pb2.ModelInferRequest) -> tuple[Signature, TensorRequest]:
        signature = await self._signature(request.model_name, "model_name")
        return signature, check_request(request, signature)

    async def ModelInfer(
        self, request: inference_pb2.ModelInferRequest, context: Context
    ) -> inference_pb2.ModelInferResponse:
        try:
            signature, checked = await self._checked(request)
            if signature.decoupled:
                message = f"model {signature.name!r} is decoupled (it may answer many times): use ModelStreamInfer"
                raise InvalidArgument("model_name", message)
            outputs, backend = await self._router.infer(signature.name, checked, urgency(request.priority_class))
        except MeshError as exc:
            await abort_with(context, exc)
        return self._response(request, checked, outputs, backend)

    async def ModelStreamInfer(
        self, request: inference_pb2.ModelStreamInferRequest, context: Context
    ) -> AsyncIterator[inference_pb2.ModelStreamInferResponse]:
        inner = request.request
        try:
            signature, checked = await self._checked(inner)
        except MeshError as exc:
            await abort_with(context, exc)
        rank = urgency(inner.priority_class)
        try:
            if not signature.decoupled:
                outputs, backend = await self._router.infer(signature.name, checked, rank)
                reply = self._response(inner, checked, outputs, backend)
                yield inference_pb2.ModelStreamInferResponse(infer_response=reply, final=True)
                return
            backend = ""
            async for outputs, backend in self._router.stream_infer(signature.name, checked, rank):
                reply = self._response(inner, checked, outputs, backend)
                yield inference_pb2.ModelStreamInferResponse(infer_response=reply)
        except MeshError as exc:
            await abort_with(context, exc)
        end = inference_pb2.ModelInferResponse(model_name=signature.name, id=inner.id, backend=backend)
        yield inference_pb2.ModelStreamInferResponse(infer_response=end, final=True)

    @staticmethod
    def _response(
        request: inference_pb2.ModelInferRequest, checked: TensorRequest, outputs: list[TensorData], backend: str
    ) -> inference_pb2.ModelInferResponse:
        if checked.outputs:  # the outputs asked for, in the order asked (a backend may give more)
            by_name = {t.name: t for t in outputs}
            outputs = [by_name[name] for name in checked.outputs if name in by_name]
        return response_proto(
            request.model_name,
            request.model_version,
            request.id,
            outputs,
            raw=bool(request.raw_input_contents),
            backend=backend,
        )

    async def Infer(self, request: inference_pb2.InferRequest, context: Context) -> inference_pb2.InferResponse:
        try:
            model = await self._model(request.model)
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
            model = await self._model(request.model)
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
        return inference_pb2.ListModelsResponse(
            models=[_info(entry) for entry in self._router.catalogue()],
            backends=self._router.snapshot(self._instance),
        )

    async def LoadModel(
        self, request: inference_pb2.LoadModelRequest, context: Context
    ) -> inference_pb2.LoadModelResponse:
        try:
            if not request.name:
                raise InvalidArgument("name", "is required")
            backend, unloaded = await self._router.load(request.name, request.backend)
        except MeshError as exc:
            await abort_with(context, exc)
        entry = next(e for e in self._router.catalogue() if e.backend == backend and e.entry.name == request.name)
        return inference_pb2.LoadModelResponse(model=_info(entry), unloaded=unloaded)

    async def UnloadModel(
        self, request: inference_pb2.UnloadModelRequest, context: Context
    ) -> inference_pb2.UnloadModelResponse:
        try:
            if not request.name:
                raise InvalidArgument("name", "is required")
            backends = await self._router.unload(request.name, request.backend)
        except MeshError as exc:
            await abort_with(context, exc)
        return inference_pb2.UnloadModelResponse(backends=backends)


def _info(model: Catalogued) -> inference_pb2.ModelInfo:
    info = inference_pb2.ModelInfo(
        name=model.entry.name,
        backend=model.backend,
        state=model.entry.state,
        reason=model.entry.reason,
        ready=model.usable,
        memory_bytes=model.memory_bytes,
        in_flight=model.in_flight,
    )
    if model.spec is not None:
        info.dimensions = model.spec.dimensions
        info.max_sequence_length = model.spec.max_sequence_length
        info.decoupled = bool(model.spec.signature and model.spec.signature.decoupled)
        info.family, info.min_cosine, info.precision = model.spec.family, model.spec.min_cosine, model.spec.precision
        info.device_kind, info.instances = model.spec.device_kind, model.spec.instances
    if model.last_used is not None:
        info.last_used.FromNanoseconds(int(model.last_used * 1e9))
    return info


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
