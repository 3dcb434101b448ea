"""The GPU check on a lent accelerator machine (see `bench/gpu_pack.py` for what travels there).

Runs with that machine's own python3 (its numpy, cupy, safetensors, tokenizers, nvidia-ml-py) plus
the carried wheels, and writes a markdown report:

- MiniLM on the GPU (cupy) at FP32 against the sentence-transformers reference vectors;
- the FP16 variant (FP16 GEMMs on the device) against FP32, within the variant's declared
  tolerance (`FP16_MIN_COSINE`) — the mixed-precision check of issue 15;
- each precision's throughput on the device (batches of 32), beside the CPU engines' on the same
  machine;
- the device telemetry path (`services.inference._devices.Devices`, NVML): utilization, memory,
  power and temperature read while the model runs.

Exit 1 if a vector check fails, 2 if there is no GPU (nothing measured). `--device cpu` runs the
same steps on the CPU (numpy engine) to check the script and the pack here.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gpu_pack import REFERENCE, unpack_model  # noqa: E402


def _min_cosine(a: npt.NDArray[np.floating[Any]], b: npt.NDArray[np.floating[Any]]) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)).min())


def _throughput(model: object, sentences: list[str], seconds: float, sync: object) -> float:
    batch = (sentences * (32 // len(sentences) + 1))[:32]
    model.encode(batch)  # type: ignore[attr-defined]  # warm (kernels compiled, weights resident)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.encode(batch)  # type: ignore[attr-defined]
        done += len(batch)
    sync()  # type: ignore[operator]
    return done / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description="GPU check on the lent machine")
    parser.add_argument("--pack", default=str(ROOT / ".gpu"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput figure")
    args = parser.parse_args()

    from services.inference._devices import Devices
    from services.inference._minilm import FP16_MIN_COSINE, MiniLM

    devices = Devices()
    devices.read()  # the first reading primes the CPU's utilization (a difference of two)
    if args.device.startswith("cuda") and not devices.has_gpu:
        print(f"gpu_device: no GPU here ({devices.note}); nothing to measure", file=sys.stderr)
        return 2
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    pairs = [(s, v) for s, v in zip(reference["sentences"], reference["vectors"], strict=True) if s.strip()]
    sentences, want = [s for s, _ in pairs], np.array([v for _, v in pairs])
    lines = [f"# GPU check on the lent machine — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    failed = False
    with tempfile.TemporaryDirectory(prefix="tidemesh-gpu-") as tmp:
        model_dir = unpack_model(Path(args.pack) / "minilm", Path(tmp) / "minilm")
        if args.device.startswith("cuda"):
            import cupy

            name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
            versions = f"cupy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}"

            def sync() -> None:
                cupy.cuda.Device().synchronize()
        else:
            name, versions = platform.processor() or platform.machine(), "numpy engine (a dry run of the script)"

            def sync() -> None:
                return None

        lines += [f"Device: {name} ({versions}); Python {platform.python_version()}, numpy {np.__version__}.", ""]
        fp32 = MiniLM.load(model_dir, device=args.device, engine="numpy")
        fp16 = MiniLM.load(model_dir, device=args.device, engine="numpy", precision="fp16")
        got32, got16 = fp32.encode(sentences), fp16.encode(sentences)
        vs_reference, fp16_vs_fp32 = _min_cosine(got32, want), _min_cosine(got16, got32)
        ok32, ok16 = vs_reference >= 0.9999, fp16_vs_fp32 >= FP16_MIN_COSINE
        failed = not (ok32 and ok16)
        lines += [
            "| check | min cosine | bound | verdict |",
            "|---|---|---|---|",
            f"| FP32 on the device vs sentence-transformers | {vs_reference:.6f} | 0.9999 | "
            f"{'pass' if ok32 else 'FAIL'} |",
            f"| FP16 variant vs FP32 on the device | {fp16_vs_fp32:.6f} | {FP16_MIN_COSINE} | "
            f"{'pass' if ok16 else 'FAIL'} |",
            "",
            "| precision | sentences/s (batches of 32) |",
            "|---|---|",
        ]
        figures: dict[str, float] = {}
        for label, model in (("fp32", fp32), ("fp16", fp16)):
            figures[label] = _throughput(model, sentences, args.seconds, sync)
            lines.append(f"| {label} on {args.device} | {figures[label]:.0f} |")
        cpu = MiniLM.load(model_dir, device="cpu")
        figures["cpu"] = _throughput(cpu, sentences, args.seconds, lambda: None)
        lines += [f"| fp32 on the CPU ({cpu.engine}) | {figures['cpu']:.0f} |", ""]
        readings = devices.read()
        lines += [
            f"Telemetry ({devices.note}), read after the runs:",
            "",
            "| device | utilization | memory used / total MiB | power W | temperature °C |",
            "|---|---|---|---|---|",
        ]
        for r in readings:
            lines.append(
                f"| {r.kind}{r.index} {r.name} | {r.utilization:.0%} | {r.memory_used_bytes >> 20} / "
                f"{r.memory_total_bytes >> 20} | {r.power_watts:.0f} | {r.temperature_celsius:.0f} |"
            )
    report = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ("gpu-device.md" if args.device.startswith("cuda") else "gpu-device-dry-run.md")).write_text(report)
    print(report)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
