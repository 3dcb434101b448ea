"""InferenceBackend: the seam between the inference service and what computes.

A backend says which models it holds and their signatures (`refresh`, which also proves it is
alive), runs any of them on checked tensors (`infer`, and `stream_infer` for a decoupled
model), embeds a batch of texts, and — where the model supports it natively — streams a long
document chunk by chunk. The router (`_router`) chooses between backends; errors cross this seam as
`BackendDown` (the backend failed: try another) or `InvalidArgument` (the input is wrong:
no backend will take it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mesh.errors import Conflict, InvalidArgument, MeshError, NotFound, Unavailable
from mesh.oip import Signature, TensorData, TensorRequest, TensorSpec
from mesh.v1 import status_pb2


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dimensions: int  # an embedding model's vector size; 0: not an embedding model
    max_sequence_length: int
    signature: Signature | None = None  # what it takes and gives (None: embeddings only)
    # A variant of another model (`family`: the reference it approximates, e.g. an FP16 build of
    # an FP32 model) promises its outputs within cosine `min_cosine` of the reference's: a call
    # for the variant may run where the reference is (see `Router`), never the other way round.
    family: str = ""
    min_cosine: float = 0.0
    precision: str = ""  # as the model declares it ("fp16", "fp32"; "" when it does not)
    # Where its instances run ("gpu", "cpu"; "" unknown) and how many, from its Triton config.
    device_kind: str = ""
    instances: int = 0

    @property
    def embeds(self) -> bool:
        return self.dimensions > 0

    def same_tensors(self, other: ModelSpec) -> bool:
        """Whether `other` takes and gives the same tensors (names, datatypes, shapes)."""
        if self.signature is None or other.signature is None:
            return self.signature is other.signature and self.dimensions == other.dimensions
        mine, theirs = self.signature, other.signature
        return (mine.inputs, mine.outputs) == (theirs.inputs, theirs.outputs)


@dataclass(frozen=True)
class Chunk:
    """One streamed piece of a long document's embedding."""

    sequence: int
    text: str
    vector: np.ndarray
    confidence: float


@dataclass(frozen=True)
class Loadable:
    """A model a backend can serve: loaded (READY) or in its repositories (UNAVAILABLE, …)."""

    name: str
    state: str
    reason: str = ""
    memory_bytes: int = 0  # what it counts against the memory budget (0: the default estimate)
    device_kind: str = ""  # the device its config needs ("gpu", "cpu"; "": either, or not known)


class BackendDown(Unavailable):
    """The backend could not answer (unreachable, crashed, model unloaded); another may."""


class ModelFailed(MeshError):
    """The model itself raised on a request (the backend is fine): reported as the model's own
    failure (UNKNOWN / HTTP 502, like a proxy's upstream error), not retried elsewhere, and not
    counted against the backend's circuit."""

    error_class = "model_failed"
    grpc_code = "UNKNOWN"
    http_status = 502


class InferenceBackend(Protocol):
    name: str
    address: str
    # Batches it runs at once before it counts as full.
    capacity: int
    # Whether it takes pre-tokenized input (token ids) as well as text.
    accepts_tokens: bool
    # Whether models are loaded and unloaded on request (else it holds what it holds).
    controls_models: bool
    # Its pool's place in placement: 0 the preferred pool (Triton, the accelerators), higher the
    # pools work spills to when the preferred is full (the embedded CPU model).
    tier: int
    # The kinds of device its models can run on ("gpu", "cpu").
    device_kinds: frozenset[str]

    def available(self) -> Mapping[str, Loadable]:
        """Every model it holds or could load, as of the last `refresh`."""
        ...

    async def load(self, model: str) -> None:
        """Load `model` from the backend's repositories; returns once it is ready."""
        ...

    async def unload(self, model: str) -> None: ...

    async def refresh(self) -> list[ModelSpec]:
        """The models loaded and ready now; raises BackendDown when the backend is unreachable."""
        ...

    def statistics(self) -> Sequence[status_pb2.ModelStatistics]:
        """Per-model counters as the backend reports them, as of the last `refresh` (none: [])."""
        ...

    async def embed(self, model: str, texts: list[str], rank: int) -> np.ndarray: ...

    async def embed_tokens(self, model: str, ids: list[list[int]]) -> np.ndarray: ...

    def streams(self, model: str) -> bool:
        """Whether `stream` is native for `model` (else the service chunks and batches itself)."""
        ...

    def stream(self, model: str, text: str, chunk_words: int, rank: int) -> AsyncIterator[Chunk]: ...

    async def infer(self, model: str, request: TensorRequest, rank: int) -> list[TensorData]:
        """`model` run on checked inputs: the outputs asked for (all when none are named)."""
        ...

    def stream_infer(self, model: str, request: TensorRequest, rank: int) -> AsyncIterator[list[TensorData]]:
        """Every response a decoupled `model` sends for one request, in order."""
        ...

    async def close(self) -> None: ...


class CpuBackend:
    """all-MiniLM-L6-v2 (onnxruntime, else numpy: see `_minilm`), in worker processes
    (`processes`: tokenizing and batching then share no GIL with the service's gRPC and asyncio
    work) or in a thread pool. The cores are split between the `threads` workers (onnxruntime's
    intra-op threads), so concurrent batches do not oversubscribe them. Workers die with the
    service, even on kill -9."""

    name = "cpu"
    address = "embedded"
    accepts_tokens = True
    controls_models = False
    tier = 1  # the fallback pool: work spills here when Triton is full or down
    device_kinds = frozenset({"cpu"})

    def __init__(self, threads: int = 1, processes: bool = False) -> None:
        from services.inference._minilm import MiniLM, engine_for

        facts = MiniLM.facts()
        self._spec = ModelSpec(
            facts.name,
            facts.dim,
            facts.max_seq_length,
            minilm_signature(facts.name, facts.dim, "onnxruntime" if engine_for() == "onnx" else "numpy"),
            precision="fp32",
            device_kind="cpu",
            instances=threads,
        )
        self._vocab_size = facts.vocab_size
        self._threads = threads
        self._cores = max(1, (os.cpu_count() or 1) // threads)  # each worker's share
        self._processes = processes
        self._warm_up: Future[np.ndarray] | None = None
        self._pool = self._new_pool()
        if processes:  # the weights live in the worker processes only
            self._encode: Any = _encode
            self._encode_ids: Any = _encode_ids
        else:
            model = MiniLM.load(threads=self._cores)
            self._encode, self._encode_ids = model.encode, model.encode_ids
        self.capacity = threads

    def _new_pool(self) -> Executor:
        if not self._processes:
            return ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="minilm")
        pool = ProcessPoolExecutor(
            max_workers=self._threads,
            mp_context=multiprocessing.get_context("spawn"),  # not fork: this process runs gRPC threads
            initializer=_load_model,
            initargs=(os.getpid(), self._cores),
        )
        # Start a worker (and load its model) now, not on a request; `refresh` waits for it, so the
        # service reports ready only once the model is loaded.
        self._warm_up = pool.submit(_encode, ["warm up"])
        return pool

    async def _run(self, fn: Any, arg: Any, retry: bool = True) -> np.ndarray:
        """`fn(arg)` on the pool; a worker process that died is replaced and the call tried once more."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, arg)
        except BrokenProcessPool as exc:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            if not retry:
                raise BackendDown(f"the CPU model's worker process died: {exc}") from exc
        return await self._run(fn, arg, retry=False)

    async def refresh(self) -> list[ModelSpec]:
        if self._warm_up is not None:
            try:
                await asyncio.wrap_future(self._warm_up)
            except BrokenProcessPool as exc:
                raise BackendDown(f"the CPU model's worker process died while loading: {exc}") from exc
            self._warm_up = None
        return [self._spec]

    def available(self) -> Mapping[str, Loadable]:
        return {self._spec.name: Loadable(self._spec.name, "READY", device_kind="cpu")}

    def statistics(self) -> Sequence[status_pb2.ModelStatistics]:
        return []  # the router counts its calls (tidemesh_inference_texts_total)

    async def load(self, model: str) -> None:
        if model != self._spec.name:
            raise NotFound(f"the embedded CPU backend holds only {self._spec.name!r}")

    async def unload(self, model: str) -> None:
        raise Conflict("the embedded CPU model is always loaded (it is every model call's last fallback)")

    async def embed(self, model: str, texts: list[str], rank: int) -> np.ndarray:
        return await self._run(self._encode, texts)

    async def embed_tokens(self, model: str, ids: list[list[int]]) -> np.ndarray:
        vocab = self._vocab_size
        for row, seq in enumerate(ids):
            if min(seq) < 0 or max(seq) >= vocab:
                raise InvalidArgument(
                    "input_ids.raw", f"row {row} holds a token id outside the vocabulary [0, {vocab})"
                )
        return await self._run(self._encode_ids, ids)

    def streams(self, model: str) -> bool:
        return False

    def stream(self, model: str, text: str, chunk_words: int, rank: int) -> AsyncIterator[Chunk]:
        raise NotImplementedError("the CPU backend is streamed by the service, a batch per chunk")

    async def infer(self, model: str, request: TensorRequest, rank: int) -> list[TensorData]:
        (text,) = request.inputs  # the signature has one input, and the request was checked against it
        texts = [t.decode("utf-8", errors="replace") for t in text.array().reshape(-1)]
        for index, item in enumerate(texts):
            if not item.strip():
                raise InvalidArgument(f"inputs[0].contents[{index}]", "is an empty text")
        vectors = await self.embed(model, texts, rank)
        return [TensorData.of(EMBEDDING, "FP32", vectors)]

    def stream_infer(self, model: str, request: TensorRequest, rank: int) -> AsyncIterator[list[TensorData]]:
        raise NotImplementedError("the CPU backend holds no decoupled model")

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


TEXT, EMBEDDING = "TEXT", "EMBEDDING"
MAX_BATCH = 64  # as the Triton config of the model says: one signature on every backend


def minilm_signature(name: str, dimensions: int, platform: str) -> Signature:
    """The embedding model's signature, the same on every backend (see its Triton config)."""
    return Signature(
        name=name,
        inputs=(TensorSpec(TEXT, "BYTES", (-1, 1)),),
        outputs=(TensorSpec(EMBEDDING, "FP32", (-1, dimensions)),),
        versions=("1",),
        platform=platform,
        max_batch_size=MAX_BATCH,
    )


_process_model: Any = None


def _load_model(parent: int, cores: int) -> None:
    """Worker-process start: die with the service (even on its kill -9), then load the model."""
    global _process_model
    with contextlib.suppress(OSError, AttributeError):  # PR_SET_PDEATHSIG: Linux only
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() != parent:  # the service died before prctl took effect
        os._exit(0)
    from services.inference._minilm import MiniLM

    _process_model = MiniLM.load(threads=cores)


def _encode(texts: list[str]) -> np.ndarray:
    return _process_model.encode(texts)


def _encode_ids(ids: list[list[int]]) -> np.ndarray:
    return _process_model.encode_ids(ids)
