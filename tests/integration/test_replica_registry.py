"""The replicas client follows `tm_inference` on a real nats-server: a replica that registers is
called at its endpoint, with its residency and load; one that registers later joins."""

from __future__ import annotations

import grpc.aio
import nats.js.api as api
from nats.aio.client import Client as NATS

from mesh.replicas import InferenceReplicas
from mesh.v1 import status_pb2
from tests.conftest import eventually


async def test_registered_replicas_are_followed_with_their_residency_and_load(nc: NATS) -> None:
    js = nc.jetstream()
    kv = await js.create_key_value(api.KeyValueConfig(bucket="tm_inference_registry_test"))
    first = status_pb2.InferenceBackendStatus(
        instance="a",
        endpoint="127.0.0.1:1",
        backend="triton",
        models=["m1"],
        capacity=4,
        in_flight=3,
        latency_ms=20,
        circuit="closed",
    )
    await kv.put("a.triton", first.SerializeToString())
    replicas = InferenceReplicas([], grpc.aio.insecure_channel, kv)
    try:
        await replicas.follow_registry()

        async def followed() -> dict[str, object] | None:
            by_endpoint = {r.endpoint: r for r in replicas.replicas()}
            a = by_endpoint.get("127.0.0.1:1")
            return {"a": a} if a is not None and a.registered else None

        [a] = (await eventually(followed, timeout_s=5, what="the registered replica followed")).values()
        assert a.models == frozenset({"m1"}) and a.capacity == 4 and a.remote_in_flight == 3  # type: ignore[attr-defined]
        later = status_pb2.InferenceBackendStatus(
            instance="b", endpoint="127.0.0.1:2", backend="cpu", models=["m2"], capacity=1, circuit="closed"
        )
        await kv.put("b.cpu", later.SerializeToString())
        await kv.put("junk", b"\xff not a status")  # skipped, not fatal to the follower

        async def joined() -> bool:
            return any(r.endpoint == "127.0.0.1:2" and r.models == {"m2"} for r in replicas.replicas())

        await eventually(joined, timeout_s=5, what="a replica registering later joins")
        assert replicas._order("m2", set())[0].endpoint == "127.0.0.1:2"  # residency decides
    finally:
        await replicas.close()
        await js.delete_key_value("tm_inference_registry_test")
