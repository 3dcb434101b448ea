"""The inference service on a real tritonserver (nvidia-pytriton) and its embedded CPU model:
reference accuracy through Triton, native streaming, cancellation reaching Triton, fallback to
CPU when Triton stops mid-load, recovery, and bad input."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.security import Transport
from mesh.supervisor import MeshSecurity
from mesh.supervisor._triton_server import TritonServer
from mesh.tasks import split_words
from mesh.v1 import inference_pb2, inference_pb2_grpc, task_pb2
from services.inference._minilm import MiniLM
from services.inference._spawn import InferenceProcess, inference_process
from tests.conftest import eventually, listening_ports

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "minilm_reference.json"
MODEL = "all-minilm-l6-v2"
FP16 = f"{MODEL}-fp16"


def inference_service(tmp: Path, *args: str) -> AbstractAsyncContextManager[InferenceProcess]:
    """The inference service as its own process, probing backends often and resting a failed one 1 s;
    mutual TLS under the session's root (it reaches Triton, and is called, with mesh leaves)."""
    pki = MeshSecurity.prepare(tmp / "mesh").pki_dir
    return inference_process(tmp, "--probe-interval", "0.2", "--breaker-reset", "1.0", *args, pki=pki)


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM.load()


# The tests that only call a service started with the same arguments share it (each service's start
# loads its model in a worker process of its own: seconds, on two cores).
@pytest.fixture(scope="module")
async def triton_only(
    triton: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[InferenceProcess]:
    """The inference service on the module's Triton alone (no CPU model)."""
    workdir = tmp_path_factory.mktemp("triton-only")
    async with inference_service(workdir, "--triton", triton.address, "--no-cpu") as stub:
        yield stub


@pytest.fixture(scope="module")
async def cpu_only(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InferenceProcess]:
    """The inference service on its embedded CPU model alone."""
    async with inference_service(tmp_path_factory.mktemp("cpu-only")) as stub:
        yield stub


def _vectors(response: inference_pb2.InferResponse) -> np.ndarray:
    return np.array([list(e.values) for e in response.embeddings], dtype=np.float64)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


async def _backend(stub: inference_pb2_grpc.InferenceServiceStub, name: str) -> inference_pb2.ModelInfo:
    listing = await stub.ListModels(inference_pb2.ListModelsRequest())
    return next(b for b in listing.backends if b.backend == name)


async def test_triton_serves_minilm_matching_the_reference(triton: TritonServer, triton_only: InferenceProcess) -> None:
    """Through Triton alone (no CPU backend), every reference sentence — non-English, emoji, one
    character, over the model's length — embeds within cosine 0.999 of sentence-transformers."""
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    # The service refuses empty text (INVALID_ARGUMENT); the reference set has one, for the bare model.
    pairs = [(s, v) for s, v in zip(reference["sentences"], reference["vectors"], strict=True) if s.strip()]
    stub = triton_only
    response = await stub.Infer(inference_pb2.InferRequest(texts=[s for s, _ in pairs]))
    listing = await stub.ListModels(inference_pb2.ListModelsRequest())
    assert response.backend == "triton"
    cos = _cosines(_vectors(response), np.array([v for _, v in pairs]))
    assert cos.min() >= 0.999, f"min cosine {cos.min():.6f}"
    [backend] = listing.backends
    assert backend.backend == "triton" and backend.address == triton.address
    # every model resident, the chunk stream's own decoupled model too; it streams the embedding model
    assert list(backend.models) == [MODEL, f"{MODEL}-chunks"] and list(backend.streaming_models) == [MODEL]
    assert backend.circuit == "closed" and backend.texts_served >= len(pairs)
    assert [(m.name, m.dimensions, m.backend, m.state, m.decoupled) for m in listing.models] == [
        (MODEL, 384, "triton", "READY", False),
        (f"{MODEL}-chunks", 0, "triton", "READY", True),
        (FP16, 0, "triton", "UNAVAILABLE", False),  # in the repository, loaded on demand only
    ]
    assert {(m.precision, m.device_kind, m.instances) for m in listing.models if m.state == "READY"} == {
        ("", "cpu", 1)  # read from the configs Triton loaded (KIND_CPU, one instance; no precision declared)
    }


async def test_the_fp16_variant_loads_on_demand_stays_within_its_tolerance_and_spills_to_fp32(
    triton: TritonServer, tmp_path: Path, minilm: MiniLM
) -> None:
    """The mixed-precision variant is not loaded when Triton starts; the first call for it loads
    it; its vectors differ from FP32's yet stay within the cosine it declares; and with Triton's
    one slot busy, interactive calls for it spill to the FP32 model of the CPU pool (its family's
    reference), whose vectors are within the same tolerance."""
    from services.inference._minilm import FP16_MIN_COSINE

    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    texts = [s for s in reference["sentences"] if s.strip()]
    async with inference_service(
        tmp_path, "--triton", triton.address, "--triton-capacity", "1", "--max-batch", "1"
    ) as stub:
        half = await stub.Infer(inference_pb2.InferRequest(model=FP16, texts=texts))
        listing = await stub.ListModels(inference_pb2.ListModelsRequest())
        interactive = task_pb2.PRIORITY_CLASS_INTERACTIVE
        burst = await asyncio.gather(
            *(stub.Infer(inference_pb2.InferRequest(model=FP16, texts=[t], priority_class=interactive)) for t in texts)
        )
        # Triton's own per-model counters reach Prometheus through the service (its metrics port is
        # off): every text of the first call, and the burst's share Triton ran, by Triton's count
        ran = len(texts) + sum(r.backend == "triton" for r in burst)
        pattern = r'tidemesh_backend_model_inferences_total\{address="[^"]+",backend="triton",model="%s"\} ([\d.]+)'

        async def counted() -> float | None:
            found = re.search(pattern % re.escape(FP16), await stub.metrics())
            return float(found.group(1)) if found and float(found.group(1)) >= ran else None

        await eventually(counted, timeout_s=10, what=f"Triton's count of {ran} FP16 inferences in /metrics")
        await stub.UnloadModel(inference_pb2.UnloadModelRequest(name=FP16))  # the module's Triton as it was
    assert half.backend == "triton" and half.model == FP16
    cos = _cosines(_vectors(half), minilm.encode(texts).astype(np.float64))
    assert cos.min() >= FP16_MIN_COSINE and cos.min() < 1 - 1e-7, f"min cosine {cos.min():.8f}"
    [info] = [m for m in listing.models if m.name == FP16]
    assert (info.state, info.family, info.precision, info.device_kind, info.instances) == (
        "READY",
        MODEL,
        "fp16",
        "cpu",
        1,
    )
    assert info.min_cosine == pytest.approx(FP16_MIN_COSINE)
    assert {r.backend for r in burst} == {"triton", "cpu"}  # capacity running out moved work to the CPU pool
    spilled = np.array([list(r.embeddings[0].values) for r in burst])
    assert _cosines(spilled, _vectors(half)).min() >= FP16_MIN_COSINE


async def test_triton_streams_a_document_chunk_by_chunk(triton_only: InferenceProcess, minilm: MiniLM) -> None:
    """The decoupled Triton model streams one response per chunk, in order, each the MiniLM vector of
    its chunk, with the fraction covered rising to 1; the final message is the document vector."""
    document = " ".join(f"word{i} about tide pools and meshes" for i in range(60))  # 360 words
    stub = triton_only
    replies = [r async for r in stub.InferStream(inference_pb2.InferStreamRequest(text=document, chunk_words=50))]
    chunks = split_words(document, 50)
    partial, final = replies[:-1], replies[-1]
    assert [r.sequence for r in partial] == list(range(1, len(chunks) + 1))
    assert [r.chunk_text for r in partial] == chunks
    confidences = [r.partial_confidence for r in partial]
    assert confidences == sorted(confidences) and confidences[-1] == pytest.approx(1.0)
    cos = _cosines(np.array([list(r.embedding.values) for r in partial]), minilm.encode(chunks).astype(np.float64))
    assert cos.min() > 0.9999
    assert final.final and final.sequence == len(chunks) + 1


async def test_cancelling_a_stream_cancels_the_request_inside_triton(
    triton: TritonServer, triton_only: InferenceProcess
) -> None:
    """A client that goes away mid-stream: Triton's model sees the request cancelled and stops
    (its log says after how many of the chunks), instead of embedding the rest of the document."""
    document = " ".join(f"token{i}" for i in range(4000))  # 400 chunks of 10 words
    stub = triton_only
    call = stub.InferStream(inference_pb2.InferStreamRequest(text=document, chunk_words=10))
    got = 0
    async for _ in call:
        got += 1
        if got == 3:
            call.cancel()
            break

    async def stopped_early() -> re.Match[str] | None:
        return re.search(r"cancelled after (\d+) of 400 chunks", triton.log())

    found = await eventually(stopped_early, timeout_s=20, what="Triton logged the cancellation")
    assert 3 <= int(found.group(1)) < 400


def _model_workers(pid: int) -> list[int]:
    """Child processes of `pid` started by multiprocessing (the CPU model's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid and b"spawn_main" in (stat.parent / "cmdline").read_bytes():
            found.append(int(stat.parent.name))
    return found


async def test_the_cpu_model_runs_in_a_worker_process_that_is_replaced_when_it_dies(cpu_only: InferenceProcess) -> None:
    """The embedded model computes in a worker process (no GIL shared with the service); kill -9 of
    that worker costs no request — the next call gets a fresh worker."""
    stub = cpu_only
    before = await stub.Infer(inference_pb2.InferRequest(texts=["first"]))

    async def worker() -> list[int]:
        return _model_workers(stub.pid)

    [first_worker] = await eventually(worker, what="the CPU model's worker process")
    os.kill(first_worker, signal.SIGKILL)
    after = await stub.Infer(inference_pb2.InferRequest(texts=["first"]), timeout=60)
    assert after.backend == "cpu" and list(after.embeddings[0].values) == list(before.embeddings[0].values)
    assert first_worker not in await worker()


def _tensor(values: np.ndarray, datatype: str = "INT64", shape: list[int] | None = None) -> inference_pb2.Tensor:
    return inference_pb2.Tensor(
        datatype=datatype, shape=list(values.shape) if shape is None else shape, raw=values.tobytes()
    )


async def test_token_ids_embed_like_their_text(cpu_only: InferenceProcess, minilm: MiniLM) -> None:
    """Pre-tokenized input (padded rows plus an attention mask) gives the vectors of the texts."""
    texts = ["a short one", "a somewhat longer sentence about tides"]
    rows = [minilm._tok.encode(t).ids for t in texts]
    width = max(map(len, rows))
    ids = np.zeros((2, width), dtype=np.int64)
    mask = np.zeros((2, width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    stub = cpu_only
    response = await stub.Infer(inference_pb2.InferRequest(input_ids=_tensor(ids), attention_mask=_tensor(mask)))
    by_text = await stub.Infer(inference_pb2.InferRequest(texts=texts))
    assert response.backend == "cpu"
    assert _cosines(_vectors(response), _vectors(by_text)).min() > 0.9999


async def test_bad_input_is_invalid_argument_naming_the_field(cpu_only: InferenceProcess) -> None:
    ids = np.array([[101, 7592, 102]], dtype=np.int64)
    bad: list[tuple[inference_pb2.InferRequest, str]] = [
        (inference_pb2.InferRequest(), "texts"),
        (inference_pb2.InferRequest(texts=["   "]), r"texts\[0\]: is empty"),
        (inference_pb2.InferRequest(texts=["ok", "x" * 100_001]), r"texts\[1\]: .*over the 100000-character limit"),
        (inference_pb2.InferRequest(texts=["t"] * 257), "texts: at most 256"),
        (inference_pb2.InferRequest(model="gpt-17", texts=["hi"]), "model: unknown model 'gpt-17'"),
        (inference_pb2.InferRequest(input_ids=_tensor(ids.astype(np.float32), "FP32")), "input_ids.datatype"),
        (inference_pb2.InferRequest(input_ids=_tensor(ids, shape=[3])), r"input_ids.shape: is \[3\]"),
        (inference_pb2.InferRequest(input_ids=_tensor(ids, shape=[1, 1, 3])), "input_ids.shape"),
        (inference_pb2.InferRequest(input_ids=_tensor(ids, shape=[1, 4])), "input_ids.raw: holds 24 bytes"),
        (inference_pb2.InferRequest(input_ids=_tensor(np.ones((1, 300), np.int64))), "over the model's maximum"),
        (inference_pb2.InferRequest(input_ids=_tensor(np.array([[101, 99999, 102]]))), "outside the vocabulary"),
        (
            inference_pb2.InferRequest(input_ids=_tensor(ids), attention_mask=_tensor(np.ones((1, 2), np.int64))),
            "attention_mask.shape",
        ),
        (inference_pb2.InferRequest(texts=["both"], input_ids=_tensor(ids)), "texts: send either"),
    ]
    stub = cpu_only
    for request, message in bad:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Infer(request)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, (message, caught.value)
        assert re.search(message, caught.value.details() or ""), (message, caught.value.details())
    for request, field in [
        (inference_pb2.InferStreamRequest(text=""), "text: is empty"),
        (inference_pb2.InferStreamRequest(model="nope", text="a b c"), "model: unknown"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.InferStream(request):
                pass
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT and field in (caught.value.details() or "")
    # …and the service still answers good input afterwards.
    ok = await stub.Infer(inference_pb2.InferRequest(texts=["fine"], priority_class=task_pb2.PRIORITY_CLASS_BATCH))
    assert len(ok.embeddings[0].values) == 384


async def test_triton_answers_only_mesh_leaves_and_only_over_grpc(triton: TritonServer) -> None:
    """Plaintext and TLS without a client certificate fail Triton's handshake; a leaf of the
    mesh's root gets in. Its HTTP and metrics endpoints (no TLS there) are off: it listens on
    its gRPC port only."""
    for channel in (
        grpc.aio.insecure_channel(triton.address),
        grpc.aio.secure_channel(triton.address, grpc.ssl_channel_credentials()),
    ):
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert triton.pki is not None
    async with Transport.of(triton.pki, "cli").channel(triton.address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert set(triton.spec.ports) == {"grpc"} and "--grpc-use-ssl-mutual=true" in triton.spec.command
    assert triton.pid is not None and listening_ports(triton.pid) == {triton.spec.ports["grpc"]}


# The last two kill the module's Triton: the first restarts it (that is under test), the second
# leaves it stopped, so they come after every other test of it.


async def test_falls_back_to_cpu_when_triton_stops_mid_load_and_returns_after(
    triton: TritonServer, tmp_path: Path, minilm: MiniLM
) -> None:
    """With Triton killed while 300 requests are in flight, every request is still answered — by CPU
    once Triton is gone — with the right vector; Triton's circuit opens, and closes again (work goes
    back to Triton) once it is restarted."""
    server = triton
    try:
        async with inference_service(tmp_path, "--triton", server.address, "--triton-capacity", "2") as stub:
            texts = [f"request {i}: the tide comes in over the mesh" for i in range(300)]
            answered_by: list[str] = []

            async def one(text: str) -> np.ndarray:
                response = await stub.Infer(inference_pb2.InferRequest(texts=[text]), timeout=120)
                answered_by.append(response.backend)
                return _vectors(response)[0]

            async def triton_answering() -> bool:
                return answered_by.count("triton") >= 20

            calls = [asyncio.create_task(one(t)) for t in texts]
            await eventually(triton_answering, timeout_s=60, what="Triton answering")
            stubs = server.stub_pids()
            assert stubs, "the Python-backend stubs are running"
            await server.stop(kill=True)  # SIGKILL: Triton cannot stop its stubs; stop() reaps them

            async def stubs_gone() -> bool:
                return not any(pid in server.stub_pids() for pid in stubs)

            await eventually(stubs_gone, timeout_s=5, what="a killed Triton leaves no backend stub behind")
            vectors = np.array(await asyncio.gather(*calls))
            assert len(vectors) == 300  # no request failed
            assert _cosines(vectors, minilm.encode(texts).astype(np.float64)).min() > 0.9999
            assert answered_by.count("triton") >= 20 and answered_by.count("cpu") > 0, answered_by
            down = await _backend(stub, "triton")
            assert down.circuit in ("open", "half_open") and not down.models and down.failures >= 1

            await server.start()

            async def back() -> bool:
                # A burst: the CPU backend (capacity 1) fills, so load sends the rest to Triton.
                burst = [inference_pb2.InferRequest(texts=[f"is triton back? {i}"]) for i in range(16)]
                replies = await asyncio.gather(*(stub.Infer(r, timeout=30) for r in burst))
                return any(r.backend == "triton" for r in replies)

            await eventually(back, timeout_s=30, what="requests routed to Triton again")
            recovered = await _backend(stub, "triton")
            assert recovered.circuit == "closed" and list(recovered.models) == [MODEL, f"{MODEL}-chunks"]
    finally:
        if server.pid is None:  # failed before its restart: the next test still gets a Triton
            await server.start()


async def test_a_stream_cut_off_by_triton_is_finished_by_the_cpu_model(
    triton: TritonServer, tmp_path: Path, minilm: MiniLM
) -> None:
    """Triton killed part-way through a document's stream: the stream goes on from the next chunk on
    the CPU model — every chunk exactly once, in order, each the right vector."""
    document = " ".join(f"wave{i}" for i in range(3000))  # 300 chunks of 10 words
    chunks = split_words(document, 10)
    async with inference_service(tmp_path, "--triton", triton.address) as stub:
        replies = []
        async for reply in stub.InferStream(inference_pb2.InferStreamRequest(text=document, chunk_words=10)):
            replies.append(reply)
            if len(replies) == 5:
                await triton.stop(kill=True)
        backend = await _backend(stub, "triton")
    partial = replies[:-1]
    assert [r.sequence for r in partial] == list(range(1, 301)) and replies[-1].final
    assert [r.chunk_text for r in partial] == chunks
    got = np.array([list(r.embedding.values) for r in partial])
    assert _cosines(got, minilm.encode(chunks).astype(np.float64)).min() > 0.9999
    assert backend.failures >= 1 and backend.texts_served < 300  # Triton did not finish it
