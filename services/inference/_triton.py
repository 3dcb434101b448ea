"""The Triton backend: KServe v2 over gRPC through `tritonclient.grpc.aio`.

Model residency comes from Triton's repository index and per-model metadata; a model named
``<model>-chunks`` that is decoupled serves the native chunk stream of ``<model>``. Failures to
reach Triton become `BackendDown` (the router falls back); Triton's own INVALID_ARGUMENT
becomes ours, naming the field. Cancelling an embed or a stream cancels the gRPC call, and
Triton sees the request cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc.aio
import numpy as np
import tritonclient.grpc.aio as triton
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from mesh.errors import InvalidArgument
from mesh.security import Transport
from mesh.tasks import split_words
from services.inference._backend import BackendDown, Chunk, ModelSpec

CHUNK_SUFFIX = "-chunks"
_FINAL = "triton_final_response"
_CHANNEL = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    # A restarted Triton is found within a second, not after gRPC's default backoff (up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def _failure(exc: InferenceServerException, what: str) -> Exception:
    status = str(exc.status() or "")
    if "INVALID_ARGUMENT" in status:
        return InvalidArgument("texts", f"Triton refused the input: {exc.message()}")
    return BackendDown(f"triton {what}: {status or 'error'}: {exc.message()}")


class TritonBackend:
    name = "triton"
    accepts_tokens = False

    def __init__(
        self, address: str, capacity: int = 4, timeout_s: float = 30.0, transport: Transport | None = None
    ) -> None:
        self.address = address
        self.capacity = capacity
        self._timeout_s = timeout_s
        # Mutual TLS with the inference service's leaf when the mesh is secure; a renewed leaf
        # gets a new client at the next refresh (the old one finishes its calls, then closes).
        self._transport = transport or Transport.insecure()
        self._stamp = self._transport.stamp()
        self._client = self._connect()
        self._retired: set[asyncio.Task[None]] = set()
        self._specs: dict[str, ModelSpec | None] = {}  # None: a model that is not an embedding model
        self._max_batch: dict[str, int] = {}
        self._streaming: set[str] = set()

    def _connect(self) -> triton.InferenceServerClient:
        if self._transport.secure:
            creds = self._transport.channel_credentials()
            return triton.InferenceServerClient(self.address, creds=creds, channel_args=_CHANNEL)
        return triton.InferenceServerClient(self.address, channel_args=_CHANNEL)

    def _follow_renewal(self) -> None:
        stamp = self._transport.stamp()
        if stamp == self._stamp:
            return
        self._stamp, old, self._client = stamp, self._client, self._connect()

        async def retire() -> None:
            try:
                await asyncio.sleep(self._timeout_s)  # calls in flight on the old client finish first
            finally:
                with contextlib.suppress(Exception):
                    await old.close()

        task = asyncio.create_task(retire())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def refresh(self) -> list[ModelSpec]:
        self._follow_renewal()
        try:
            if not await self._client.is_server_ready(client_timeout=2.0):
                raise BackendDown(f"triton at {self.address} is not ready")
            index = await self._client.get_model_repository_index(as_json=True, client_timeout=2.0)
            ready = {m["name"] for m in index.get("models", []) if m.get("state") == "READY"}
            specs: dict[str, ModelSpec] = {}
            for name in (n for n in ready if not n.endswith(CHUNK_SUFFIX)):
                if name not in self._specs:
                    await self._learn(name)
                if (spec := self._specs[name]) is not None:
                    specs[name] = spec
        except InferenceServerException as exc:
            raise _failure(exc, "refresh") from exc
        self._streaming = {n.removesuffix(CHUNK_SUFFIX) for n in ready if n.endswith(CHUNK_SUFFIX)} & set(specs)
        return list(specs.values())

    async def _learn(self, name: str) -> None:
        """Dimensions and batch limit from the model's metadata and config (once per model)."""
        metadata = await self._client.get_model_metadata(name, as_json=True, client_timeout=2.0)
        config = (await self._client.get_model_config(name, as_json=True, client_timeout=2.0))["config"]
        output = next((o for o in metadata["outputs"] if o["name"] == "EMBEDDING"), None)
        if output is None:
            self._specs[name] = None
            return
        dimensions = int(output["shape"][-1])
        max_length = int(config.get("parameters", {}).get("max_sequence_length", {}).get("string_value", 256))
        self._specs[name] = ModelSpec(name, dimensions, max_length)
        self._max_batch[name] = int(config.get("max_batch_size", 0)) or 1

    async def embed(self, model: str, texts: list[str], rank: int) -> np.ndarray:
        limit = self._max_batch.get(model, len(texts))
        parts = [texts[i : i + limit] for i in range(0, len(texts), limit)]
        vectors = await asyncio.gather(*(self._infer(model, part, rank) for part in parts))
        return np.concatenate(vectors) if len(vectors) > 1 else vectors[0]

    async def _infer(self, model: str, texts: list[str], rank: int) -> np.ndarray:
        text = InferInput("TEXT", [len(texts), 1], "BYTES")
        text.set_data_from_numpy(np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_))
        try:
            result = await self._client.infer(
                model,
                [text],
                outputs=[InferRequestedOutput("EMBEDDING")],
                priority=_level(rank),
                client_timeout=self._timeout_s,
            )
        except InferenceServerException as exc:
            raise _failure(exc, "infer") from exc
        return np.asarray(result.as_numpy("EMBEDDING"), dtype=np.float32)

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


def _level(rank: int) -> int:
    """Triton's priority level for an urgency (`mesh.priority.urgency`, 0 the most urgent): its
    levels count from 1, the highest (0 would mean the model's default level)."""
    return rank + 1
