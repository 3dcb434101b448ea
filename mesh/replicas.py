"""Many inference replicas behind one stub: each call goes to the replica that holds its model
with the shortest expected wait, and moves off a replica that fails.

Every inference service registers its backends in the `tm_inference` bucket — with its own
endpoint, the models resident, capacity, calls in flight and recent latency — and this client
follows the bucket (plus the endpoints it was started with, so it works before the first
registration arrives). A call's replica: one that holds the model (else one that could load it
on demand, on devices that fit it; else any), least ``(in flight and queued there + here + 1) /
capacity x latency``. A replica that answers UNAVAILABLE (or whose channel is failing) is rested
for `rest_s` and the call tried on the next, one that answers RESOURCE_EXHAUSTED (saturated) is
passed over for this call only; only the last candidate is waited for (`wait_for_ready`), so a
dead replica never holds a task while a live one could answer. A stream moves only before its first message —
after that it has answered in part, and the step's own retry takes over.

Workers' steps and the gateway's relay call it exactly as they call the generated stub.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from mesh.fabric import INFERENCE_BUCKET
from mesh.lifecycle import Lifecycle
from mesh.rpc import channel
from mesh.security import Transport
from mesh.telemetry import get_logger
from mesh.v1 import inference_pb2, inference_pb2_grpc, status_pb2

log = get_logger(__name__)

_MOVE_ON = {grpc.StatusCode.UNAVAILABLE}
# A saturated replica (its queue past its bound) is not failing: the call tries the next one
# without resting it; the last one's refusal (with its retry-after) is the caller's answer.
_SATURATED = {grpc.StatusCode.RESOURCE_EXHAUSTED}


@dataclass
class Replica:
    endpoint: str
    stub: inference_pb2_grpc.InferenceServiceStub
    channel: grpc.aio.Channel
    models: frozenset[str] = frozenset()
    loadable: frozenset[str] = frozenset()  # models it could load on demand (its devices fit them)
    capacity: int = 1
    remote_in_flight: int = 0
    remote_waiting: int = 0  # calls queued there for room
    latency_s: float = 0.05
    in_flight: int = 0  # this client's calls
    rested_until: float = 0.0
    registered: bool = False
    backends: dict[str, status_pb2.InferenceBackendStatus] = field(default_factory=dict)

    def expected_wait(self) -> float:
        ahead = self.remote_in_flight + self.remote_waiting + self.in_flight
        return (ahead + 1) / max(self.capacity, 1) * self.latency_s

    def healthy(self, now: float) -> bool:
        if now < self.rested_until:
            return False
        return self.channel.get_state() != grpc.ChannelConnectivity.TRANSIENT_FAILURE

    def follow(self, entry: status_pb2.InferenceBackendStatus) -> None:
        self.backends[entry.backend] = entry
        live = [b for b in self.backends.values() if b.circuit != "open"]
        self.models = frozenset(m for b in live for m in b.models)
        self.loadable = frozenset(m for b in live for m in b.loadable_models)
        self.capacity = sum(b.capacity for b in live) or 1
        self.remote_in_flight = sum(b.in_flight for b in live)
        self.remote_waiting = sum(b.waiting for b in live)
        latencies = [b.latency_ms / 1000 for b in live if b.latency_ms]
        self.latency_s = min(latencies) if latencies else self.latency_s
        self.registered = True


class InferenceReplicas(Lifecycle):
    noun = "the inference replicas"

    def __init__(
        self,
        endpoints: Iterable[str],
        open_channel: Callable[[str], grpc.aio.Channel],
        kv: KeyValue | None = None,
        rest_s: float = 2.0,
    ) -> None:
        self._open_channel = open_channel
        self._kv = kv
        self._rest_s = rest_s
        self._replicas: dict[str, Replica] = {}
        self._watch: asyncio.Task[None] | None = None
        self._watcher: Any = None
        for endpoint in endpoints:
            self._replica(endpoint)
        self._open_now()

    @classmethod
    async def on_fabric(cls, endpoints: str, transport: Transport, js: JetStreamContext) -> InferenceReplicas:
        """The replicas a service calls: `endpoints` (comma-separated) to start from, every one
        registered in `tm_inference` as it comes, over this process's mutual TLS."""
        replicas = cls(
            filter(None, endpoints.split(",")),
            lambda target: channel(target, transport),
            await js.key_value(INFERENCE_BUCKET),
        )
        await replicas.follow_registry()
        return replicas

    def _replica(self, endpoint: str) -> Replica:
        replica = self._replicas.get(endpoint)
        if replica is None:
            channel = self._open_channel(endpoint)
            stub = inference_pb2_grpc.InferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            replica = self._replicas[endpoint] = Replica(endpoint, stub, channel)
        return replica

    def replicas(self) -> list[Replica]:
        return list(self._replicas.values())

    async def follow_registry(self) -> None:
        """Follow `tm_inference` (until stopped): endpoints, residency and load of every replica."""
        if self._kv is None or self._watch is not None:
            return
        watcher = self._watcher = await self._kv.watchall()

        async def follow() -> None:
            async for entry in watcher:
                if entry is None or not entry.value:
                    continue  # the end of the initial values, or a deleted/expired entry
                try:
                    status = status_pb2.InferenceBackendStatus.FromString(entry.value)
                except Exception:
                    continue
                if status.endpoint:
                    self._replica(status.endpoint).follow(status)

        self._watch = asyncio.create_task(follow())

    async def _stop(self) -> None:
        if self._watcher is not None:
            with contextlib.suppress(Exception):  # the connection may be draining already
                await self._watcher.stop()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for replica in self._replicas.values():
            await replica.channel.close()

    # ---- choosing -----------------------------------------------------------------------------

    def _order(self, model: str, tried: set[str]) -> list[Replica]:
        """Candidates for `model`, best first: healthy holders, then healthy replicas that could
        load it (on devices that fit it), then healthy others, then the rest."""
        now = time.monotonic()
        left = [r for r in self._replicas.values() if r.endpoint not in tried]

        def fit(r: Replica) -> int:
            if not model or model in r.models or not r.registered:
                return 0
            return 1 if model in r.loadable else 2

        def rank(r: Replica) -> tuple[int, int, float]:
            return (0 if r.healthy(now) else 1, fit(r), r.expected_wait())

        return sorted(left, key=rank)

    def _failed(self, replica: Replica, exc: grpc.aio.AioRpcError) -> None:
        replica.rested_until = time.monotonic() + self._rest_s
        log.warning(
            "inference replica failed; calls move to another",
            extra={"endpoint": replica.endpoint, "code": exc.code().name, "error": exc.details()},
        )

    # ---- the stub's calls ---------------------------------------------------------------------

    async def _unary(self, method: str, model: str, request: Any, kwargs: dict[str, Any]) -> Any:
        tried: set[str] = set()
        wait = bool(kwargs.pop("wait_for_ready", False))
        while True:
            order = self._order(model, tried)
            if not order:
                raise RuntimeError("no inference replica configured")
            replica, last = order[0], len(order) == 1
            tried.add(replica.endpoint)
            replica.in_flight += 1
            try:
                return await getattr(replica.stub, method)(request, wait_for_ready=wait and last, **kwargs)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (*_MOVE_ON, *_SATURATED) or last:
                    raise
                if exc.code() in _MOVE_ON:
                    self._failed(replica, exc)
            finally:
                replica.in_flight -= 1

    async def Infer(self, request: inference_pb2.InferRequest, **kwargs: Any) -> inference_pb2.InferResponse:
        response: inference_pb2.InferResponse = await self._unary("Infer", request.model, request, kwargs)
        return response

    async def ModelInfer(
        self, request: inference_pb2.ModelInferRequest, **kwargs: Any
    ) -> inference_pb2.ModelInferResponse:
        response: inference_pb2.ModelInferResponse = await self._unary(
            "ModelInfer", request.model_name, request, kwargs
        )
        return response

    # Calls about models rather than on one: the replicas share their Triton, so any healthy one
    # answers for all (a load or an unload there is seen by every replica within a second).

    async def ListModels(self, request: inference_pb2.ListModelsRequest, **kwargs: Any) -> Any:
        return await self._unary("ListModels", "", request, kwargs)

    async def ModelMetadata(self, request: inference_pb2.ModelMetadataRequest, **kwargs: Any) -> Any:
        return await self._unary("ModelMetadata", request.name, request, kwargs)

    async def ModelReady(self, request: inference_pb2.ModelReadyRequest, **kwargs: Any) -> Any:
        return await self._unary("ModelReady", request.name, request, kwargs)

    async def LoadModel(self, request: inference_pb2.LoadModelRequest, **kwargs: Any) -> Any:
        return await self._unary("LoadModel", "", request, kwargs)

    async def UnloadModel(self, request: inference_pb2.UnloadModelRequest, **kwargs: Any) -> Any:
        return await self._unary("UnloadModel", "", request, kwargs)

    def InferStream(self, request: inference_pb2.InferStreamRequest, **kwargs: Any) -> _Stream:
        return _Stream(self, "InferStream", request.model, request, kwargs)

    def ModelStreamInfer(self, request: inference_pb2.ModelStreamInferRequest, **kwargs: Any) -> _Stream:
        return _Stream(self, "ModelStreamInfer", request.request.model_name, request, kwargs)


class _Stream:
    """A server stream on the best replica, moved to the next if it fails before its first message."""

    def __init__(self, replicas: InferenceReplicas, method: str, model: str, request: Any, kwargs: dict[str, Any]):
        self._replicas = replicas
        self._method = method
        self._model = model
        self._request = request
        self._wait = bool(kwargs.pop("wait_for_ready", False))
        self._kwargs = kwargs
        self._call: Any = None
        self._cancelled = False

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Any]:
        tried: set[str] = set()
        while not self._cancelled:
            order = self._replicas._order(self._model, tried)
            if not order:
                raise RuntimeError("no inference replica configured")
            replica, last = order[0], len(order) == 1
            tried.add(replica.endpoint)
            self._call = getattr(replica.stub, self._method)(
                self._request, wait_for_ready=self._wait and last, **self._kwargs
            )
            answered = False
            replica.in_flight += 1
            try:
                async for message in self._call:
                    answered = True
                    yield message
                return
            except grpc.aio.AioRpcError as exc:
                if answered or exc.code() not in _MOVE_ON or last:
                    raise
                self._replicas._failed(replica, exc)
            finally:
                replica.in_flight -= 1

    def cancel(self) -> bool:
        self._cancelled = True
        return bool(self._call.cancel()) if self._call is not None else False
