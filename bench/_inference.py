"""Inference figures, side by side in one run: direct tritonclient → Triton (the anchor), the same
model through tidemesh's inference service, tidemesh's dynamic batching on and off, and the
embedded CPU backend alone.

- batch 32: `clients` concurrent callers each send requests of 32 texts; embeddings/s and the
  per-request latency. tidemesh's overhead = direct throughput / tidemesh throughput - 1.
- single texts: `single_clients` concurrent callers each send one text per request — what many
  tasks embedding at once look like. Batched vs unbatched = the same load with `--max-batch 32`
  and with `--max-batch 1` (tidemesh's batcher off).
- CPU alone: the inference service with only its embedded numpy MiniLM (no Triton).

Every service runs as its own process, as `tidemesh up` runs it; Triton is the real tritonserver
from nvidia-pytriton serving the project's model repository (Python backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as triton
from tritonclient.grpc import InferInput, InferRequestedOutput

from mesh.security import Transport
from mesh.supervisor import MeshSecurity
from mesh.supervisor._triton_server import TritonServer
from mesh.v1 import inference_pb2, inference_pb2_grpc
from services.inference._spawn import inference_process

MODEL = "all-minilm-l6-v2"
WORDS = "the tide comes in over the mesh while workers embed sentences about pools and streams".split()


def _texts(n: int, salt: int) -> list[str]:
    return [" ".join([*WORDS[(i + salt) % 7 :], f"#{salt}-{i}"]) for i in range(n)]


@contextlib.asynccontextmanager
async def _service(tmp: Path, *args: str) -> AsyncIterator[inference_pb2_grpc.InferenceServiceStub]:
    """The inference service over mutual TLS, as in a secure mesh (its leaf reaches Triton too)."""
    async with inference_process(tmp, *args, pki=MeshSecurity.prepare(tmp / "triton").pki_dir) as stub:
        await stub.Infer(inference_pb2.InferRequest(texts=["warm up"]))
        yield stub


async def _load(
    call: Callable[[list[str]], Awaitable[int]], clients: int, requests: int, size: int
) -> dict[str, float]:
    """`clients` callers share `requests` requests of `size` texts; throughput and latency."""
    latencies: list[float] = []
    queue = list(range(requests))
    embedded = 0

    async def client() -> None:
        nonlocal embedded
        while queue:
            index = queue.pop()
            started = time.perf_counter()
            count = await call(_texts(size, index))  # (not `embedded += await …`: that loses updates)
            embedded += count
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "per_s": embedded / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def _via_tidemesh(stub: inference_pb2_grpc.InferenceServiceStub) -> Callable[[list[str]], Awaitable[int]]:
    async def call(texts: list[str]) -> int:
        response = await stub.Infer(inference_pb2.InferRequest(texts=texts), timeout=120)
        return len(response.embeddings)

    return call


def _direct(client: triton.InferenceServerClient) -> Callable[[list[str]], Awaitable[int]]:
    async def call(texts: list[str]) -> int:
        text = InferInput("TEXT", [len(texts), 1], "BYTES")
        text.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
        result = await client.infer(MODEL, [text], outputs=[InferRequestedOutput("EMBEDDING")], client_timeout=120)
        return len(result.as_numpy("EMBEDDING"))

    return call


async def run(
    runs: int, clients: int = 2, requests: int = 24, single_clients: int = 32, singles: int = 384, gpu: bool = False
) -> str:
    rows: dict[str, list[dict[str, float]]] = {}

    def record(name: str, figures: dict[str, float]) -> None:
        rows.setdefault(name, []).append(figures)
        print(f"  {name}: {figures['per_s']:.0f}/s p50 {figures['p50_ms']:.1f} ms", flush=True)

    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-inference-") as tmp_dir:
        tmp = Path(tmp_dir)
        async with TritonServer(tmp / "triton") as server:
            # Direct to Triton with a mesh leaf: the same mutual TLS the inference service speaks.
            assert server.pki is not None
            creds = Transport.of(server.pki, "cli").channel_credentials()
            direct = triton.InferenceServerClient(server.address, creds=creds)
            try:
                await _direct(direct)(["warm up"])
                for run_index in range(runs):
                    print(f"inference run {run_index + 1}/{runs}", flush=True)
                    record("direct32", await _load(_direct(direct), clients, requests, 32))
                    async with _service(tmp, "--triton", server.address, "--no-cpu") as stub:
                        record("mesh32", await _load(_via_tidemesh(stub), clients, requests, 32))
                        record("mesh_triton_batched", await _load(_via_tidemesh(stub), single_clients, singles, 1))
                    record("direct1", await _load(_direct(direct), single_clients, singles, 1))
                    async with _service(tmp, "--triton", server.address, "--no-cpu", "--max-batch", "1") as stub:
                        record("mesh_triton_unbatched", await _load(_via_tidemesh(stub), single_clients, singles, 1))
            finally:
                await direct.close()
        for run_index in range(runs):
            print(f"cpu run {run_index + 1}/{runs}", flush=True)
            async with _service(tmp) as stub:
                record("cpu32", await _load(_via_tidemesh(stub), clients, requests, 32))
                record("cpu_batched", await _load(_via_tidemesh(stub), single_clients, singles, 1))
            async with _service(tmp, "--max-batch", "1") as stub:
                record("cpu_unbatched", await _load(_via_tidemesh(stub), single_clients, singles, 1))
    return _table(rows, clients, single_clients, gpu)


def _spread(values: list[float], digits: int = 0) -> str:
    ordered = sorted(values)
    return " / ".join(f"{v:.{digits}f}" for v in (ordered[0], statistics.median(ordered), ordered[-1]))


def _ratio(rows: dict[str, list[dict[str, float]]], top: str, bottom: str, minus_one: bool = False) -> str:
    ratios = [a["per_s"] / b["per_s"] - (1 if minus_one else 0) for a, b in zip(rows[top], rows[bottom], strict=True)]
    if minus_one:
        return _spread([r * 100 for r in ratios], 1) + " %"
    return _spread(ratios, 2) + " x"


def _table(rows: dict[str, list[dict[str, float]]], clients: int, single_clients: int, gpu: bool) -> str:
    labels = {
        "direct32": f"direct tritonclient → Triton, batch 32, {clients} callers",
        "mesh32": f"tidemesh → Triton, batch 32, {clients} callers",
        "direct1": f"direct tritonclient → Triton, 1 text per request, {single_clients} callers",
        "mesh_triton_batched": f"tidemesh → Triton, 1 text per request, {single_clients} callers, batching on",
        "mesh_triton_unbatched": "tidemesh → Triton, same load, tidemesh batching off (--max-batch 1)",
        "cpu32": f"tidemesh → CPU backend alone, batch 32, {clients} callers",
        "cpu_batched": f"tidemesh → CPU backend alone, 1 text per request, {single_clients} callers, batching on",
        "cpu_unbatched": "tidemesh → CPU backend alone, same load, batching off (--max-batch 1)",
    }
    where = (
        "Triton runs the model on the GPU (configs/gpu.pbtxt, cupy)."
        if gpu
        else "Triton here is the real tritonserver on this machine's CPU (Python backend, the same numpy MiniLM), "
        "so Triton, tidemesh and the load generator share the cores."
    )
    lines = [
        f"Cells are min / median / max over the runs. {where}",
        "",
        "| path | embeddings/s | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for key, label in labels.items():
        figures = rows[key]
        lines.append(
            f"| {label} | {_spread([f['per_s'] for f in figures])} | "
            f"{_spread([f['p50_ms'] for f in figures], 1)} | {_spread([f['p99_ms'] for f in figures], 1)} |"
        )
    overhead = _ratio(rows, "direct32", "mesh32", True)
    lines += [
        "",
        "| ratio | value | target |",
        "|---|---|---|",
        f"| tidemesh overhead over direct Triton at batch 32 (throughput) | {overhead} | at most 20 % |",
        f"| batched vs unbatched, CPU backend | {_ratio(rows, 'cpu_batched', 'cpu_unbatched')} | at least 3 |",
        f"| batched vs unbatched, Triton path | {_ratio(rows, 'mesh_triton_batched', 'mesh_triton_unbatched')} | "
        "at least 3 |",
        f"| tidemesh batching vs direct single-text calls to Triton | {_ratio(rows, 'mesh_triton_batched', 'direct1')} "
        "| |",
    ]
    return "\n".join(lines)
