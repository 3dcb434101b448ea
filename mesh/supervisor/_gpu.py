"""GPU-memory caps: what a worker process and its children hold on NVIDIA GPUs, from NVML.

NVML (`nvidia-ml-py`, the seam the inference service's `Devices` uses too: a loader returning the
``pynvml`` module, faked in tests) lists each device's compute processes with the memory each one
holds (``nvmlDeviceGetComputeRunningProcesses``: allocations and the CUDA context). `Child.watch`
sums it over a worker's process tree beside its RSS; past the cap the worker is killed and restarted
(``gpu_memory_cap``), as with the memory cap.

What is and is not held (see docs/runbooks/restarts.md):

- enforced: the sum over every device of what NVML attributes to the worker's pid and its
  descendants' — read every quarter second, so a burst between two reads can pass unseen;
- not seen: processes in another pid namespace than the supervisor's (NVML reports host pids), and
  memory NVML does not report per process (some vGPU and MIG setups: ``usedGpuMemory`` unknown);
- handed to frameworks, as a limit they apply themselves (`framework_env`): CuPy
  (``CUPY_GPU_MEMORY_LIMIT``, bytes per device) and JAX (``XLA_CLIENT_MEM_FRACTION`` and its old name
  ``XLA_PYTHON_CLIENT_MEM_FRACTION``, a fraction of a device's memory), both below the cap by a
  headroom for the CUDA context, so the framework raises out-of-memory in the step before the
  supervisor has to kill the worker. PyTorch and TensorFlow take no such variable (their limits are
  API calls: ``torch.cuda.set_per_process_memory_fraction``,
  ``tf.config.set_logical_device_configuration``); a handler reads ``TIDEMESH_GPU_MEMORY_CAP_MB``
  to call them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

from mesh.telemetry import get_logger

log = get_logger(__name__)

MIB = 1 << 20
CAP_ENV = "TIDEMESH_GPU_MEMORY_CAP_MB"


def _load_nvml() -> Any:
    import pynvml

    return pynvml


class GpuMemory:
    """Per-process GPU memory from NVML. Without a GPU (`available` False) `note` says why."""

    def __init__(self, nvml: Callable[[], Any] = _load_nvml) -> None:
        self._nvml: Any = None
        self._count = 0
        try:
            module = nvml()
            module.nvmlInit()
            self._count = int(module.nvmlDeviceGetCount())
        except ImportError:
            self.note = "NOT ENFORCED: nvidia-ml-py is not installed, so NVML cannot be read"
        except Exception as exc:
            if type(exc).__name__ == "NVMLError_LibraryNotFound":  # no NVIDIA driver on this host
                self.note = "nothing to enforce: no NVIDIA GPU (NVML's library is absent: no driver)"
            else:
                self.note = f"NOT ENFORCED: NVML unavailable ({exc or type(exc).__name__})"
        else:
            if self._count:
                self._nvml = module
                self.note = f"NVML, per process tree, on {self._count} NVIDIA GPU(s)"
            else:
                self.note = "nothing to enforce: no NVIDIA GPU (NVML finds no device)"
                with contextlib.suppress(Exception):
                    module.nvmlShutdown()

    @property
    def available(self) -> bool:
        return self._nvml is not None

    def used_bytes(self, pids: Collection[int]) -> int:
        """GPU memory the processes `pids` hold, summed over every device (0 without a GPU)."""
        nvml, total = self._nvml, 0
        if nvml is None:
            return 0
        for index in range(self._count):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            for process in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                used = getattr(process, "usedGpuMemory", None)
                if process.pid in pids and isinstance(used, int):  # None: NVML cannot say (vGPU, MIG)
                    total += used
        return total

    def smallest_device_bytes(self) -> int:
        """The memory of the smallest device (0 without a GPU)."""
        nvml = self._nvml
        if nvml is None:
            return 0
        return min(
            int(nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(i)).total) for i in range(self._count)
        )

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None


def framework_hint_bytes(cap_mb: int) -> int:
    """What a framework is told it may allocate: the cap less a headroom for the CUDA context
    (which NVML counts against the process; a few hundred MiB), a quarter of the cap at most."""
    return (cap_mb - min(1024, cap_mb // 4)) * MIB


def framework_env(cap_mb: int, device_bytes: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that hand a GPU-memory cap of `cap_mb` to the frameworks that read one (see the
    module's doc); a variable already set in `environ` is left as the operator set it. JAX's
    fraction needs the device's memory (`device_bytes`; 0: not set)."""
    hint = framework_hint_bytes(cap_mb)
    out = {CAP_ENV: str(cap_mb), "CUPY_GPU_MEMORY_LIMIT": str(hint)}
    if device_bytes > 0:
        fraction = f"{min(hint / device_bytes, 1.0):.6f}"
        out |= {"XLA_CLIENT_MEM_FRACTION": fraction, "XLA_PYTHON_CLIENT_MEM_FRACTION": fraction}
    return {key: value for key, value in out.items() if key not in environ}
