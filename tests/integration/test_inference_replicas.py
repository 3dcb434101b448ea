"""Many inference replicas in one mesh (`tidemesh up --inference 2`): each registers its own
endpoint, workers spread calls over them by load, and when one goes away for good its share
moves to the other without a task failing or waiting for it to return — for the workers' tasks
and for the gateway's relay of synchronous calls alike."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clients.sdk import Client
from mesh.supervisor import Supervisor, build_plan
from mesh.v1 import task_pb2
from tests.conftest import eventually

pytestmark = pytest.mark.integration


async def _embed_all(client: Client, count: int, salt: str) -> list[task_pb2.TaskEvent]:
    specs = [client.spec("embed", {"text": f"{salt} tide report {i}"}) for i in range(count)]
    ids = [r.task_id for r in await client.submit_many(specs)]
    return [event async for event in client.watch_many(ids)]


async def test_workers_spread_calls_over_replicas_and_move_off_one_that_dies(tmp_path: Path) -> None:
    plan = build_plan(tmp_path / "mesh", public_port=0, inference_replicas=2)
    async with Supervisor(plan, health_timeout_s=60) as supervisor, Client(f"127.0.0.1:{plan.public_port}") as client:
        replicas = {name: supervisor.children[name].spec.address for name in ("inference", "inference-2")}

        async def both_registered() -> set[str] | None:
            endpoints = {b.endpoint for b in (await client.status()).inference_backends}
            return endpoints if endpoints == set(replicas.values()) else None

        await eventually(both_registered, timeout_s=30, what="both replicas registered with their endpoints")
        finals = await _embed_all(client, 80, "spread")
        assert len(finals) == 80 and {e.state for e in finals} == {task_pb2.TASK_STATE_SUCCEEDED}

        async def both_served() -> dict[str, int] | None:
            served = {b.endpoint: b.texts_served for b in (await client.status()).inference_backends}
            counted = sum(served.values()) >= 80  # the registry lags the calls by up to a second
            return served if counted and all(served.get(e, 0) > 0 for e in replicas.values()) else None

        await eventually(both_served, timeout_s=10, what="every text counted, both replicas with a share")

        # The second replica goes away for good (not restarted): its share moves to the first.
        supervisor.children["inference-2"].kill_now()
        started = time.monotonic()
        finals = await _embed_all(client, 40, "after")
        elapsed = time.monotonic() - started
        assert len(finals) == 40 and {e.state for e in finals} == {task_pb2.TASK_STATE_SUCCEEDED}
        assert max(e.attempt for e in finals) == 1  # moved within the attempt, not retried
        assert elapsed < 30, f"{elapsed:.1f} s: calls waited on the dead replica"
        # the front door's relay moves off it too: synchronous calls through Envoy keep answering
        for index in range(6):
            outputs = await client.models.infer("all-minilm-l6-v2", {"TEXT": [[f"front door {index}".encode()]]})
            assert outputs["EMBEDDING"].shape == (1, 384)
        assert {m.backend for m in await client.models.list()} == {"cpu"}
