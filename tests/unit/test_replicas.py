"""Inference replicas behind one stub: calls placed by residency and load, moved off a replica
that fails without waiting on it, a stream moved only before its first message. Two in-process
gRPC servers stand in for inference services (each answers with its own name)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from mesh.replicas import InferenceReplicas
from mesh.v1 import inference_pb2, inference_pb2_grpc, status_pb2


class _Service(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.saturated = False

    async def Infer(
        self, request: inference_pb2.InferRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.InferResponse:
        self.calls += 1
        if self.saturated:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "saturated")
        return inference_pb2.InferResponse(model=request.model, backend=self.name)

    async def ModelStreamInfer(
        self, request: inference_pb2.ModelStreamInferRequest, context: object
    ) -> AsyncIterator[inference_pb2.ModelStreamInferResponse]:
        self.calls += 1
        for _ in range(2):
            yield inference_pb2.ModelStreamInferResponse(
                infer_response=inference_pb2.ModelInferResponse(backend=self.name)
            )
        yield inference_pb2.ModelStreamInferResponse(final=True)


async def _server(name: str) -> tuple[grpc.aio.Server, _Service, str]:
    server = grpc.aio.server()
    service = _Service(name)
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, service, f"127.0.0.1:{port}"


def _status(
    endpoint: str, models: list[str], in_flight: int = 0, waiting: int = 0, loadable: tuple[str, ...] = ()
) -> status_pb2.InferenceBackendStatus:
    return status_pb2.InferenceBackendStatus(
        endpoint=endpoint,
        backend="cpu",
        models=models,
        loadable_models=loadable,
        capacity=2,
        in_flight=in_flight,
        waiting=waiting,
        latency_ms=10,
        circuit="closed",
    )


@pytest.fixture
async def two() -> AsyncIterator[tuple[InferenceReplicas, list[tuple[grpc.aio.Server, _Service, str]]]]:
    servers = [await _server("a"), await _server("b")]
    replicas = InferenceReplicas([s[2] for s in servers], grpc.aio.insecure_channel, rest_s=30)
    try:
        yield replicas, servers
    finally:
        await replicas.close()
        for server, _, _ in servers:
            await server.stop(None)


def _follow(replicas: InferenceReplicas, *entries: status_pb2.InferenceBackendStatus) -> None:
    by_endpoint = {r.endpoint: r for r in replicas.replicas()}
    for entry in entries:
        by_endpoint[entry.endpoint].follow(entry)


async def test_a_call_goes_to_the_replica_that_holds_its_model(two) -> None:  # type: ignore[no-untyped-def]
    replicas, ((_, _, a), (_, _, b)) = two
    _follow(replicas, _status(a, ["m1"]), _status(b, ["m2"]))
    for model, expected in (("m2", "b"), ("m1", "a"), ("m2", "b")):
        reply = await replicas.Infer(inference_pb2.InferRequest(model=model), timeout=5)
        assert reply.backend == expected


async def test_between_holders_the_less_loaded_replica_is_chosen(two) -> None:  # type: ignore[no-untyped-def]
    replicas, ((_, _, a), (_, _, b)) = two
    _follow(replicas, _status(a, ["m"], in_flight=6), _status(b, ["m"], in_flight=0))
    assert (await replicas.Infer(inference_pb2.InferRequest(model="m"), timeout=5)).backend == "b"
    _follow(replicas, _status(a, ["m"], in_flight=0), _status(b, ["m"], in_flight=6))
    assert (await replicas.Infer(inference_pb2.InferRequest(model="m"), timeout=5)).backend == "a"


async def test_queued_calls_count_and_a_model_none_holds_goes_where_it_can_be_loaded(two) -> None:  # type: ignore[no-untyped-def]
    """A replica's queue depth counts as load; for a model no replica holds, the one whose
    backends could load it (its devices fit) is chosen over one that could not, however idle."""
    replicas, ((_, _, a), (_, _, b)) = two
    _follow(replicas, _status(a, ["m"], in_flight=2, waiting=8), _status(b, ["m"], in_flight=2, waiting=0))
    assert (await replicas.Infer(inference_pb2.InferRequest(model="m"), timeout=5)).backend == "b"
    _follow(replicas, _status(a, ["m"], loadable=("gpu-only",)), _status(b, ["m"], in_flight=0))
    _follow(replicas, _status(a, ["m"], in_flight=6, loadable=("gpu-only",)))
    assert (await replicas.Infer(inference_pb2.InferRequest(model="gpu-only"), timeout=5)).backend == "a"


async def test_a_saturated_replica_is_passed_over_for_the_call_but_not_rested(two) -> None:  # type: ignore[no-untyped-def]
    replicas, ((_, service_a, a), (_, service_b, b)) = two
    _follow(replicas, _status(a, ["m"]), _status(b, ["m"], in_flight=6))  # a is preferred ...
    service_a.saturated = True  # ... and refuses: its queue is past its bound
    assert (await replicas.Infer(inference_pb2.InferRequest(model="m"), timeout=5)).backend == "b"
    service_a.saturated = False
    assert (await replicas.Infer(inference_pb2.InferRequest(model="m"), timeout=5)).backend == "a"  # not rested
    service_a.saturated = service_b.saturated = True
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # every one saturated: the caller's answer
        await replicas.Infer(inference_pb2.InferRequest(model="m"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_replica_that_goes_away_is_passed_over_at_once_and_rested(two) -> None:  # type: ignore[no-untyped-def]
    replicas, ((server_a, _, a), (_, service_b, b)) = two
    _follow(replicas, _status(a, ["m"]), _status(b, ["m"], in_flight=6))  # a is preferred...
    await server_a.stop(None)  # ... and gone
    reply = await replicas.Infer(inference_pb2.InferRequest(model="m"), timeout=5, wait_for_ready=True)
    assert reply.backend == "b"
    assert (await replicas.Infer(inference_pb2.InferRequest(model="m"), timeout=5)).backend == "b"
    assert service_b.calls == 2  # the second went straight to b: a is resting
    messages = [m async for m in replicas.ModelStreamInfer(inference_pb2.ModelStreamInferRequest(), timeout=5)]
    assert [m.infer_response.backend for m in messages if not m.final] == ["b", "b"]


async def test_with_every_replica_gone_the_failure_is_the_callers(two) -> None:  # type: ignore[no-untyped-def]
    replicas, servers = two
    for server, _, _ in servers:
        await server.stop(None)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await replicas.Infer(inference_pb2.InferRequest(model="m"), timeout=2)
    assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
