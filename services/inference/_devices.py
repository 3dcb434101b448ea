"""The devices an inference service runs on, read every few seconds: utilization, memory used
and total, power and temperature per GPU from NVML (`nvidia-ml-py`); without a GPU (NVML's
library absent, no device, or a driver error) the same path reports the host's CPU — utilization
and memory from /proc — and says why there is no GPU. NVML missing is a fact to report, never
an error. The readings go to the registry (`tidemesh status`, the schedulers' placement) and to
Prometheus.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.telemetry import METRICS, get_logger
from mesh.v1 import status_pb2

log = get_logger(__name__)


@dataclass(frozen=True)
class Reading:
    kind: str  # "gpu" or "cpu"
    index: int
    name: str
    utilization: float  # 0..1
    memory_used_bytes: int
    memory_total_bytes: int
    power_watts: float = 0.0
    temperature_celsius: float = 0.0

    def to_proto(self) -> status_pb2.DeviceStatus:
        return status_pb2.DeviceStatus(
            kind=self.kind,
            index=self.index,
            name=self.name,
            utilization=self.utilization,
            memory_used_bytes=self.memory_used_bytes,
            memory_total_bytes=self.memory_total_bytes,
            power_watts=self.power_watts,
            temperature_celsius=self.temperature_celsius,
        )


def _load_nvml() -> Any:
    import pynvml

    return pynvml


class Devices:
    """`read()` the devices now; `note` says where the figures come from (and why no GPU)."""

    def __init__(self, nvml: Callable[[], Any] = _load_nvml, proc: Path = Path("/proc")) -> None:
        self._proc = proc
        self._cpu_before: tuple[int, int] | None = None
        self._nvml: Any = None
        self._gpus = 0
        reason = ""
        try:
            module = nvml()
            module.nvmlInit()
            self._gpus = int(module.nvmlDeviceGetCount())
        except ImportError:
            reason = "nvidia-ml-py is not installed"
        except Exception as exc:
            reason = f"NVML unavailable ({exc or type(exc).__name__})"
        else:
            reason = "" if self._gpus else "NVML finds no device"
            self._nvml = module if self._gpus else None
        self.note = (
            f"{self._gpus} NVIDIA GPU(s), from NVML" if self._nvml else f"no GPU: {reason}; CPU figures from /proc"
        )
        log.info("devices", extra={"note": self.note})

    @property
    def has_gpu(self) -> bool:
        return self._nvml is not None

    def read(self) -> list[Reading]:
        readings = self._gpu_readings() if self._nvml is not None else [self._cpu_reading()]
        for r in readings:
            labels = (r.kind, str(r.index), r.name)
            METRICS.device_utilization.labels(*labels).set(r.utilization)
            METRICS.device_memory_used.labels(*labels).set(r.memory_used_bytes)
            METRICS.device_memory_total.labels(*labels).set(r.memory_total_bytes)
            METRICS.device_power.labels(*labels).set(r.power_watts)
            METRICS.device_temperature.labels(*labels).set(r.temperature_celsius)
        return readings

    def _gpu_readings(self) -> list[Reading]:
        nvml, out = self._nvml, []
        for index in range(self._gpus):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            utilization = nvml.nvmlDeviceGetUtilizationRates(handle)
            out.append(
                Reading(
                    kind="gpu",
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    utilization=float(utilization.gpu) / 100,
                    memory_used_bytes=int(memory.used),
                    memory_total_bytes=int(memory.total),
                    power_watts=_or_zero(nvml.nvmlDeviceGetPowerUsage, handle) / 1000,
                    temperature_celsius=_or_zero(nvml.nvmlDeviceGetTemperature, handle, 0),
                )
            )
        return out

    def _cpu_reading(self) -> Reading:
        busy, total = _cpu_ticks(self._proc / "stat")
        before, self._cpu_before = self._cpu_before, (busy, total)
        utilization = 0.0
        if before is not None and total > before[1]:
            utilization = (busy - before[0]) / (total - before[1])
        memory = _meminfo(self._proc / "meminfo")
        total_bytes = memory.get("MemTotal", 0)
        used = total_bytes - memory.get("MemAvailable", total_bytes)
        return Reading("cpu", 0, f"{os.cpu_count() or 1} CPU cores", utilization, used, total_bytes)


def _or_zero(read: Callable[..., float], *args: Any) -> float:
    try:
        return float(read(*args))
    except Exception:
        return 0.0


def _cpu_ticks(stat: Path) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _meminfo(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if parts:
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out
