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


def test_fp16_on_the_gpu_stays_within_its_tolerance_of_fp32() -> None:
    """Mixed precision on the device (cuBLAS FP16 GEMMs, FP16 weights on the GPU): within the
    variant's declared cosine of the FP32 GPU vectors and of sentence-transformers, and close to
    the CPU emulation of the same rounding."""
    import cupy

    from services.inference._minilm import FP16_MIN_COSINE, MiniLM

    sentences, vectors = _reference()
    half = MiniLM.load(device="cuda", precision="fp16")
    assert isinstance(half._layers[0].qkv_w, cupy.ndarray) and half._layers[0].qkv_w.dtype == np.float16
    got = half.encode(sentences)
    assert _min_cosine(got, MiniLM.load(device="cuda").encode(sentences)) >= FP16_MIN_COSINE
    assert _min_cosine(got, vectors) >= FP16_MIN_COSINE
    assert _min_cosine(got, MiniLM.load(precision="fp16").encode(sentences)) >= 0.9999


async def test_triton_on_the_gpu_places_the_fp16_variant_there_and_counts_it(tmp_path: Path) -> None:
    """The inference service over a GPU Triton (configs/gpu.pbtxt): the FP16 variant, loaded on
    demand, runs on KIND_GPU instances; the backend says it has a GPU; Triton's statistics count
    the call."""
    from mesh.supervisor import MeshSecurity
    from mesh.v1 import inference_pb2
    from services.inference._minilm import FP16_MIN_COSINE
    from services.inference._spawn import inference_process

    sentences, vectors = _reference()
    server = TritonServer(tmp_path / "triton", config_name="gpu")
    async with server:
        pki = MeshSecurity.prepare(tmp_path / "mesh").pki_dir
        async with inference_process(tmp_path, "--triton", server.address, "--no-cpu", pki=pki) as stub:
            reply = await stub.Infer(inference_pb2.InferRequest(model="all-minilm-l6-v2-fp16", texts=sentences))
            listing = await stub.ListModels(inference_pb2.ListModelsRequest())
    got = np.array([list(e.values) for e in reply.embeddings])
    assert reply.backend == "triton" and _min_cosine(got, vectors) >= FP16_MIN_COSINE
    [info] = [m for m in listing.models if m.name == "all-minilm-l6-v2-fp16"]
    assert (info.device_kind, info.precision, info.family) == ("gpu", "fp16", "all-minilm-l6-v2")
    [backend] = listing.backends
    assert "gpu" in backend.device_kinds
    assert any(
        s.model == "all-minilm-l6-v2-fp16" and s.inference_count >= len(sentences) for s in backend.model_statistics
    )
