"""The embedded MiniLM, side by side in one run: the bare model on each engine (onnxruntime, numpy),
sentence-transformers on CPU torch (the reference, from its own venv: `make bench` creates
`.venv-reference`), and the same model through the mesh (the inference service's CPU backend over
mutual TLS, as `tidemesh up` runs it).

Every path gets the same short sentences in batches of 32 on this machine's cores (2 threads for
the bare paths). The mesh's overhead = bare onnxruntime throughput / mesh throughput - 1. The
reference's vectors are compared with the embedded model's (minimum cosine).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench._inference import _load, _service, _spread, _texts, _via_tidemesh
from services.inference._minilm import MiniLM, default_model_dir

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_PYTHON = ROOT / ".venv-reference" / "bin" / "python"
THREADS = 2
BATCH = 32
BATCHES = 24

# Run inside the reference venv: sentence-transformers on CPU torch, same sentences and threads.
_REFERENCE = """
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
from sentence_transformers import SentenceTransformer
spec = json.loads(sys.stdin.read())
model = SentenceTransformer(sys.argv[1], device="cpu")
model.encode(spec["batches"][0], batch_size=len(spec["batches"][0]))
start = time.perf_counter()
for batch in spec["batches"]:
    model.encode(batch, batch_size=len(batch))
elapsed = time.perf_counter() - start
vectors = model.encode(spec["check"], normalize_embeddings=True).tolist()
print(json.dumps({"per_s": sum(map(len, spec["batches"])) / elapsed, "vectors": vectors}))
"""


def _batches(salt: int) -> list[list[str]]:
    return [_texts(BATCH, salt * 1000 + i) for i in range(BATCHES)]


def _bare(model: MiniLM, batches: list[list[str]]) -> float:
    model.encode(batches[0])
    start = time.perf_counter()
    for batch in batches:
        model.encode(batch)
    return sum(map(len, batches)) / (time.perf_counter() - start)


def _reference(batches: list[list[str]], check: list[str]) -> tuple[float, npt.NDArray[np.float32]] | None:
    if not REFERENCE_PYTHON.exists():
        return None
    done = subprocess.run(
        [str(REFERENCE_PYTHON), "-c", _REFERENCE, str(default_model_dir()), str(THREADS)],
        input=json.dumps({"batches": batches, "check": check}),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["per_s"]), np.array(result["vectors"], dtype=np.float32)


async def run(runs: int) -> str:
    rows: dict[str, list[float]] = {}
    check = _texts(BATCH, 7)
    worst: dict[str, float] = {}
    engines = {name: MiniLM.load(engine=name, threads=THREADS) for name in ("onnx", "numpy")}
    with tempfile.TemporaryDirectory(prefix="tidemesh-bench-embedded-") as tmp_dir:
        for run_index in range(runs):
            print(f"embedded run {run_index + 1}/{runs}", flush=True)
            batches = _batches(run_index)
            for name, model in engines.items():
                rows.setdefault(name, []).append(_bare(model, batches))
            reference = _reference(batches, check)
            if reference is not None:
                rows.setdefault("reference", []).append(reference[0])
                for name, model in engines.items():
                    got = model.encode(check)
                    worst[name] = min(worst.get(name, 1.0), float((got * reference[1]).sum(axis=1).min()))
            async with _service(Path(tmp_dir)) as stub:
                figures = await _load(_via_tidemesh(stub), 2, BATCHES, BATCH)
            rows.setdefault("mesh", []).append(figures["per_s"])
            print("  " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in rows.items()), flush=True)
    return _table(rows, worst)


def _ratios(rows: dict[str, list[float]], top: str, bottom: str) -> list[float]:
    return [a / b for a, b in zip(rows[top], rows[bottom], strict=True)]


def _table(rows: dict[str, list[float]], worst: dict[str, float]) -> str:
    labels = {
        "onnx": "embedded model alone, onnxruntime engine (the default)",
        "numpy": "embedded model alone, numpy engine (the reference implementation)",
        "reference": "sentence-transformers on CPU torch",
        "mesh": "through the mesh: inference service, CPU backend, 2 callers over mutual TLS",
    }
    lines = [
        f"Batches of {BATCH} short sentences, {THREADS} threads. Cells are min / median / max over the runs.",
        "",
        "| path | sentences/s |",
        "|---|---|",
    ]
    lines += [f"| {label} | {_spread(rows[key])} |" for key, label in labels.items() if key in rows]
    overhead = [(r - 1) * 100 for r in _ratios(rows, "onnx", "mesh")]
    lines += ["", "| ratio | value | target |", "|---|---|---|"]
    if "reference" in rows:
        lines.append(
            f"| onnxruntime engine vs sentence-transformers | {_spread(_ratios(rows, 'onnx', 'reference'), 2)} x "
            "| at least 1 |"
        )
        for name, cosine in worst.items():
            lines.append(f"| min cosine, {name} engine vs sentence-transformers | {cosine:.6f} | at least 0.9999 |")
    else:
        lines.append("| sentence-transformers | not measured: no .venv-reference (make bench creates it) | |")
    lines += [
        f"| onnxruntime vs numpy engine | {_spread(_ratios(rows, 'onnx', 'numpy'), 2)} x | |",
        f"| the mesh's overhead over the bare model | {_spread(overhead, 1)} % | at most 10 % |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m bench._embedded: one quick run
    print(asyncio.run(run(1)))
