"""``python -m bench [foundation]`` — run benchmarks and write Markdown tables to bench/results/."""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from pathlib import Path

from bench import _foundation

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("suite", nargs="?", default="foundation", choices=["foundation"])
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    figures = asyncio.run(_foundation.run(args.sequential, args.concurrent, args.concurrency))
    body = _foundation.table(figures, args.sequential, args.concurrent, args.concurrency)
    header = (
        f"# Foundation — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
        f"Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{_cores()} cores. One run; these machines are noisy — compare ratios within one run.\n\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "foundation.md").write_text(header + body + "\n")
    print(header + body)


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
