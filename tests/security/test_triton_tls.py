"""Inference → Triton over mutual TLS in a secure mesh (`tidemesh up --triton`): embeds go
through Triton, and Triton answers nobody without a leaf of the mesh's root."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.sdk import Client
from mesh.supervisor import Supervisor, build_plan
from mesh.supervisor._triton import triton_available
from mesh.v1 import inference_pb2, inference_pb2_grpc, task_pb2
from tests.conftest import eventually, listening_ports
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    if not triton_available():
        pytest.fail("tritonserver is missing: `make venv` installs nvidia-pytriton")
    plan = build_plan(tmp_path_factory.mktemp("triton-tls"), public_port=0, workers=1, triton=True)
    async with Supervisor(plan, health_timeout_s=120) as supervisor:
        yield Mesh(plan, supervisor)


async def test_embeds_go_through_triton_over_mutual_tls(mesh: Mesh) -> None:
    """The inference service reaches Triton with its leaf: Triton registers its models and
    answers embeds (under load the router spreads them over Triton and the CPU model)."""
    async with mesh.internal_channel("inference", identity="worker") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)

        async def served_by_triton() -> bool:
            replies = await asyncio.gather(
                *(stub.Infer(inference_pb2.InferRequest(texts=[f"over mutual TLS {i}"]), timeout=30) for i in range(16))
            )
            return any(reply.backend == "triton" for reply in replies)

        await eventually(served_by_triton, timeout_s=90, what="an embed answered by Triton")
        listing = await stub.ListModels(inference_pb2.ListModelsRequest())
    triton = next(b for b in listing.backends if b.backend == "triton")
    assert triton.circuit == "closed" and triton.texts_served >= 1
    async with Client(mesh.endpoint, tenant="t") as client:  # and end to end, whichever backend serves it
        submitted = await client.submit("embed", {"text": "a task after Triton joined"})
        events = [event async for event in client.watch(submitted.task_id)]
    assert events[-1].state == task_pb2.TASK_STATE_SUCCEEDED


async def test_triton_answers_only_mesh_leaves_and_only_over_grpc(mesh: Mesh) -> None:
    """Plaintext and TLS without a client certificate fail the handshake; Triton's HTTP and
    metrics endpoints (no TLS there) are off: it listens on its gRPC port only."""
    target = f"127.0.0.1:{mesh.port('triton', 'grpc')}"
    for channel in (grpc.aio.insecure_channel(target), grpc.aio.secure_channel(target, grpc.ssl_channel_credentials())):
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    async with mesh.internal_channel("triton", identity="cli") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert mesh.supervisor is not None
    pid = mesh.supervisor.children["triton"].pid
    assert pid is not None and listening_ports(pid) == {mesh.port("triton", "grpc")}
    assert set(mesh.plan.by_name("triton").ports) == {"grpc"}
    assert "--grpc-use-ssl-mutual=true" in mesh.plan.by_name("triton").command
