"""Your own models on a real tritonserver (nvidia-pytriton's Python backend), through the
inference service: the Open Inference Protocol with every datatype (typed and raw contents),
a decoupled model streaming, the metadata checks, the embedded CPU model on the same generic
path, and model control — load, unload, load on demand, the memory budget with the least
recently used idle model out first, never a model with a request in flight.

The models are `examples/models` (what the README points `tidemesh up --model-repository` at);
Triton serves that repository alone here, so the budget arithmetic is the test's own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import pytest

from mesh.oip import DATATYPES, TensorData
from mesh.supervisor import MeshSecurity, free_port
from mesh.supervisor._triton import triton_available
from mesh.supervisor._triton_server import TritonServer
from mesh.v1 import inference_pb2
from services.inference._spawn import InferenceProcess, inference_process

MODELS = Path(__file__).resolve().parents[2] / "examples" / "models"
NUMERIC = [name for name in DATATYPES if name != "BYTES"]
MINILM = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
async def user_triton(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TritonServer]:
    if not triton_available():
        pytest.fail("tritonserver is missing: `make venv` installs nvidia-pytriton")
    server = TritonServer(tmp_path_factory.mktemp("user-triton"), model_repository=MODELS)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _service(tmp: Path, triton: TritonServer, *args: str) -> AbstractAsyncContextManager[InferenceProcess]:
    """The inference service on `triton` and its CPU model, mutual TLS under the session's root."""
    pki = MeshSecurity.prepare(tmp / "mesh").pki_dir
    return inference_process(tmp, "--triton", triton.address, "--probe-interval", "0.2", *args, pki=pki)


def _typed_request(rows: int) -> tuple[inference_pb2.ModelInferRequest, dict[str, np.ndarray]]:
    """Every datatype at once, as raw contents: FP16 has no typed field, and the protocol sends
    either every input raw or none."""
    rng = np.random.default_rng(rows)
    values: dict[str, np.ndarray] = {}
    request = inference_pb2.ModelInferRequest(model_name="typed", id=f"req-{rows}")
    for name in [*NUMERIC, "BYTES"]:
        dtype = DATATYPES[name].dtype
        if name == "BYTES":
            array = np.array([[f"r{r}c{c}é".encode() for c in range(3)] for r in range(rows)], dtype=np.object_)
        elif name == "BOOL":
            array = rng.integers(0, 2, (rows, 3)).astype(bool)
        elif dtype.kind == "f":
            array = rng.standard_normal((rows, 3)).astype(dtype)
        else:
            info = np.iinfo(dtype)
            array = rng.integers(info.min, info.max, (rows, 3), dtype=dtype, endpoint=True)
        values[name] = array
        request.inputs.add(name=f"IN_{name}", datatype=name, shape=array.shape)
        request.raw_input_contents.append(TensorData.of(name, name, array).raw)
    return request, values


def _expected(name: str, array: np.ndarray) -> np.ndarray:
    if name == "BOOL":
        return np.logical_not(array)
    if name == "BYTES":
        return np.vectorize(lambda b: b[::-1], otypes=[np.object_])(array)
    if name.startswith("FP"):
        return (array * 2).astype(array.dtype)
    return (array + 1).astype(array.dtype)


def _outputs(response: inference_pb2.ModelInferResponse) -> dict[str, np.ndarray]:
    out = {}
    for index, tensor in enumerate(response.outputs):
        if response.raw_output_contents:
            data = TensorData(tensor.name, tensor.datatype, tuple(tensor.shape), response.raw_output_contents[index])
        else:
            field = DATATYPES[tensor.datatype].contents
            assert field is not None
            values = np.array(list(getattr(tensor.contents, field)), dtype=DATATYPES[tensor.datatype].dtype)
            data = TensorData.of(tensor.name, tensor.datatype, values.reshape(tuple(tensor.shape)))
        out[tensor.name] = data.array()
    return out


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_metadata_ready_and_every_datatype_through_a_user_model(
    user_triton: TritonServer, tmp_path: Path
) -> None:
    async with _service(tmp_path, user_triton) as stub:
        meta = await stub.ModelMetadata(inference_pb2.ModelMetadataRequest(name="typed"))
        assert meta.max_batch_size == 8 and list(meta.backends) == ["triton"] and not meta.decoupled
        assert {(t.name, t.datatype, tuple(t.shape)) for t in meta.inputs} == {
            (f"IN_{n}", n, (-1, -1)) for n in [*NUMERIC, "BYTES"]
        }
        assert (await stub.ModelReady(inference_pb2.ModelReadyRequest(name="typed"))).ready
        assert not (await stub.ModelReady(inference_pb2.ModelReadyRequest(name="nope"))).ready
        request, values = _typed_request(rows=3)
        response = await stub.ModelInfer(request)
        assert response.backend == "triton" and response.id == "req-3" and response.model_name == "typed"
        outputs = _outputs(response)
        for name, array in values.items():
            got = outputs[f"OUT_{name}"]
            assert got.shape == array.shape, name
            assert got.tolist() == _expected(name, array).tolist(), name
        # the outputs asked for, in the order asked
        request.outputs.add(name="OUT_INT8")
        request.outputs.add(name="OUT_BYTES")
        picked = await stub.ModelInfer(request)
        assert [t.name for t in picked.outputs] == ["OUT_INT8", "OUT_BYTES"]


async def test_typed_contents_in_typed_contents_out(user_triton: TritonServer, tmp_path: Path) -> None:
    """A request in typed contents (no FP16 in it) is answered in typed contents."""
    async with _service(tmp_path, user_triton) as stub:
        request = inference_pb2.ModelInferRequest(model_name="scaler")
        request.inputs.add(name="X", datatype="FP32", shape=[2, 1], contents={"fp32_contents": [1.5, -2.0]})
        response = await stub.ModelInfer(request)
        assert not response.raw_output_contents
        assert list(response.outputs[0].contents.fp32_contents) == [4.5, -6.0]
        assert tuple(response.outputs[0].shape) == (2, 1)


async def test_a_decoupled_model_streams_every_response_then_the_end(user_triton: TritonServer, tmp_path: Path) -> None:
    async with _service(tmp_path, user_triton) as stub:
        request = inference_pb2.ModelInferRequest(model_name="streamer", id="s1")
        request.inputs.add(name="COUNT", datatype="INT32", shape=[1], contents={"int_contents": [5]})
        messages = [m async for m in stub.ModelStreamInfer(inference_pb2.ModelStreamInferRequest(request=request))]
        parts = [m for m in messages if not m.final]
        assert [int(_outputs(m.infer_response)["INDEX"][0]) for m in parts] == [0, 1, 2, 3, 4]
        assert [_outputs(m.infer_response)["TEXT"][0] for m in parts] == [f"part {i}".encode() for i in range(5)]
        assert messages[-1].final and not messages[-1].infer_response.outputs and len(messages) == 6
        # a decoupled model over the unary call is refused, naming why
        refusal = await _refused(stub.ModelInfer(request))
        assert refusal.code() == grpc.StatusCode.INVALID_ARGUMENT and "ModelStreamInfer" in (refusal.details() or "")
        # a plain model over the stream answers once, final
        scaler = inference_pb2.ModelInferRequest(model_name="scaler")
        scaler.inputs.add(name="X", datatype="FP32", shape=[1, 1], contents={"fp32_contents": [2.0]})
        [only] = [m async for m in stub.ModelStreamInfer(inference_pb2.ModelStreamInferRequest(request=scaler))]
        assert only.final and list(only.infer_response.outputs[0].contents.fp32_contents) == [6.0]


async def test_bad_tensors_are_invalid_argument_naming_the_tensor_and_dimension(
    user_triton: TritonServer, tmp_path: Path
) -> None:
    async with _service(tmp_path, user_triton) as stub:

        def scaler(shape: list[int], values: list[float], datatype: str = "FP32") -> inference_pb2.ModelInferRequest:
            request = inference_pb2.ModelInferRequest(model_name="scaler")
            request.inputs.add(name="X", datatype=datatype, shape=shape, contents={"fp32_contents": values})
            return request

        cases = {
            "inputs[0].shape[1]": scaler([1, 2], [1.0, 2.0]),
            "inputs[0].shape[0]": scaler([5, 1], [1.0] * 5),  # over max_batch_size 4
            "inputs[0].datatype": scaler([1, 1], [1.0], "FP64"),
            "inputs[0].contents.fp32_contents": scaler([2, 1], [1.0]),
            "model_name": inference_pb2.ModelInferRequest(model_name="no-such-model"),
        }
        missing = inference_pb2.ModelInferRequest(model_name="scaler")
        cases["inputs"] = missing
        for field, request in cases.items():
            refusal = await _refused(stub.ModelInfer(request))
            assert refusal.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, refusal.details())
            assert (refusal.details() or "").startswith(f"{field}:"), (field, refusal.details())
        # the service still answers after every refusal
        assert (await stub.ModelReady(inference_pb2.ModelReadyRequest(name="scaler"))).ready


async def test_the_embedded_cpu_model_answers_the_generic_call_like_the_embedding_call(
    user_triton: TritonServer, tmp_path: Path
) -> None:
    """MiniLM is not in this Triton: the CPU backend serves it on the same protocol."""
    async with _service(tmp_path, user_triton) as stub:
        meta = await stub.ModelMetadata(inference_pb2.ModelMetadataRequest(name=MINILM))
        assert list(meta.backends) == ["cpu"]
        assert [(t.name, t.datatype, tuple(t.shape)) for t in meta.outputs] == [("EMBEDDING", "FP32", (-1, 384))]
        texts = [b"a first sentence", b"and a second one"]
        request = inference_pb2.ModelInferRequest(model_name=MINILM)
        request.inputs.add(name="TEXT", datatype="BYTES", shape=[2, 1], contents={"bytes_contents": texts})
        generic = await stub.ModelInfer(request)
        typed = await stub.Infer(inference_pb2.InferRequest(model=MINILM, texts=[t.decode() for t in texts]))
        vectors = np.array(list(generic.outputs[0].contents.fp32_contents)).reshape(2, 384)
        assert generic.backend == "cpu"
        assert np.allclose(vectors, [list(e.values) for e in typed.embeddings], atol=1e-6)
        # and a model that is not an embedding model is refused by the embedding call
        refusal = await _refused(stub.Infer(inference_pb2.InferRequest(model="scaler", texts=["x"])))
        assert refusal.code() == grpc.StatusCode.INVALID_ARGUMENT and "ModelInfer" in (refusal.details() or "")


async def _states(stub: InferenceProcess) -> dict[str, str]:
    listing = await stub.ListModels(inference_pb2.ListModelsRequest())
    return {m.name: m.state for m in listing.models if m.backend == "triton"}


async def _scale(stub: InferenceProcess, x: float, delay_ms: int = 0) -> float:
    request = inference_pb2.ModelInferRequest(model_name="scaler")
    request.inputs.add(name="X", datatype="FP32", shape=[1, 1], contents={"fp32_contents": [x]})
    if delay_ms:
        request.inputs.add(name="DELAY_MS", datatype="INT32", shape=[1, 1], contents={"int_contents": [delay_ms]})
    response = await stub.ModelInfer(request)
    return float(response.outputs[0].contents.fp32_contents[0])


async def _stream_count(stub: InferenceProcess, count: int) -> int:
    request = inference_pb2.ModelInferRequest(model_name="streamer")
    request.inputs.add(name="COUNT", datatype="INT32", shape=[1], contents={"int_contents": [count]})
    messages = [m async for m in stub.ModelStreamInfer(inference_pb2.ModelStreamInferRequest(request=request))]
    return len(messages) - 1


async def test_model_control_within_a_memory_budget(user_triton: TritonServer, tmp_path: Path) -> None:
    """Three 40 MiB models, a 100 MiB budget: Triton loads all three at start, the service brings
    it under budget; loads on demand push out the least recently used idle model; a model with a
    request in flight is never the one unloaded; an unload waits for the request to finish."""
    async with _service(tmp_path, user_triton, "--model-memory-budget-mb", "100") as stub:
        # at start: over budget, never-used models out first (by name): scaler
        deadline = time.monotonic() + 5
        while (states := await _states(stub)) != {"scaler": "UNAVAILABLE", "streamer": "READY", "typed": "READY"}:
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.1)
        request, _ = _typed_request(rows=1)
        await stub.ModelInfer(request)  # typed used first ...
        assert await _stream_count(stub, 2) == 2  # ... streamer after it
        # a call for scaler loads it on demand: typed, the least recently used, makes room
        started = time.monotonic()
        assert await _scale(stub, 2.0) == 6.0
        assert await _states(stub) == {"scaler": "READY", "streamer": "READY", "typed": "UNAVAILABLE"}
        on_demand_s = time.monotonic() - started
        # with scaler busy, loading typed pushes out the idle streamer, never scaler
        busy = asyncio.create_task(_scale(stub, 1.0, delay_ms=1500))
        await asyncio.sleep(0.3)  # the slow request is inside Triton
        loaded = await stub.LoadModel(inference_pb2.LoadModelRequest(name="typed"))
        assert list(loaded.unloaded) == ["streamer"] and loaded.model.state == "READY"
        assert loaded.model.memory_bytes == 40 * 1024 * 1024
        assert await busy == 3.0
        # an unload waits for the request in flight, which finishes on the model
        busy = asyncio.create_task(_scale(stub, 5.0, delay_ms=1000))
        await asyncio.sleep(0.3)
        unloaded = await stub.UnloadModel(inference_pb2.UnloadModelRequest(name="scaler"))
        assert busy.done() and await busy == 15.0
        assert list(unloaded.backends) == ["triton"]
        assert (await _states(stub))["scaler"] == "UNAVAILABLE"
        assert not (await stub.ModelReady(inference_pb2.ModelReadyRequest(name="scaler"))).ready
        # bad control requests name what is wrong
        refusal = await _refused(stub.LoadModel(inference_pb2.LoadModelRequest(name="nope")))
        assert refusal.code() == grpc.StatusCode.NOT_FOUND
        refusal = await _refused(stub.UnloadModel(inference_pb2.UnloadModelRequest(name=MINILM)))
        assert refusal.code() == grpc.StatusCode.FAILED_PRECONDITION and "always" in (refusal.details() or "")
    assert on_demand_s < 30


async def test_a_model_asked_for_while_triton_is_unreachable_is_unavailable_not_unknown(tmp_path: Path) -> None:
    """With Triton down, the service cannot know whether a model it has never seen is in Triton's
    repositories: a retryable UNAVAILABLE, never the caller's INVALID_ARGUMENT (or NOT_FOUND)."""
    pki = MeshSecurity.prepare(tmp_path / "mesh").pki_dir
    closed = f"127.0.0.1:{free_port()}"
    async with inference_process(tmp_path, "--triton", closed, "--probe-interval", "0.2", pki=pki) as stub:
        request = inference_pb2.ModelInferRequest(model_name="scaler")
        request.inputs.add(name="X", datatype="FP32", shape=[1, 1], contents={"fp32_contents": [1.0]})
        assert (await _refused(stub.ModelInfer(request))).code() == grpc.StatusCode.UNAVAILABLE
        metadata = stub.ModelMetadata(inference_pb2.ModelMetadataRequest(name="scaler"))
        assert (await _refused(metadata)).code() == grpc.StatusCode.UNAVAILABLE
        # what the backends that answer hold is served as usual
        texts = inference_pb2.ModelInferRequest(model_name=MINILM)
        texts.inputs.add(name="TEXT", datatype="BYTES", shape=[1, 1], contents={"bytes_contents": [b"still here"]})
        assert (await stub.ModelInfer(texts)).backend == "cpu"
