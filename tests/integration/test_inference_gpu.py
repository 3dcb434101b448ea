"""The GPU path: MiniLM through cupy, and Triton running the model on an NVIDIA GPU
(configs/gpu.pbtxt). Skipped — and saying why — where there is no GPU; bench/gpu_check.sh runs
these on a GPU machine."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.aio as triton
from tritonclient.grpc import InferInput, InferRequestedOutput

from mesh.security import Transport
from mesh.supervisor._triton_server import TritonServer

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "minilm_reference.json"


def _gpu_missing() -> str | None:
    if not shutil.which("nvidia-smi") or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode:
        return "no NVIDIA GPU on this machine (nvidia-smi missing or failing): the GPU path is not exercised here"
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "cupy is not installed (bench/gpu_check.sh installs cupy-cuda12x)"
    return None


pytestmark = pytest.mark.skipif(_gpu_missing() is not None, reason=_gpu_missing() or "")


def _reference() -> tuple[list[str], np.ndarray]:
    data = json.loads(REFERENCE.read_text(encoding="utf-8"))
    pairs = [(s, v) for s, v in zip(data["sentences"], data["vectors"], strict=True) if s.strip()]
    return [s for s, _ in pairs], np.array([v for _, v in pairs])


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def test_minilm_on_the_gpu_matches_the_reference() -> None:
    from services.inference._minilm import MiniLM

    sentences, vectors = _reference()
    assert _min_cosine(MiniLM.load(device="cuda").encode(sentences), vectors) >= 0.999


async def test_triton_serves_minilm_from_the_gpu(tmp_path: Path) -> None:
    sentences, vectors = _reference()
    server = TritonServer(tmp_path, config_name="gpu")
    async with server:
        assert server.pki is not None  # mutual TLS, as in a secure mesh
        client = triton.InferenceServerClient(
            server.address, creds=Transport.of(server.pki, "cli").channel_credentials()
        )
        try:
            config = await client.get_model_config("all-minilm-l6-v2", as_json=True)
            assert config["config"]["instance_group"][0]["kind"] == "KIND_GPU"
            text = InferInput("TEXT", [len(sentences), 1], "BYTES")
            text.set_data_from_numpy(np.array([[s.encode()] for s in sentences], dtype=np.object_))
            result = await client.infer("all-minilm-l6-v2", [text], outputs=[InferRequestedOutput("EMBEDDING")])
        finally:
            await client.close()
    assert _min_cosine(result.as_numpy("EMBEDDING"), vectors) >= 0.999


def test_the_gpu_is_read_through_nvml() -> None:
    """Telemetry on a real GPU: NVML finds it and reports utilization, memory, power, temperature."""
    from services.inference._devices import Devices

    devices = Devices()
    readings = devices.read()
    assert devices.has_gpu and "from NVML" in devices.note, devices.note
    assert readings and all(r.kind == "gpu" and r.memory_total_bytes > 0 for r in readings)
    assert all(0.0 <= r.utilization <= 1.0 and r.temperature_celsius > 0 for r in readings)
