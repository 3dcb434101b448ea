"""Traces leave the mesh: a real OTLP/gRPC receiver (the TraceService of opentelemetry-proto) gets
one whole trace for a task submitted through Envoy — the gateway, admission, the JetStream hop as
a producer and a consumer span, the worker's step, and the inference call — with the task's
attributes; a failing task's retries are kept whatever the sampling ratio."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry.proto.trace.v1 import trace_pb2

from bench._otlp import Received, receiving
from bench._serve import serving
from clients.sdk import Client
from mesh.oip import TensorData, TensorRequest
from mesh.security import Transport
from mesh.supervisor import Supervisor, build_plan
from mesh.supervisor._triton_server import TritonServer
from mesh.telemetry import context_of
from mesh.v1 import task_pb2
from services.inference._triton import TritonBackend
from tests.integration._metrics import exemplars
from tests.integration.conftest import Mesh

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "models"


def _chain(spans: list[Received], leaf: Received) -> list[str]:
    """Span names from `leaf` up to its root, following parent span ids."""
    by_id = {r.span.span_id: r for r in spans}
    names, current = [], leaf
    while True:
        names.append(f"{current.service}: {current.span.name}")
        parent = by_id.get(current.span.parent_span_id)
        if parent is None:
            return names
        current = parent


async def test_one_trace_per_task_crosses_every_hop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over OTLP/HTTP: Envoy, the gateway, admission, the JetStream hop, the step and the
    inference call, in one trace."""
    async with receiving(http=True) as (receiver, endpoint):
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")  # export every 0.2 s, not 5 s
        plan = build_plan(
            tmp_path / "mesh", public_port=0, workers=1, otlp_endpoint=endpoint, otlp_protocol="http/protobuf"
        )
        async with Supervisor(plan), Client(f"127.0.0.1:{plan.public_port}", tenant="traced") as client:
            events = [e async for e in client.run("embed", {"text": "a traced sentence"})]
            assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED
            task_id = events[-1].task_id

            def every_hop_arrived() -> bool:
                services = {r.service for r in receiver.of_task(task_id)}
                return {"inference", "envoy"} <= services

            await receiver.until(every_hop_arrived)
            # The histograms' exemplars lead to spans the receiver holds: the step's own, the model call's.
            mesh = Mesh(plan)
            step = await exemplars(mesh, "worker-1", "tidemesh_step_duration_seconds_bucket", kind="embed")
            infer = await exemplars(mesh, "inference", "tidemesh_inference_duration_seconds_bucket")
            batch = [r.task_id for r in await client.submit_many([client.spec("echo", {"text": t}) for t in "ab"])]
            [e async for e in client.watch_many(batch)]

            def batch_steps_arrived() -> bool:
                return all(any(r.span.name == "step echo" for r in receiver.of_task(t)) for t in batch)

            await receiver.until(batch_steps_arrived)
        # A batch call: one trace per task, each admission linked to the call that brought it.
        traces = [{r.span.trace_id for r in receiver.of_task(t)} for t in batch]
        assert all(len(t) == 1 for t in traces) and traces[0] != traces[1], traces
        call = next(r for r in receiver.spans if r.span.name == "/mesh.v1.GatewayService/SubmitTasks")
        for t in batch:
            admit = next(r for r in receiver.of_task(t) if r.span.name == "admit echo")
            assert [link.trace_id for link in admit.span.links] == [call.span.trace_id]
        spans = receiver.of_task(task_id)
        assert len({r.span.trace_id for r in spans}) == 1, "one trace for the task"
        held = {(r.span.trace_id.hex(), r.span.span_id.hex()): r for r in spans}
        assert held[step[-1]["trace_id"], step[-1]["span_id"]].span.name == "step embed", step
        assert held[infer[-1]["trace_id"], infer[-1]["span_id"]].service == "inference", infer
        leaf = next(r for r in spans if r.service == "inference" and r.span.kind == trace_pb2.Span.SPAN_KIND_SERVER)
        chain = _chain(spans, leaf)
        assert chain[:2] == ["inference: /mesh.v1.InferenceService/Infer", "worker: /mesh.v1.InferenceService/Infer"]
        assert chain[2:5] == ["worker: step embed", "worker: process TM_WORK", "scheduler: publish TM_WORK"]
        assert chain[5] == "scheduler: admit embed"
        assert chain[-2] == "gateway: /mesh.v1.GatewayService/RunTask", chain
        assert chain[-1].startswith("envoy: "), chain  # the front door's own span, the trace's root
        by_name = {r.span.name: r for r in spans}
        # the batcher's model call runs in the trace of its batch's first request
        assert by_name["embed batch all-minilm-l6-v2"].span.parent_span_id == leaf.span.span_id
        consumer, producer = by_name["process TM_WORK"], by_name["publish TM_WORK"]
        assert consumer.span.kind == trace_pb2.Span.SPAN_KIND_CONSUMER
        assert producer.span.kind == trace_pb2.Span.SPAN_KIND_PRODUCER
        assert [link.span_id for link in consumer.span.links] == [producer.span.span_id]  # the message's link
        assert producer.attributes["messaging.system"] == "nats"
        assert str(producer.attributes["messaging.destination.name"]).startswith("tm.work.inference.standard.")
        attrs = by_name["step embed"].attributes
        assert attrs["tidemesh.task.id"] == task_id and attrs["tidemesh.tenant"] == "traced"
        where = (attrs["tidemesh.kind"], attrs["tidemesh.step"], attrs["tidemesh.pool"])
        assert where == ("embed", "embed", "inference")
        assert (attrs["tidemesh.priority_class"], attrs["tidemesh.attempt"]) == ("standard", 1)


@contextlib.asynccontextmanager
async def _flaky_endpoint() -> AsyncIterator[str]:
    """503 the first time (a retry), 400 after (a refusal: the task is dead-lettered)."""
    answered = 0

    async def answer(_: web.Request) -> web.Response:
        nonlocal answered
        answered += 1
        return web.Response(status=503 if answered == 1 else 400, text="no")

    app = web.Application()
    app.router.add_post("/hook", answer)
    async with serving(app) as base:
        yield f"{base}/hook"


async def test_a_failing_task_is_kept_when_the_ratio_drops_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Head sampling at 0: no span of a healthy task leaves, but a task whose webhook fails is
    recorded attempt by attempt — its retry and its dead letter — in the task's own trace."""
    async with receiving() as (receiver, endpoint), _flaky_endpoint() as hook:
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
        plan = build_plan(tmp_path / "mesh", public_port=0, workers=1, otlp_endpoint=endpoint, trace_sampling_ratio=0)
        async with Supervisor(plan), Client(f"127.0.0.1:{plan.public_port}", tenant="traced") as client:
            healthy = [e async for e in client.run("echo", {"text": "fine"})][-1]
            failing = [e async for e in client.run("webhook", {"url": hook, "body": "x"})]
            assert failing[-1].state == task_pb2.TASK_STATE_DEAD_LETTERED
            task_id = failing[-1].task_id
            letter = await client.dead_letter(task_id)

            def dead_letter_span() -> bool:
                return any(r.span.name == "dead-letter call" for r in receiver.of_task(task_id))

            await receiver.until(dead_letter_span)
        kept = receiver.of_task(task_id)
        assert sorted(r.span.name for r in kept) == ["dead-letter call", "retry call"]
        assert {r.span.trace_id.hex() for r in kept} == {letter.trace_id}  # the dead letter names this trace
        classes = {r.span.name: r.attributes["tidemesh.error.class"] for r in kept}
        assert classes == {"retry call": "dependency_down", "dead-letter call": "invalid_input"}
        for r in kept:
            assert r.attributes["tidemesh.keep"] is True
            assert r.span.status.code == trace_pb2.Status.STATUS_CODE_ERROR
        assert sorted(int(r.attributes["tidemesh.attempt"]) for r in kept) == [1, 2]  # type: ignore[call-overload]
        assert receiver.of_task(healthy.task_id) == [], "a healthy task at ratio 0 sends nothing"


async def test_triton_continues_the_trace_of_a_model_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Triton in OpenTelemetry mode (OTLP/HTTP, which its exporter sends as JSON): a model call the
    inference service's Triton backend makes in a trace comes back as Triton's request span, a
    child of the caller's span in the same trace."""
    # This process records no spans of its own: the context-only interceptors carry the caller's
    # traceparent (whatever an earlier test in this process configured).
    monkeypatch.setattr("mesh.telemetry._tracing._full", False)
    async with receiving(http=True) as (receiver, endpoint):
        server = TritonServer(tmp_path, model_repositories=[EXAMPLES], traces_url=f"{endpoint}/v1/traces")
        async with server:
            assert server.pki is not None
            backend = TritonBackend(server.address, transport=Transport.of(server.pki, "inference"))
            try:
                await backend.refresh()
                trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
                token = otel_context.attach(context_of(f"00-{trace_id}-{span_id}-01"))
                try:
                    request = TensorRequest([TensorData.of("X", "FP32", np.ones((1, 1), np.float32))], [])
                    (y,) = await backend.infer("scaler", request, rank=1)
                finally:
                    otel_context.detach(token)
                assert y.array().tolist() == [[3.0]]
                await receiver.until(lambda: any(r.span.name == "InferRequest" for r in receiver.spans))
            finally:
                await backend.close()
        (request_span,) = [r for r in receiver.spans if r.span.name == "InferRequest"]
        assert request_span.service == "triton"
        assert (request_span.span.trace_id.hex(), request_span.span.parent_span_id.hex()) == (trace_id, span_id)
        assert {r.span.name for r in receiver.spans} >= {"InferRequest", "scaler"}  # its model's span within
