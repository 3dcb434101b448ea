"""InferenceBackend: the seam between the inference service and what computes embeddings."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dimensions: int
    max_sequence_length: int


class InferenceBackend(Protocol):
    name: str

    def models(self) -> list[ModelSpec]: ...

    async def embed(self, model: str, texts: list[str]) -> np.ndarray: ...

    async def close(self) -> None: ...


class CpuBackend:
    """all-MiniLM-L6-v2 in numpy, run in a small thread pool (numpy releases the GIL)."""

    name = "cpu"

    def __init__(self, threads: int = 1) -> None:
        from services.inference._minilm import MiniLM

        self._model = MiniLM.load()
        self._spec = ModelSpec(self._model.name, self._model.dim, self._model.max_seq_length)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="minilm")

    def models(self) -> list[ModelSpec]:
        return [self._spec]

    async def embed(self, model: str, texts: list[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._model.encode, texts)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
