"""`client.models`: your models through the front door — what is served, each model's signature,
inference on numpy arrays (any model, any datatype; a decoupled model streamed), and loading
and unloading (admin).

Inputs are named arrays; their datatypes come from the model's metadata (read once per model),
so ``await client.models.infer("classifier", {"FEATURES": x})`` is the whole call. Refusals are
the mesh's errors (`InvalidArgument` naming the tensor and dimension, …).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio
import numpy as np

from mesh.oip import Array, TensorData, add_raw_inputs
from mesh.priority import CLASS_BY_NAME
from mesh.rpc import raise_from_rpc_error
from mesh.v1 import inference_pb2, inference_pb2_grpc

Arrays = Mapping[str, "Array | Sequence[Any]"]
ModelInfos = list[inference_pb2.ModelInfo]
Names = list[str]  # `list` is a method's name inside Models


class Models:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = inference_pb2_grpc.InferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        self._metadata: dict[str, inference_pb2.ModelMetadataResponse] = {}

    async def list(self) -> ModelInfos:
        """Every model each backend holds or could load, with its state and load."""
        return list((await self._call(self._stub.ListModels, inference_pb2.ListModelsRequest())).models)

    async def metadata(self, name: str) -> inference_pb2.ModelMetadataResponse:
        reply: inference_pb2.ModelMetadataResponse = await self._call(
            self._stub.ModelMetadata, inference_pb2.ModelMetadataRequest(name=name)
        )
        self._metadata[name] = reply
        return reply

    async def ready(self, name: str) -> bool:
        return bool((await self._call(self._stub.ModelReady, inference_pb2.ModelReadyRequest(name=name))).ready)

    async def load(self, name: str, backend: str = "") -> inference_pb2.LoadModelResponse:
        request = inference_pb2.LoadModelRequest(name=name, backend=backend)
        reply: inference_pb2.LoadModelResponse = await self._call(self._stub.LoadModel, request, 180)
        return reply

    async def unload(self, name: str, backend: str = "") -> Names:
        request = inference_pb2.UnloadModelRequest(name=name, backend=backend)
        return list((await self._call(self._stub.UnloadModel, request, 180)).backends)

    async def request(
        self, model: str, inputs: Arrays, outputs: Sequence[str] = (), priority: str = "standard", request_id: str = ""
    ) -> inference_pb2.ModelInferRequest:
        """The protocol request for `inputs` (raw contents, datatypes from the model's metadata)."""
        meta = self._metadata.get(model) or await self.metadata(model)
        declared = {t.name: t.datatype for t in meta.inputs}
        request = inference_pb2.ModelInferRequest(
            model_name=model, id=request_id, priority_class=CLASS_BY_NAME[priority]
        )
        tensors = []
        for name, values in inputs.items():
            array = np.asarray(values, dtype=np.object_ if declared.get(name) == "BYTES" else None)
            tensors.append(TensorData.of(name, declared.get(name) or _datatype_of(array), array))
        add_raw_inputs(request, tensors)
        for name in outputs:
            request.outputs.add(name=name)
        return request

    async def infer(
        self, model: str, inputs: Arrays, outputs: Sequence[str] = (), priority: str = "standard"
    ) -> dict[str, Array]:
        """The model's outputs for `inputs`, as arrays by name."""
        request = await self.request(model, inputs, outputs, priority)
        return arrays_of(await self._call(self._stub.ModelInfer, request, 60))

    async def stream(
        self, model: str, inputs: Arrays, outputs: Sequence[str] = (), priority: str = "standard"
    ) -> AsyncIterator[dict[str, Array]]:
        """Each response of a decoupled model in turn (a plain model's one response)."""
        request = await self.request(model, inputs, outputs, priority)
        call = self._stub.ModelStreamInfer(inference_pb2.ModelStreamInferRequest(request=request))
        try:
            async for message in call:
                if message.infer_response.outputs:
                    yield arrays_of(message.infer_response)
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)
        finally:
            call.cancel()

    @staticmethod
    async def _call(method: Any, request: Any, timeout_s: float = 10.0) -> Any:
        try:
            return await method(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)


def arrays_of(response: inference_pb2.ModelInferResponse) -> dict[str, Array]:
    """A protocol response's outputs as arrays by name (raw or typed contents)."""
    out = {}
    for index, tensor in enumerate(response.outputs):
        shape = tuple(int(d) for d in tensor.shape)
        if response.raw_output_contents:
            out[tensor.name] = TensorData(
                tensor.name, tensor.datatype, shape, response.raw_output_contents[index]
            ).array()
        else:
            out[tensor.name] = TensorData.from_contents(tensor.name, tensor.datatype, shape, tensor.contents).array()
    return out


_DATATYPE_OF_KIND = {"b": "BOOL", "U": "BYTES", "S": "BYTES", "O": "BYTES"}


def _datatype_of(array: Array) -> str:
    """For an input the metadata does not declare (the service then names it as unknown)."""
    if array.dtype.kind in _DATATYPE_OF_KIND:
        return _DATATYPE_OF_KIND[array.dtype.kind]
    return {"i": "INT", "u": "UINT", "f": "FP"}[array.dtype.kind] + str(array.dtype.itemsize * 8)
