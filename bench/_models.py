"""Your own models: generic inference (the Open Inference Protocol) through tidemesh's inference
service against direct tritonclient → Triton on the same model, in one run.

- `scaler` (examples/models: Y = X * 3, batch 4): a model that does next to nothing, so the figure
  is the cost of the extra hop (checks, routing, one more gRPC call and TLS) in its purest form.
- all-MiniLM-L6-v2 as tensors (TEXT → EMBEDDING, batch 32): a model with real work, where the hop is
  a small part — what a team's classifier or reranker sees.

Overhead = direct throughput / tidemesh throughput - 1 (target: at most 10 %). Both paths speak
mutual TLS to Triton with a mesh leaf; Triton serves the project's repository and examples/models.

Spillover under saturation: batch-class callers keep Triton full with MiniLM batches while an
interactive caller sends one text at a time; its latency and the backend that answered, with the
default spill bounds (interactive spills to the embedded CPU model at once) and with spilling off.
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
from tritonclient.grpc import service_pb2, service_pb2_grpc

from mesh.oip import TensorData, add_raw_inputs
from mesh.security import Transport
from mesh.supervisor import MeshSecurity
from mesh.supervisor._triton_server import TritonServer
from mesh.v1 import inference_pb2, inference_pb2_grpc, task_pb2
from services.inference._spawn import inference_process

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "models"
MINILM = "all-minilm-l6-v2"
Call = Callable[[int], Awaitable[None]]


def _scaler_tensors(index: int) -> list[TensorData]:
    return [TensorData.of("X", "FP32", np.full((4, 1), float(index), np.float32))]


def _minilm_tensors(index: int) -> list[TensorData]:
    texts = np.array([[f"sentence {index}-{i} about tide pools and meshes".encode()] for i in range(32)], np.object_)
    return [TensorData.of("TEXT", "BYTES", texts)]


SHAPES: dict[str, tuple[Callable[[int], list[TensorData]], int]] = {
    "scaler": (_scaler_tensors, 4),
    MINILM: (_minilm_tensors, 32),
}


def _direct(stub: service_pb2_grpc.GRPCInferenceServiceStub, model: str) -> Call:
    make, _ = SHAPES[model]

    async def call(index: int) -> None:
        await stub.ModelInfer(add_raw_inputs(service_pb2.ModelInferRequest(model_name=model), make(index)), timeout=120)

    return call


def _mesh(stub: inference_pb2_grpc.InferenceServiceStub, model: str) -> Call:
    make, _ = SHAPES[model]

    async def call(index: int) -> None:
        await stub.ModelInfer(
            add_raw_inputs(inference_pb2.ModelInferRequest(model_name=model), make(index)), timeout=120
        )

    return call


async def _load(call: Call, callers: int, requests: int, rows: int) -> dict[str, float]:
    latencies: list[float] = []
    queue = list(range(requests))

    async def caller() -> None:
        while queue:
            index = queue.pop()
            started = time.perf_counter()
            await call(index)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "rows_per_s": requests * rows / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


@contextlib.asynccontextmanager
async def _service(tmp: Path, triton: str, callers: int) -> AsyncIterator[inference_pb2_grpc.InferenceServiceStub]:
    """The inference service on Triton alone, letting as many calls through to it at once as the
    direct path sends (`--triton-capacity` is a cap)."""
    async with inference_process(
        tmp,
        "--triton",
        triton,
        "--no-cpu",
        "--triton-capacity",
        str(callers),
        pki=MeshSecurity.prepare(tmp / "mesh").pki_dir,
    ) as stub:
        yield stub


async def _spillover(stub: inference_pb2_grpc.InferenceServiceStub, probes: int = 40) -> dict[str, float]:
    """Interactive probes while 8 batch-class callers keep Triton saturated."""
    flooding = True

    async def flood(index: int) -> None:
        while flooding:
            request = inference_pb2.ModelInferRequest(model_name=MINILM, priority_class=task_pb2.PRIORITY_CLASS_BATCH)
            await stub.ModelInfer(add_raw_inputs(request, _minilm_tensors(index)), timeout=120)

    floods = [asyncio.create_task(flood(i)) for i in range(8)]
    await asyncio.sleep(2.0)  # Triton's queue fills
    latencies, spilled = [], 0
    try:
        for index in range(probes):
            request = inference_pb2.ModelInferRequest(
                model_name=MINILM, priority_class=task_pb2.PRIORITY_CLASS_INTERACTIVE
            )
            request.inputs.add(
                name="TEXT", datatype="BYTES", shape=[1, 1], contents={"bytes_contents": [f"probe {index}".encode()]}
            )
            started = time.perf_counter()
            reply = await stub.ModelInfer(request, timeout=120)
            latencies.append(time.perf_counter() - started)
            spilled += reply.backend == "cpu"
    finally:
        flooding = False
        await asyncio.gather(*floods, return_exceptions=True)
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "on_cpu": spilled / probes,
    }


async def run(runs: int, callers: int = 8, requests: int = 400) -> str:
    rows: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-models-") as tmp_dir:
        tmp = Path(tmp_dir)
        async with TritonServer(tmp / "triton", model_repositories=[EXAMPLES]) as server:
            assert server.pki is not None
            async with Transport.of(server.pki, "cli").channel(server.address) as channel:
                direct = service_pb2_grpc.GRPCInferenceServiceStub(channel)
                async with _service(tmp, server.address, callers) as stub:
                    for model, (_, size) in SHAPES.items():
                        count = requests if model == "scaler" else requests // 10
                        await _direct(direct, model)(0)  # warm both paths
                        await _mesh(stub, model)(0)
                        for run_index in range(runs):
                            print(f"models: {model} run {run_index + 1}/{runs}", flush=True)
                            # alternate which path goes first, so drift on a noisy machine evens out
                            order = [("direct", _direct(direct, model)), ("mesh", _mesh(stub, model))]
                            for name, call in order if run_index % 2 == 0 else order[::-1]:
                                figures = await _load(call, callers, count, size)
                                rows.setdefault(f"{model}:{name}", []).append(figures)
                                print(f"  {name}: {figures['rows_per_s']:.0f} rows/s p50 {figures['p50_ms']:.1f} ms")
                spill: dict[str, list[dict[str, float]]] = {}
                for run_index in range(runs):
                    for label, extra in (
                        ("spill", ()),
                        ("no spill", ("--spill-after-ms", "interactive=1e9,standard=1e9,batch=1e9")),
                    ):
                        print(f"models: spillover run {run_index + 1}/{runs}, {label}", flush=True)
                        async with inference_process(
                            tmp,
                            "--triton",
                            server.address,
                            *extra,
                            pki=MeshSecurity.prepare(tmp / "mesh").pki_dir,
                        ) as both:
                            spill.setdefault(label, []).append(await _spillover(both))
    return _table(rows, callers) + "\n\n" + _spill_table(spill)


def _spill_table(spill: dict[str, list[dict[str, float]]]) -> str:
    lines = [
        "Spillover under saturation: interactive MiniLM calls (one text) while 8 batch-class callers keep Triton "
        "full with batches of 32; Triton and the embedded CPU model both in the service.",
        "",
        "| spill bounds | interactive p50 ms | p99 ms | answered by the CPU pool |",
        "|---|---|---|---|",
    ]
    for label, figures in spill.items():
        bounds = (
            "default (interactive spills at once)"
            if label == "spill"
            else "spilling off (interactive waits for Triton)"
        )
        lines.append(
            f"| {bounds} | {_spread([f['p50_ms'] for f in figures], 1)} | {_spread([f['p99_ms'] for f in figures], 1)} "
            f"| {_spread([f['on_cpu'] * 100 for f in figures])} % |"
        )
    return "\n".join(lines)


def _spread(values: list[float], digits: int = 0) -> str:
    ordered = sorted(values)
    return " / ".join(f"{v:.{digits}f}" for v in (ordered[0], statistics.median(ordered), ordered[-1]))


def _table(rows: dict[str, list[dict[str, float]]], callers: int) -> str:
    lines = [
        f"{callers} concurrent callers; cells are min / median / max over the runs; both paths mutual TLS.",
        "",
        "| model | path | rows/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for key, figures in rows.items():
        model, path = key.split(":")
        label = "direct tritonclient → Triton" if path == "direct" else "tidemesh inference service → Triton"
        lines.append(
            f"| {model} | {label} | {_spread([f['rows_per_s'] for f in figures])} | "
            f"{_spread([f['p50_ms'] for f in figures], 1)} | {_spread([f['p99_ms'] for f in figures], 1)} |"
        )
    lines += ["", "| model | tidemesh overhead over direct (throughput) | target |", "|---|---|---|"]
    for model in SHAPES:
        pairs = zip(rows[f"{model}:direct"], rows[f"{model}:mesh"], strict=True)
        overheads = [(d["rows_per_s"] / m["rows_per_s"] - 1) * 100 for d, m in pairs]
        lines.append(f"| {model} | {_spread(overheads, 1)} % | at most 10 % |")
    return "\n".join(lines)
