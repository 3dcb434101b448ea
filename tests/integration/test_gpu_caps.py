"""A GPU-memory cap on a real GPU: a child that allocates 1 GiB of device memory (the CUDA driver API
through ctypes, no framework needed) against a 512 MiB cap is killed and restarted, told why, as NVML
sees it. Runs only where NVML finds an NVIDIA GPU; the same path is unit-tested with a fake NVML
(tests/unit/test_caps.py)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from mesh.supervisor import Child, GpuMemory
from mesh.supervisor._plan import Health, ProcessSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

# First life: a CUDA context and 1 GiB on device 0, held; later lives hold nothing.
_ALLOCATE = """
import ctypes, json, os, pathlib, sys, time
out = pathlib.Path(sys.argv[1])
lives = sorted(out.glob("life-*"))
(out / f"life-{len(lives)}").write_text(os.environ.get("TIDEMESH_RESTART_REASON", ""))
if not lives:
    cuda = ctypes.CDLL("libcuda.so.1")
    device, context, pointer = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
    assert cuda.cuInit(0) == 0 and cuda.cuDeviceGet(ctypes.byref(device), 0) == 0
    assert cuda.cuCtxCreate_v2(ctypes.byref(context), 0, device) == 0
    assert cuda.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(1 << 30)) == 0
    (out / "allocated").write_text("1")
time.sleep(60)
"""


async def _until(condition, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_a_child_over_its_gpu_memory_cap_on_a_real_gpu_is_killed_and_restarted(tmp_path: Path) -> None:
    gpu = GpuMemory()
    if not gpu.available:
        pytest.skip(f"no NVIDIA GPU: {gpu.note}")
    (tmp_path / "logs").mkdir()
    spec = ProcessSpec(
        name="gpu-hog",
        command=[sys.executable, "-c", _ALLOCATE, str(tmp_path)],
        ports={},
        health=Health(url="http://127.0.0.1:9/", host="127.0.0.1", port=9, path="/"),
        gpu_memory_cap_mb=512,
    )
    child = Child(spec, tmp_path / "logs", gpu=gpu)
    await child.start()
    child.watch(memory_every_s=0.1)
    try:
        await _until(lambda: (tmp_path / "life-1").exists())
        assert (tmp_path / "allocated").exists() and child.gpu_memory_kills == 1
        assert child.peak_gpu_bytes > 512 << 20
        reason = json.loads((tmp_path / "life-1").read_text())
        assert reason["reason"] == "gpu_memory_cap" and reason["cap_mb"] == 512 and reason["gpu_mb"] > 512
        await asyncio.sleep(0.5)  # the restarted one holds no GPU memory: left alone
        assert child.gpu_memory_kills == 1 and not (tmp_path / "life-2").exists()
    finally:
        await child.stop(grace_s=2)
        gpu.close()
