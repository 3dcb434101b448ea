"""Retries on a real mesh: backoff shows in the events, budgets end in a dead letter, a standby
worker takes over a pool with no live worker."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from clients.sdk import Client
from mesh.supervisor import LocalAutoscaler, Supervisor, build_plan
from mesh.v1 import deadletter_pb2, task_pb2
from tests.conftest import eventually
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def flaky_endpoint(failures: int) -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP endpoint answering 503 `failures` times, then 200; records the idempotency keys."""
    keys: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        keys.append(request.headers.get("Idempotency-Key", ""))
        if len(keys) <= failures:
            return web.Response(status=503, text="try later")
        return web.Response(text="done")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/hook", keys
    finally:
        await runner.cleanup()


async def test_retries_show_attempts_and_backoff_then_succeed(mesh: Mesh) -> None:
    """Two 503s then 200: the stream shows RETRYING for attempts 1 and 2 with a retry_after, then
    SUCCEEDED on attempt 3; every attempt carried the same idempotency key."""
    async with flaky_endpoint(failures=2) as (url, keys), Client(mesh.endpoint, tenant="retry") as client:
        submitted = await client.submit("webhook", {"url": url, "body": "charge 10"})
        events = [e async for e in client.watch(submitted.task_id)]
    retrying = [e for e in events if e.state == task_pb2.TASK_STATE_RETRYING]
    assert [e.attempt for e in retrying] == [1, 2]
    assert all(e.retry_after.ToNanoseconds() > 0 and e.error.error_class == "dependency_down" for e in retrying)
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED and events[-1].attempt == 3
    assert events[-1].output.text == "done"
    assert keys == [f"{submitted.task_id}:call"] * 3


async def test_exhausted_retries_dead_letter_as_dependency_down(mesh: Mesh) -> None:
    """An endpoint that never recovers: after the kind's 6 attempts the task is dead-lettered,
    classified DEPENDENCY_DOWN with its runbook."""
    async with flaky_endpoint(failures=1000) as (url, keys), Client(mesh.endpoint, tenant="retry") as client:
        submitted = await client.submit("webhook", {"url": url, "body": "never"})
        events = [e async for e in client.watch(submitted.task_id)]
        letter = await client.dead_letter(submitted.task_id)
    assert events[-1].state == task_pb2.TASK_STATE_DEAD_LETTERED
    assert len(keys) == 6 and letter.attempts == 6
    assert letter.classification == deadletter_pb2.FAILURE_CLASS_DEPENDENCY_DOWN
    assert letter.runbook == "docs/runbooks/dependency-down.md"


async def test_standby_worker_takes_over_a_pool_with_no_live_worker(tmp_path: Path) -> None:
    """The only worker is gone and not coming back: the standby policy starts dedicated workers,
    and queued tasks complete."""
    plan = build_plan(tmp_path / "mesh", public_port=0, workers=1, scheduler_args=("--heartbeat-interval", "0.5"))
    bounds = {pool: (1, 1) for pool in ("ingestion", "orchestration", "inference", "post-processing")}
    async with (
        Supervisor(plan) as supervisor,
        LocalAutoscaler(supervisor, bounds) as autoscaler,
        Client(f"127.0.0.1:{plan.public_port}", tenant="standby") as client,
    ):
        await supervisor.remove("worker-1")  # a crash loop the supervisor gave up on, in effect
        submitted = await client.submit("echo", {"text": "still served"})

        async def standby_started() -> bool:
            return bool(autoscaler.extra_workers("ingestion"))

        await eventually(standby_started, timeout_s=30, what="a standby ingestion worker")
        events = [e async for e in client.watch(submitted.task_id)]
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED and events[-1].output.text == "still served"
