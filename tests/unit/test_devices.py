"""Device telemetry: GPUs through NVML when there are any, the host's CPU otherwise — NVML's
library missing (as on this machine), the package missing, or no device are reported, not
errors — and the figures reach Prometheus."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from mesh.telemetry import METRICS
from services.inference._devices import Devices


class _FakeNvml:
    """NVML with one GPU, for the GPU path on a machine without one."""

    NVMLError = Exception

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"handle-{index}"

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return b"NVIDIA H200"

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:
        return SimpleNamespace(used=40 * 2**30, total=141 * 2**30)

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> Any:
        return SimpleNamespace(gpu=75)

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return 350_000  # milliwatts

    def nvmlDeviceGetTemperature(self, handle: str, sensor: int) -> int:
        return 61


def _proc(tmp: Path, busy: int, idle: int) -> Path:
    (tmp / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n")
    (tmp / "meminfo").write_text("MemTotal:       8000000 kB\nMemFree:  1000 kB\nMemAvailable:   6000000 kB\n")
    return tmp


def test_a_gpu_is_read_through_nvml() -> None:
    devices = Devices(nvml=_FakeNvml)
    [gpu] = devices.read()
    assert devices.has_gpu and devices.note == "1 NVIDIA GPU(s), from NVML"
    assert (gpu.kind, gpu.name, gpu.utilization, gpu.power_watts, gpu.temperature_celsius) == (
        "gpu",
        "NVIDIA H200",
        0.75,
        350.0,
        61.0,
    )
    assert (gpu.memory_used_bytes, gpu.memory_total_bytes) == (40 * 2**30, 141 * 2**30)
    assert METRICS.device_utilization.labels("gpu", "0", "NVIDIA H200")._value.get() == 0.75


def test_without_nvml_the_cpu_is_reported_and_the_reason_said(tmp_path: Path) -> None:
    proc = _proc(tmp_path, busy=100, idle=300)
    devices = Devices(nvml=lambda: pynvml, proc=proc)  # the real package: its library is absent here
    if devices.has_gpu:
        pytest.skip("this machine has an NVIDIA GPU: NVML is present")
    assert devices.note.startswith("no GPU: NVML unavailable (") and devices.note.endswith("CPU figures from /proc")
    [first] = devices.read()
    assert (first.kind, first.utilization) == ("cpu", 0.0)  # no interval yet
    _proc(tmp_path, busy=400, idle=400)  # 300 of the next 400 jiffies busy
    [cpu] = devices.read()
    assert cpu.utilization == pytest.approx(0.75)
    assert (cpu.memory_total_bytes, cpu.memory_used_bytes) == (8_000_000 * 1024, 2_000_000 * 1024)


def test_the_package_missing_or_no_device_is_a_note_not_an_error(tmp_path: Path) -> None:
    def missing() -> Any:
        raise ImportError("No module named 'pynvml'")

    assert "nvidia-ml-py is not installed" in Devices(nvml=missing, proc=_proc(tmp_path, 1, 1)).note

    class NoDevice(_FakeNvml):
        def nvmlDeviceGetCount(self) -> int:
            return 0

    devices = Devices(nvml=NoDevice, proc=_proc(tmp_path, 1, 1))
    assert not devices.has_gpu and "NVML finds no device" in devices.note
    assert devices.read()[0].kind == "cpu"
