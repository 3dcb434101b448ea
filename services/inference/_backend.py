"""InferenceBackend: the seam between the inference service and what computes embeddings.

A backend says which models it holds (`refresh`, which also proves it is alive), embeds a
batch of texts, and — where the model supports it natively — streams a long document chunk
by chunk. The router (`_router`) chooses between backends; errors cross this seam as
`BackendDown` (the backend failed: try another) or `InvalidArgument` (the input is wrong:
no backend will take it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mesh.errors import InvalidArgument, MeshError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dimensions: int
    max_sequence_length: int


@dataclass(frozen=True)
class Chunk:
    """One streamed piece of a long document's embedding."""

    sequence: int
    text: str
    vector: np.ndarray
    confidence: float


class BackendDown(MeshError):
    """The backend could not answer (unreachable, crashed, model unloaded); another may."""

    error_class = "dependency_down"


class InferenceBackend(Protocol):
    name: str
    address: str
    # Batches it runs at once before it counts as full.
    capacity: int
    # Whether it takes pre-tokenized input (token ids) as well as text.
    accepts_tokens: bool

    async def refresh(self) -> list[ModelSpec]:
        """The models loaded and ready now; raises BackendDown when the backend is unreachable."""
        ...

    async def embed(self, model: str, texts: list[str], rank: int) -> np.ndarray: ...

    async def embed_tokens(self, model: str, ids: list[list[int]]) -> np.ndarray: ...

    def streams(self, model: str) -> bool:
        """Whether `stream` is native for `model` (else the service chunks and batches itself)."""
        ...

    def stream(self, model: str, text: str, chunk_words: int, rank: int) -> AsyncIterator[Chunk]: ...

    async def close(self) -> None: ...


class CpuBackend:
    """all-MiniLM-L6-v2 in numpy, in a small thread pool (numpy releases the GIL)."""

    name = "cpu"
    address = "embedded"
    accepts_tokens = True

    def __init__(self, threads: int = 1) -> None:
        from services.inference._minilm import MiniLM

        self._model = MiniLM.load()
        self._spec = ModelSpec(self._model.name, self._model.dim, self._model.max_seq_length)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="minilm")
        self.capacity = threads

    async def refresh(self) -> list[ModelSpec]:
        return [self._spec]

    async def embed(self, model: str, texts: list[str], rank: int) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._model.encode, texts)

    async def embed_tokens(self, model: str, ids: list[list[int]]) -> np.ndarray:
        vocab = self._model.vocab_size
        for row, seq in enumerate(ids):
            if min(seq) < 0 or max(seq) >= vocab:
                raise InvalidArgument(
                    "input_ids.raw", f"row {row} holds a token id outside the vocabulary [0, {vocab})"
                )
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._model.encode_ids, ids)

    def streams(self, model: str) -> bool:
        return False

    def stream(self, model: str, text: str, chunk_words: int, rank: int) -> AsyncIterator[Chunk]:
        raise NotImplementedError("the CPU backend is streamed by the service, a batch per chunk")

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
