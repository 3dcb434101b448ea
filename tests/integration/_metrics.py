"""Reading a mesh component's /metrics in tests: its families and samples (the Prometheus text
format), or its exemplars (OpenMetrics, as a Prometheus with exemplar storage asks for it)."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Mesh

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
COMPONENTS = ("scheduler", "inference", "worker-1", "gateway")


@dataclass(frozen=True)
class Scrape:
    """One component's /metrics: families (also those with no series yet) and their samples."""

    families: set[str]
    samples: list[tuple[str, dict[str, str], float]]

    def total(self, name: str, **labels: str) -> float:
        return sum(v for n, got, v in self.samples if n == name and labels.items() <= got.items())

    def values(self, name: str, label: str) -> set[str]:
        return {got[label] for n, got, _ in self.samples if n == name and label in got}


async def scrape(mesh: Mesh, component: str) -> Scrape:
    async with (
        aiohttp.ClientSession() as session,
        session.get(mesh.ops_url(component, "/metrics"), ssl=mesh.internal_ssl()) as response,
    ):
        assert response.status == 200
        text = await response.text()
    families, samples = set(), []
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        samples += [(s.name, dict(s.labels), s.value) for s in family.samples]
    return Scrape(families, samples)


async def exemplars(mesh: Mesh, component: str, name: str, **labels: str) -> list[dict[str, str]]:
    """The exemplars on `name`'s samples (OpenMetrics, as Prometheus asks with exemplar storage on)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            mesh.ops_url(component, "/metrics"), ssl=mesh.internal_ssl(), headers={"Accept": OPENMETRICS}
        ) as response,
    ):
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = await response.text()
    return [
        dict(sample.exemplar.labels)
        for family in openmetrics_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items() and sample.exemplar
    ]
