"""`InferenceService` at the front door: the inference service's RPCs relayed for callers with a
credential, so a user's model is reached through Envoy like everything else; and the models'
signatures, so an `infer` task is checked against its model when it is submitted.

Each RPC needs its action — reading what is served (model.read), running a model (model.infer),
loading and unloading models (model.load, model.unload) — checked before anything is relayed. The inference service's
answer and its status (code, details, retry-after) pass through unchanged, so a refusal names
the same tensor and dimension it names inside the mesh; a stream the caller leaves is cancelled
upstream, which reaches Triton.

Loading and unloading a model are administrative actions, recorded in the audit (`_audit`):
each fails closed (UNAVAILABLE with a retry-after, nothing relayed) when the audit cannot record
that it starts; a refused attempt is recorded too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import grpc.aio

from mesh.errors import MeshError, NotFound
from mesh.oip import Signature, check_infer_input, check_infer_structure
from mesh.replicas import InferenceReplicas
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with, raise_from_rpc_error
from mesh.v1 import inference_pb2, inference_pb2_grpc, task_pb2
from services.gateway._audit import Auditor, surface_of
from services.gateway._guard import Guard

Reply = TypeVar("Reply")

READ, RUN = "model.read", "model.infer"
INFER_PREFIX = "spec.payload.infer."


class ModelSignatures:
    """Models' signatures as the inference service states them, kept `ttl_s` seconds. An `infer`
    task for a model no backend has or can load is NOT_FOUND naming it; one whose tensors do not
    fit its model is INVALID_ARGUMENT naming the tensor and dimension — at submit, instead of
    failing later in a worker. With the inference service unreachable the task is admitted (it is
    durable; admission checks its structure, and the worker checks it against the model)."""

    def __init__(self, upstream: InferenceReplicas, ttl_s: float = 2.0) -> None:
        self._upstream = upstream
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Signature]] = {}

    async def check(self, spec: task_pb2.TaskSpec) -> None:
        if spec.kind != "infer" or spec.payload.WhichOneof("body") != "infer":
            return  # (a payload of the wrong case is refused by admission, naming it)
        payload = spec.payload.infer
        signature = await self._signature(payload.model)
        if signature is not None:
            check_infer_structure(payload, INFER_PREFIX)  # first, so the model's check meets a sound payload
            check_infer_input(payload, signature, INFER_PREFIX)

    async def _signature(self, model: str) -> Signature | None:
        cached = self._cache.get(model)
        if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        try:
            meta = await self._upstream.ModelMetadata(inference_pb2.ModelMetadataRequest(name=model), timeout=5.0)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"{INFER_PREFIX}model: unknown model {model!r} (tidemesh model list)") from exc
            return None
        signature = Signature.from_proto(meta)
        self._cache[model] = (time.monotonic(), signature)
        return signature


class InferenceRelay(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, upstream: InferenceReplicas, guard: Guard, auditor: Auditor) -> None:
        self._upstream = upstream
        self._guard = guard
        self._auditor = auditor

    async def _allowed(self, context: Context, action: str) -> None:
        """The action checked; running a model spends from the credential's rate limit, like a
        submit (RESOURCE_EXHAUSTED with a retry-after past it)."""
        try:
            principal = await self._guard.from_grpc(context)
            self._guard.check(principal, action)
            if action == RUN:
                self._guard.spend(principal)
        except MeshError as exc:
            await abort_with(context, exc)

    async def _unary(self, context: Context, action: str, call: Callable[..., Awaitable[Reply]], request: Any) -> Reply:
        await self._allowed(context, action)
        try:
            return await call(request, timeout=context.time_remaining())
        except grpc.aio.AioRpcError as exc:
            await _pass_on(context, exc)

    async def _administer(
        self, context: Context, action: str, call: Callable[..., Awaitable[Reply]], request: Any
    ) -> Reply:
        """An administrative call, audited: its action checked, the start recorded, then relayed."""
        upstream_error: grpc.aio.AioRpcError | None = None
        try:
            principal = await self._guard.from_grpc(context)
            where = f" on {request.backend}" if request.backend else ""
            surface = surface_of(context.invocation_metadata())
            async with self._auditor.action(principal, action, f"model:{request.name}", surface) as act:
                self._guard.check(principal, action)
                await act.allowed(detail=f"{request.name}{where}")
                try:
                    reply = await call(request, timeout=context.time_remaining())
                except grpc.aio.AioRpcError as exc:
                    upstream_error = exc
                    raise_from_rpc_error(exc)  # recorded as the action's failure, then passed on as given
                act.done(f"{request.name}{where}")
        except MeshError as exc:
            if upstream_error is not None:
                await _pass_on(context, upstream_error)
            await abort_with(context, exc)
        return reply

    async def _stream(
        self, context: Context, action: str, call: Callable[..., Any], request: Any
    ) -> AsyncIterator[Any]:
        await self._allowed(context, action)
        upstream = call(request, timeout=context.time_remaining())
        try:
            async for reply in upstream:
                yield reply
        except grpc.aio.AioRpcError as exc:
            await _pass_on(context, exc)
        finally:
            upstream.cancel()  # the caller left (or the stream ended): nothing keeps running upstream

    async def ListModels(
        self, request: inference_pb2.ListModelsRequest, context: Context
    ) -> inference_pb2.ListModelsResponse:
        return await self._unary(context, READ, self._upstream.ListModels, request)

    async def ModelMetadata(
        self, request: inference_pb2.ModelMetadataRequest, context: Context
    ) -> inference_pb2.ModelMetadataResponse:
        return await self._unary(context, READ, self._upstream.ModelMetadata, request)

    async def ModelReady(
        self, request: inference_pb2.ModelReadyRequest, context: Context
    ) -> inference_pb2.ModelReadyResponse:
        return await self._unary(context, READ, self._upstream.ModelReady, request)

    async def Infer(self, request: inference_pb2.InferRequest, context: Context) -> inference_pb2.InferResponse:
        return await self._unary(context, RUN, self._upstream.Infer, request)

    async def ModelInfer(
        self, request: inference_pb2.ModelInferRequest, context: Context
    ) -> inference_pb2.ModelInferResponse:
        return await self._unary(context, RUN, self._upstream.ModelInfer, request)

    async def InferStream(
        self, request: inference_pb2.InferStreamRequest, context: Context
    ) -> AsyncIterator[inference_pb2.InferStreamResponse]:
        async for reply in self._stream(context, RUN, self._upstream.InferStream, request):
            yield reply

    async def ModelStreamInfer(
        self, request: inference_pb2.ModelStreamInferRequest, context: Context
    ) -> AsyncIterator[inference_pb2.ModelStreamInferResponse]:
        async for reply in self._stream(context, RUN, self._upstream.ModelStreamInfer, request):
            yield reply

    async def LoadModel(
        self, request: inference_pb2.LoadModelRequest, context: Context
    ) -> inference_pb2.LoadModelResponse:
        return await self._administer(context, "model.load", self._upstream.LoadModel, request)

    async def UnloadModel(
        self, request: inference_pb2.UnloadModelRequest, context: Context
    ) -> inference_pb2.UnloadModelResponse:
        return await self._administer(context, "model.unload", self._upstream.UnloadModel, request)


async def _pass_on(context: Context, exc: grpc.aio.AioRpcError) -> NoReturn:
    """The inference service's status as it gave it (its trailers carry retry-after)."""
    trailers = tuple((k, v) for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str))
    if trailers:
        context.set_trailing_metadata(trailers)
    await context.abort(exc.code(), exc.details() or "")
    raise AssertionError("unreachable: abort() raises")
