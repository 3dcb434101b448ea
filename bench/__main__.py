"""``python -m bench [foundation]`` — run benchmarks and write Markdown tables to bench/results/."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import time
from pathlib import Path

from bench import (
    _capacity,
    _dash,
    _datapath,
    _durability,
    _edge,
    _embedded,
    _foundation,
    _inference,
    _models,
    _scheduling,
    _streaming,
    _tls,
    _tracing,
    _userwork,
)
from bench._trust import trust_bench_root

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    suites = [
        "all",
        "datapath",
        "foundation",
        "scheduling",
        "durability",
        "tls",
        "streaming",
        "inference",
        "embedded",
        "models",
        "edge",
        "userwork",
        "dash",
        "capacity",
        "tracing",
    ]
    parser.add_argument("suite", nargs="?", default="all", choices=suites)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flood", type=int, default=20000)
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--streams", type=int, default=10_000, help="idle streams the edge suite opens")
    parser.add_argument("--rate", type=float, default=500.0, help="streams/s the edge suite opens")
    parser.add_argument("--holders", type=int, default=4, help="processes holding the edge suite's streams")
    parser.add_argument("--shapes", default="both", choices=["one", "many", "both"], help="edge: 1 task or N tasks")
    parser.add_argument("--profile", type=Path, default=None, help="edge: py-spy the gateway into this folder")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so every server a bench started (Triton included) is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    RESULTS.mkdir(exist_ok=True)
    trust_bench_root()  # meshes are secure by default: the bench trusts their root like a user's machine
    if args.suite in ("all", "datapath"):
        figures_text = asyncio.run(_datapath.run(callers=args.concurrency, sequential=args.sequential * 2))
        _write(
            "datapath",
            "The core data path vs Celery + Redis (both persistence modes) and the broker's ceilings",
            figures_text,
        )
    if args.suite in ("all", "foundation"):
        figures = asyncio.run(_foundation.run(args.sequential, args.concurrent, args.concurrency))
        _write(
            "foundation", "Foundation", _foundation.table(figures, args.sequential, args.concurrent, args.concurrency)
        )
    if args.suite in ("all", "durability"):
        _write("durability", "Durability: fsync always vs interval", asyncio.run(_durability.run(args.runs)))
    if args.suite in ("all", "tls"):
        _write("tls", "The cost of TLS: secure default vs --insecure", asyncio.run(_tls.run(args.runs)))
    if args.suite in ("all", "streaming"):
        _write("streaming", "Streaming gateway: fan-out and the Envoy hop", asyncio.run(_streaming.run(args.runs)))
    if args.suite in ("all", "inference"):
        _write(
            "inference",
            "Inference: Triton direct vs through tidemesh, batching, CPU",
            asyncio.run(_inference.run(args.runs)),
        )
    if args.suite in ("all", "embedded"):
        _write(
            "embedded",
            "The embedded model: bare engines, sentence-transformers and the mesh, side by side",
            asyncio.run(_embedded.run(args.runs)),
        )
    if args.suite in ("all", "models"):
        _write(
            "models",
            "Your own models: generic inference through tidemesh vs direct tritonclient",
            asyncio.run(_models.run(args.runs)),
        )
    if args.suite in ("all", "edge"):
        _write(
            "edge",
            "Edge load: idle streams through Envoy",
            asyncio.run(_edge.run(args.streams, args.rate, args.holders, args.profile, args.shapes)),
        )
    if args.suite in ("all", "userwork"):
        _write("userwork", "User work: the worker protocol vs a built-in kind", asyncio.run(_userwork.run()))
    if args.suite in ("all", "dash"):
        _write("dash", "The dashboard's own cost while it follows a busy mesh", asyncio.run(_dash.run()))
    if args.suite in ("all", "capacity"):
        title = "Capacity: a change's predicted queue wait vs the wait measured after applying it"
        _write("capacity", title, asyncio.run(_capacity.run()))
    if args.suite in ("all", "tracing"):
        _write(
            "tracing",
            "The cost of full tracing: spans exported over OTLP vs context only",
            asyncio.run(_tracing.run(args.runs)),
        )
    if args.suite in ("all", "scheduling"):
        _write("scheduling", "Scheduling vs Celery", asyncio.run(_scheduling.run(args.runs, flood=args.flood)))


def _write(name: str, title: str, body: str) -> None:
    header = (
        f"# {title} — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
        f"Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{_cores()} cores. These machines are noisy — compare ratios within one run.\n\n"
    )
    # Triton on a GPU (bench/gpu_check.sh) writes beside the CPU tables, not over them.
    suffix = f"-{os.environ['TIDEMESH_TRITON_CONFIG']}" if os.environ.get("TIDEMESH_TRITON_CONFIG") else ""
    (RESULTS / f"{name}{suffix}.md").write_text(header + body + "\n")
    print(header + body, flush=True)


def _cores() -> int:
    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
