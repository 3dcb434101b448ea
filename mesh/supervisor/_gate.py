"""The health gate of an apply: after a change rolls out, the mesh is watched for a bake period and
the change is rolled back if it degrades — a process unhealthy or restarting, the step error rate
up, or the queue wait past its class's bound where it was within it before.

The figures are the workers' own metrics (``/metrics`` on their ops port, read with the
supervisor's leaf): failed step attempts over all attempts (``tidemesh_step_errors_total`` over
``tidemesh_step_duration_seconds_count``) and the queue wait histogram per class
(``tidemesh_queue_wait_seconds``). A baseline is read before the rollout; during the bake only what
happened since it counts (a restarted worker's counters start again from zero). `judge` is pure.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from mesh.supervisor._security import MeshSecurity


@dataclass(frozen=True)
class GateLimits:
    max_error_ratio: float = 0.2  # failed attempts over attempts during the bake
    min_failures: int = 5  # fewer failures than this never trip it (one flaky call is not a trend)
    wait_bounds_s: Mapping[str, float] = field(
        default_factory=lambda: {"interactive": 0.25, "standard": 5.0, "batch": 60.0}
    )
    min_waits: int = 20  # items a class must have waited in the bake before its p95 counts


@dataclass
class Sample:
    """One worker's counters at one moment (by process: pid tells a restart)."""

    pid: int | None
    attempts: float = 0.0
    failures: float = 0.0
    waits: dict[str, dict[float, float]] = field(default_factory=dict)  # class -> le -> cumulative count


def parse(text: str, pid: int | None) -> Sample:
    sample = Sample(pid)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "tidemesh_step_duration_seconds_count":
                sample.attempts += s.value
            elif s.name == "tidemesh_step_errors_total":
                sample.failures += s.value
            elif s.name == "tidemesh_queue_wait_seconds_bucket":
                klass = s.labels.get("priority_class", "")
                le = math.inf if s.labels["le"] in ("+Inf", "inf") else float(s.labels["le"])
                buckets = sample.waits.setdefault(klass, {})
                buckets[le] = buckets.get(le, 0.0) + s.value
    return sample


def _since(before: Sample | None, now: Sample) -> Sample:
    """What `now` counted after `before` (all of it when the process is another one)."""
    if before is None or before.pid != now.pid:
        return now
    waits = {
        k: {le: n - before.waits.get(k, {}).get(le, 0.0) for le, n in buckets.items()}
        for k, buckets in now.waits.items()
    }
    return Sample(now.pid, now.attempts - before.attempts, now.failures - before.failures, waits)


def _p95(buckets: Mapping[float, float]) -> tuple[float, float]:
    """(p95 upper bound, count) of a cumulative histogram."""
    if not buckets:
        return 0.0, 0.0
    ordered = sorted(buckets.items())
    total = ordered[-1][1]
    if total <= 0:
        return 0.0, 0.0
    for le, count in ordered:
        if count >= 0.95 * total:
            return le, total
    return math.inf, total


def _sum(samples: Iterable[Sample]) -> Sample:
    total = Sample(None)
    for s in samples:
        total.attempts += s.attempts
        total.failures += s.failures
        for k, buckets in s.waits.items():
            mine = total.waits.setdefault(k, {})
            for le, n in buckets.items():
                mine[le] = mine.get(le, 0.0) + n
    return total


def judge(
    baseline: Mapping[str, Sample], start: Mapping[str, Sample], now: Mapping[str, Sample], limits: GateLimits
) -> str | None:
    """Why the mesh has degraded since `start` (the bake's beginning), against what it did up to
    `baseline` (before the change); None while it has not."""
    bake = _sum(_since(start.get(name), sample) for name, sample in now.items())
    before = _sum(baseline.values())
    if bake.failures >= limits.min_failures and bake.attempts > 0:
        ratio = bake.failures / bake.attempts
        was = before.failures / before.attempts if before.attempts else 0.0
        if ratio > limits.max_error_ratio and ratio > 2 * was:
            return (
                f"error rate: {bake.failures:.0f} of {bake.attempts:.0f} step attempts failed in the bake "
                f"({ratio:.0%}; before the change {was:.0%})"
            )
    for klass, bound in limits.wait_bounds_s.items():
        p95, count = _p95(bake.waits.get(klass, {}))
        was_p95, was_count = _p95(before.waits.get(klass, {}))
        if count >= limits.min_waits and p95 > bound and (was_count == 0 or was_p95 <= bound):
            return (
                f"queue wait: {klass} p95 ≤ {p95:g} s in the bake, past its bound {bound:g} s (before: {was_p95:g} s)"
            )
    return None


class Scraper:
    """Reads the workers' metrics with the supervisor's identity."""

    def __init__(self, state_dir: Path, secure: bool) -> None:
        self._context: ssl.SSLContext | None = (
            MeshSecurity(state_dir).transport("supervisor").client_ssl_context() if secure else None
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Scraper:
        connector = aiohttp.TCPConnector(ssl=self._context or False)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=3))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def sample(self, workers: Mapping[str, tuple[str, int | None]]) -> dict[str, Sample]:
        """`workers`: name -> (its health URL, its pid). Those that do not answer are left out."""
        assert self._session is not None

        async def one(name: str, url: str, pid: int | None) -> tuple[str, Sample | None]:
            parts = urlsplit(url)
            try:
                async with self._session.get(f"{parts.scheme}://{parts.netloc}/metrics") as reply:  # type: ignore[union-attr]
                    return name, parse(await reply.text(), pid) if reply.status == 200 else None
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return name, None

        found = await asyncio.gather(*(one(n, url, pid) for n, (url, pid) in workers.items()))
        return {name: sample for name, sample in found if sample is not None}
