"""The Triton backend: KServe v2 over gRPC through `tritonclient.grpc` (the aio client for
control, its generated stub for tensors).

Model residency comes from Triton's repository index, each model's signature from its metadata
and config (re-read when it is loaded again). Checked tensors go to Triton as they came — raw
contents, no numpy on the way — and embeddings are the same call on TEXT and EMBEDDING. A model
named ``<model>-chunks`` that is decoupled serves the native chunk stream of ``<model>``. Failures to
reach Triton become `BackendDown` (the router falls back); Triton's own INVALID_ARGUMENT
becomes ours, naming the field. Cancelling an embed or a stream cancels the gRPC call, and
Triton sees the request cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc.aio
import numpy as np
import tritonclient.grpc.aio as triton
from tritonclient.grpc import InferInput, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from mesh.errors import InvalidArgument, NotFound
from mesh.model_repository import ModelNeeds, loaded_needs, repository_needs
from mesh.oip import Signature, TensorData, TensorRequest, TensorSpec, add_raw_inputs, set_parameters
from mesh.security import Transport
from mesh.tasks import split_words
from mesh.telemetry import client_interceptors
from mesh.v1 import status_pb2
from services.inference._backend import EMBEDDING, TEXT, BackendDown, Chunk, Loadable, ModelFailed, ModelSpec

CHUNK_SUFFIX = "-chunks"
_FINAL = "triton_final_response"
_EMPTY_FINAL = "triton_enable_empty_final_response"
_LOAD_TIMEOUT_S = 120.0
_UNLOAD_POLL_S = 0.05
_CHANNEL = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    # A restarted Triton is found within a second, not after gRPC's default backoff (up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def _failure(exc: InferenceServerException, what: str, field: str = "texts") -> Exception:
    status = str(exc.status() or "")
    if "INVALID_ARGUMENT" in status:
        return InvalidArgument(field, f"Triton refused the input: {exc.message()}")
    return BackendDown(f"triton {what}: {status or 'error'}: {exc.message()}")


_DOWN = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def _rpc_failure(exc: grpc.aio.AioRpcError, what: str, model: str) -> Exception:
    """Triton's refusal of the input is ours to report; Triton unreachable, or no longer holding
    the model, is BackendDown (another backend may take it); the model's own failure is reported
    as it is, and does not count against the backend."""
    code = exc.code()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument("inputs", f"Triton refused the input: {exc.details()}")
    if code in _DOWN:
        return BackendDown(f"triton {what}: {code.name}: {exc.details()}")
    return ModelFailed(f"model {model!r} failed: {code.name}: {exc.details()}")


class TritonBackend:
    name = "triton"
    accepts_tokens = False
    controls_models = True  # Triton runs in explicit model-control mode (see mesh.supervisor._triton)
    tier = 0  # the preferred pool

    def __init__(
        self,
        address: str,
        capacity: int = 4,
        timeout_s: float = 30.0,
        transport: Transport | None = None,
        device_kinds: frozenset[str] = frozenset({"cpu"}),
        repositories: Sequence[Path] = (),
        config_name: str = "",
    ) -> None:
        self.address = address
        self.capacity = capacity
        # What its models can run on (the host's GPUs, when Triton has them, and its CPU).
        self.device_kinds = device_kinds
        # Its model repositories where this service can read them (the same host): what a model
        # needs is then known before it is loaded (`mesh.model_repository`); else after.
        self._repositories = [Path(r) for r in repositories]
        self._config_name = config_name
        self._needs: dict[str, ModelNeeds] = {}
        self._statistics: list[status_pb2.ModelStatistics] = []
        self._timeout_s = timeout_s
        # Mutual TLS with the inference service's leaf when the mesh is secure; a renewed leaf
        # gets a new client at the next refresh (the old one finishes its calls, then closes).
        self._transport = transport or Transport.insecure()
        self._stamp = self._transport.stamp()
        self._client, self._channel = self._connect()
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._retired: set[asyncio.Task[None]] = set()
        self._specs: dict[str, ModelSpec] = {}  # every model ready now, embedding or not
        self._available: dict[str, Loadable] = {}
        self._memory: dict[str, int] = {}  # declared memory_mb of models seen loaded, in bytes
        self._streaming: set[str] = set()

    def _connect(self) -> tuple[triton.InferenceServerClient, grpc.aio.Channel]:
        if self._transport.secure:
            creds = self._transport.channel_credentials()
            client = triton.InferenceServerClient(self.address, creds=creds, channel_args=_CHANNEL)
            channel = grpc.aio.secure_channel(self.address, creds, options=_CHANNEL, interceptors=client_interceptors())
            return client, channel
        client = triton.InferenceServerClient(self.address, channel_args=_CHANNEL)
        # Model calls carry the trace context: Triton continues it (its OpenTelemetry tracing).
        return client, grpc.aio.insecure_channel(self.address, options=_CHANNEL, interceptors=client_interceptors())

    def _follow_renewal(self) -> None:
        stamp = self._transport.stamp()
        if stamp == self._stamp:
            return
        old, old_channel = self._client, self._channel
        self._stamp, (self._client, self._channel) = stamp, self._connect()
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)

        async def retire() -> None:
            try:
                await asyncio.sleep(self._timeout_s)  # calls in flight on the old client finish first
            finally:
                with contextlib.suppress(Exception):
                    await old.close()
                with contextlib.suppress(Exception):
                    await old_channel.close()

        task = asyncio.create_task(retire())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def refresh(self) -> list[ModelSpec]:
        self._follow_renewal()
        try:
            if not await self._client.is_server_ready(client_timeout=2.0):
                raise BackendDown(f"triton at {self.address} is not ready")
            index = (await self._client.get_model_repository_index(as_json=True, client_timeout=2.0)).get("models", [])
            ready = {m["name"] for m in index if m.get("state") == "READY"}
            for gone in set(self._specs) - ready:  # unloaded: learnt afresh if it is loaded again
                del self._specs[gone]
            for name in sorted(ready - set(self._specs)):
                self._specs[name] = await self._learn(name)
            statistics = await self._client.get_inference_statistics(as_json=True, client_timeout=2.0)
        except InferenceServerException as exc:
            raise _failure(exc, "refresh") from exc
        self._statistics = [_statistics(m) for m in statistics.get("model_stats", []) if m.get("name") in ready]
        if any(m["name"] not in self._needs for m in index):  # a model new to the repositories
            self._needs = repository_needs(self._repositories, self._config_name)
            self._needs.update((m["name"], ModelNeeds()) for m in index if m["name"] not in self._needs)
        self._available = {}
        for m in index:
            needs = self._needs.get(m["name"], ModelNeeds())
            self._available[m["name"]] = Loadable(
                m["name"],
                m.get("state") or "UNAVAILABLE",
                m.get("reason", ""),
                self._memory.get(m["name"], 0) or needs.memory_bytes,
                self._specs[m["name"]].device_kind if m["name"] in self._specs else needs.device_kind,
            )
        embedding = {name for name, spec in self._specs.items() if spec.embeds}
        self._streaming = {n.removesuffix(CHUNK_SUFFIX) for n in ready if n.endswith(CHUNK_SUFFIX)} & embedding
        return list(self._specs.values())

    async def _learn(self, name: str) -> ModelSpec:
        """The model's signature from its metadata and config; an embedding model (TEXT in,
        EMBEDDING out, not decoupled) also gives its dimensions and sequence limit."""
        metadata = await self._client.get_model_metadata(name, as_json=True, client_timeout=2.0)
        config = (await self._client.get_model_config(name, as_json=True, client_timeout=2.0))["config"]
        signature = _signature(metadata, config)
        needs = loaded_needs(config)
        if needs.memory_bytes:
            self._memory[name] = needs.memory_bytes
        text, output = signature.input(TEXT), signature.output(EMBEDDING)
        embeds = not (text is None or output is None or signature.decoupled or text.datatype != "BYTES")
        max_length = config.get("parameters", {}).get("max_sequence_length", {}).get("string_value", "")
        return ModelSpec(
            name,
            int(output.shape[-1]) if embeds and output else 0,
            int(max_length or 256) if embeds else 0,
            signature,
            family=needs.family,
            min_cosine=needs.min_cosine,
            precision=needs.precision,
            device_kind=needs.device_kind,
            instances=needs.instances,
        )

    def available(self) -> Mapping[str, Loadable]:
        return self._available

    def statistics(self) -> Sequence[status_pb2.ModelStatistics]:
        return self._statistics

    async def load(self, model: str) -> None:
        self._needs.pop(model, None)  # its config is read afresh (it may have been edited)
        try:
            await self._client.load_model(model, client_timeout=_LOAD_TIMEOUT_S)
        except InferenceServerException as exc:
            message = exc.message() or ""
            if "failed to poll" in message or "not found" in message.lower():
                raise NotFound(f"Triton at {self.address} has no model {model!r} in its repositories") from exc
            raise ModelFailed(f"model {model!r} failed to load: {message}") from exc

    async def unload(self, model: str) -> None:
        """Returns once Triton has let the model go: its unload call returns as the unload
        starts, and the model's memory is free only when its state leaves UNLOADING."""
        try:
            await self._client.unload_model(model, client_timeout=_LOAD_TIMEOUT_S)
            async with asyncio.timeout(_LOAD_TIMEOUT_S):
                while await self._state(model) == "UNLOADING":  # noqa: ASYNC110 (Triton has no unload event)
                    await asyncio.sleep(_UNLOAD_POLL_S)
        except InferenceServerException as exc:
            raise _failure(exc, "unload", "name") from exc
        except TimeoutError:
            raise BackendDown(
                f"triton at {self.address} still unloading {model!r} after {_LOAD_TIMEOUT_S:.0f} s"
            ) from None

    async def _state(self, model: str) -> str:
        index = await self._client.get_model_repository_index(as_json=True, client_timeout=2.0)
        return next((m.get("state", "") for m in index.get("models", []) if m["name"] == model), "")

    async def embed(self, model: str, texts: list[str], rank: int) -> np.ndarray:
        """The generic call on TEXT -> EMBEDDING, in parts of the model's batch limit."""
        spec = self._specs.get(model)
        limit = (spec.signature.max_batch_size if spec and spec.signature else 0) or len(texts)
        parts = [texts[i : i + limit] for i in range(0, len(texts), limit)]
        results = await asyncio.gather(*(self._embed_part(model, part, rank) for part in parts))
        return np.concatenate(results) if len(results) > 1 else results[0]

    async def _embed_part(self, model: str, texts: list[str], rank: int) -> np.ndarray:
        request = TensorRequest(
            [TensorData.of(TEXT, "BYTES", np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_))],
            [EMBEDDING],
        )
        try:
            (vectors,) = await self.infer(model, request, rank)
        except InvalidArgument as exc:
            raise InvalidArgument("texts", exc.reason) from exc
        return np.asarray(vectors.array(), dtype=np.float32)

    def _request(self, model: str, request: TensorRequest, rank: int) -> service_pb2.ModelInferRequest:
        wire = add_raw_inputs(
            service_pb2.ModelInferRequest(model_name=model, model_version=request.version, id=request.id),
            request.inputs,
        )
        for name in request.outputs:
            wire.outputs.add(name=name)
        set_parameters(wire.parameters, request.parameters)
        spec = self._specs.get(model)
        if spec is None or spec.signature is None or spec.signature.priority_levels:
            wire.parameters["priority"].uint64_param = _level(rank)
        return wire

    async def infer(self, model: str, request: TensorRequest, rank: int) -> list[TensorData]:
        try:
            reply = await self._stub.ModelInfer(self._request(model, request, rank), timeout=self._timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _rpc_failure(exc, "infer", model) from exc
        return _outputs(reply)

    async def stream_infer(self, model: str, request: TensorRequest, rank: int) -> AsyncIterator[list[TensorData]]:
        """Every response of a decoupled model: Triton is asked for its empty final response, so
        the end is known however many responses the model sends."""
        wire = self._request(model, request, rank)
        wire.parameters[_EMPTY_FINAL].bool_param = True
        done = asyncio.Event()

        async def one_request() -> AsyncIterator[service_pb2.ModelInferRequest]:
            yield wire
            await done.wait()  # our half stays open until the final response arrived

        call = self._stub.ModelStreamInfer(one_request(), timeout=self._timeout_s)
        try:
            async for response in call:
                if response.error_message:  # the model's own error (the stream itself is up)
                    raise ModelFailed(f"model {model!r} failed: {response.error_message}")
                reply = response.infer_response
                if reply.outputs:
                    yield _outputs(reply)
                if reply.parameters[_FINAL].bool_param:
                    return
        except grpc.aio.AioRpcError as exc:
            raise _rpc_failure(exc, "stream", model) from exc
        finally:
            done.set()
            call.cancel()  # a consumer that stopped early cancels Triton's request

    async def embed_tokens(self, model: str, ids: list[list[int]]) -> np.ndarray:
        raise InvalidArgument("input_ids", "the Triton backend takes text only")

    def streams(self, model: str) -> bool:
        return model in self._streaming

    async def stream(self, model: str, text: str, chunk_words: int, rank: int) -> AsyncIterator[Chunk]:
        document = InferInput("TEXT", [1], "BYTES")
        document.set_data_from_numpy(np.array([text.encode("utf-8")], dtype=np.object_))
        size = InferInput("CHUNK_WORDS", [1], "UINT32")
        size.set_data_from_numpy(np.array([chunk_words], dtype=np.uint32))
        expected = len(split_words(text, chunk_words))  # the model cuts by the same rule
        sent = asyncio.Event()

        async def one_request() -> AsyncIterator[dict[str, object]]:
            yield {
                "model_name": model + CHUNK_SUFFIX,
                "inputs": [document, size],
                "priority": _level(rank),
            }
            await sent.wait()  # keep our half open until the last response arrived

        responses = self._client.stream_infer(one_request())
        try:
            async for result, error in responses:
                if error is not None:
                    raise _failure(error, "stream")
                chunk = Chunk(
                    sequence=int(result.as_numpy("SEQUENCE")[0]),
                    text=result.as_numpy("CHUNK_TEXT")[0].decode("utf-8"),
                    vector=np.asarray(result.as_numpy("EMBEDDING"), dtype=np.float32),
                    confidence=float(result.as_numpy("CONFIDENCE")[0]),
                )
                yield chunk
                # The aio client cannot ask for Triton's empty final response, so the end is the
                # last chunk: it carries the final flag, and its number is known in advance.
                if chunk.sequence >= expected or result.get_response().parameters[_FINAL].bool_param:
                    return
        except InferenceServerException as exc:
            raise _failure(exc, "stream") from exc
        except grpc.aio.AioRpcError as exc:  # the stream iterator passes gRPC errors through raw
            raise BackendDown(f"triton stream: {exc.code().name}: {exc.details()}") from exc
        finally:
            sent.set()
            responses.cancel()  # a consumer that stopped early (cancelled task) cancels Triton's request

    async def close(self) -> None:
        for task in list(self._retired):  # retiring clients close now
            task.cancel()
        await asyncio.gather(*self._retired, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._client.close()
        with contextlib.suppress(Exception):
            await self._channel.close()


def _outputs(reply: service_pb2.ModelInferResponse) -> list[TensorData]:
    return [
        TensorData(o.name, o.datatype, tuple(int(d) for d in o.shape), reply.raw_output_contents[i])
        for i, o in enumerate(reply.outputs)
    ]


def _signature(metadata: dict[str, Any], config: dict[str, Any]) -> Signature:
    """A model's signature from Triton's metadata (datatypes, shapes with the batch dimension)
    and config (batch limit, optional inputs, decoupled, priority levels)."""
    optional = {i["name"] for i in config.get("input", []) if i.get("optional")}

    def specs(entries: list[dict[str, Any]], inputs: bool) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(e["name"], e["datatype"], tuple(int(d) for d in e["shape"]), inputs and e["name"] in optional)
            for e in entries
        )

    return Signature(
        name=metadata["name"],
        inputs=specs(metadata.get("inputs", []), True),
        outputs=specs(metadata.get("outputs", []), False),
        versions=tuple(metadata.get("versions", [])),
        platform=metadata.get("platform", ""),
        max_batch_size=int(config.get("max_batch_size", 0)),
        decoupled=bool(config.get("model_transaction_policy", {}).get("decoupled", False)),
        priority_levels=int(config.get("dynamic_batching", {}).get("priority_levels", 0)),
    )


def _statistics(model: dict[str, Any]) -> status_pb2.ModelStatistics:
    """One model's entry of Triton's statistics (JSON: counts, and durations in ns)."""
    stats = model.get("inference_stats", {})

    def count(key: str) -> int:
        return int(stats.get(key, {}).get("count", 0))

    def ms(*keys: str) -> float:
        return sum(int(stats.get(key, {}).get("ns", 0)) for key in keys) / 1e6

    out = status_pb2.ModelStatistics(
        model=model.get("name", ""),
        version=str(model.get("version", "")),
        inference_count=int(model.get("inference_count", 0)),
        execution_count=int(model.get("execution_count", 0)),
        success_count=count("success"),
        failure_count=count("fail"),
        queue_ms_total=ms("queue"),
        compute_ms_total=ms("compute_input", "compute_infer", "compute_output"),
    )
    if int(model.get("last_inference", 0)):
        out.last_inference.FromMilliseconds(int(model["last_inference"]))
    return out


def _level(rank: int) -> int:
    """Triton's priority level for an urgency (`mesh.priority.urgency`, 0 the most urgent): its
    levels count from 1, the highest (0 would mean the model's default level)."""
    return rank + 1
