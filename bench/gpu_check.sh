#!/usr/bin/env bash
# Serve all-MiniLM-L6-v2 from Triton on an NVIDIA GPU and run the inference benchmark there.
#
#   bench/gpu_check.sh            # from the repository root, on a machine with an NVIDIA GPU
#
# Triton (from nvidia-pytriton) loads each model's configs/gpu.pbtxt (KIND_GPU instances); the
# Python-backend model runs tidemesh's MiniLM through cupy on its GPU. Steps: GPU visible →
# environment (make venv, cupy) → GPU vectors match the sentence-transformers reference, FP16
# vectors (cuBLAS FP16 GEMMs) within the variant's tolerance of FP32 → the GPU-only tests (NVML
# telemetry, the FP16 variant placed on KIND_GPU instances, Triton's statistics) → `python -m bench inference` with Triton on the
# GPU, written to bench/results/inference-gpu.md → `python -m bench models` (generic inference on a
# user model vs direct tritonclient, spillover to the CPU model when the GPU pool is saturated),
# written to bench/results/models-gpu.md. Set RUNS (default 3) to change the number of runs.
#
#   bench/gpu_check.sh --device   # on the lent accelerator machine (no registry, 64 MiB travels):
#                                 # `python -m bench.gpu_pack` here first, then run this with carry [".gpu"]
#
# --device runs what fits there (bench/gpu_device.py, its own python3 and the carried wheels): MiniLM
# at FP32 on the GPU vs the reference, the FP16 variant vs FP32 within its tolerance, throughput of
# each, and NVML telemetry through the service's own Devices; the report goes to $OUT (else
# bench/results)/gpu-device.md. Triton cannot run there: its wheel (55 MB) and the model's weights
# (91 MB) do not fit in what travels.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--device" ]; then
  [ -d .gpu/minilm ] || { echo "gpu_check: no .gpu/ pack here (run python -m bench.gpu_pack first)" >&2; exit 2; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl
  PYTHONPATH=/tmp/site exec python3 bench/gpu_device.py --out "${OUT:-bench/results}"
fi

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L; then
  echo "gpu_check: no NVIDIA GPU visible (nvidia-smi missing or failing); nothing to measure" >&2
  exit 2
fi
[ -x .venv/bin/python ] || make venv
PY=.venv/bin/python
if ! $PY -c "import cupy" 2>/dev/null; then
  echo "gpu_check: installing cupy for CUDA 12 (the model's GPU arrays)"
  $PY -m pip install -q "cupy-cuda12x>=13"
fi
$PY - <<'PY'
import json
from pathlib import Path

import cupy
import numpy as np

from services.inference._minilm import MiniLM

props = cupy.cuda.runtime.getDeviceProperties(0)
print(f"gpu_check: {props['name'].decode()}, cupy {cupy.__version__}")
ref = json.loads(Path("tests/data/minilm_reference.json").read_text())
got = MiniLM.load(device="cuda").encode(ref["sentences"]).astype(np.float64)
want = np.array(ref["vectors"])
real = np.linalg.norm(want, axis=1) > 0


def cosine(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)


print(f"gpu_check: min cosine vs sentence-transformers on the GPU: {cosine(got, want)[real].min():.6f}")
from services.inference._minilm import FP16_MIN_COSINE

half = MiniLM.load(device="cuda", precision="fp16").encode(ref["sentences"]).astype(np.float64)
worst = cosine(half, got)[real].min()
print(f"gpu_check: FP16 vs FP32 on the GPU: min cosine {worst:.6f} (tolerance {FP16_MIN_COSINE})")
assert worst >= FP16_MIN_COSINE, "FP16 outside its tolerance"
PY
$PY -m pytest -q -p no:cacheprovider tests/integration/test_inference_gpu.py
TIDEMESH_TRITON_CONFIG=gpu $PY -m bench inference --runs "${RUNS:-3}"
TIDEMESH_TRITON_CONFIG=gpu $PY -m bench models --runs "${RUNS:-3}"
