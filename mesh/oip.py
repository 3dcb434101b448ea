"""Open Inference Protocol (KServe v2) tensors: datatypes, model signatures, and the checks.

A request's inputs are checked against the model's signature before any backend sees them:
every way a tensor can be wrong is an InvalidArgument naming the tensor (its index in the
request and its name) and, for shapes, the dimension. Checked inputs travel in one canonical
form, `TensorData`: the tensor's raw little-endian bytes (a BYTES element is a 4-byte
little-endian length, then its bytes) — what Triton takes on the wire, so the Triton backend
forwards them without decoding, and what numpy reads without a copy for the CPU backend.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from mesh.errors import InvalidArgument
from mesh.v1 import inference_pb2, task_pb2, tensor_pb2

Array = npt.NDArray[Any]
MAX_TENSOR_BYTES = 64 * 1024 * 1024
MAX_ELEMENTS = 16 * 1024 * 1024


@dataclass(frozen=True)
class Datatype:
    name: str
    dtype: np.dtype[Any]
    contents: str | None  # the InferTensorContents field, or None (FP16: raw only)
    bounds: tuple[int, int] | None = None  # narrow integers carried in a wider typed field


def _int_bounds(dtype: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


DATATYPES: dict[str, Datatype] = {
    d.name: d
    for d in (
        Datatype("BOOL", np.dtype(np.bool_), "bool_contents"),
        Datatype("INT8", np.dtype("<i1"), "int_contents", _int_bounds("<i1")),
        Datatype("INT16", np.dtype("<i2"), "int_contents", _int_bounds("<i2")),
        Datatype("INT32", np.dtype("<i4"), "int_contents"),
        Datatype("INT64", np.dtype("<i8"), "int64_contents"),
        Datatype("UINT8", np.dtype("<u1"), "uint_contents", _int_bounds("<u1")),
        Datatype("UINT16", np.dtype("<u2"), "uint_contents", _int_bounds("<u2")),
        Datatype("UINT32", np.dtype("<u4"), "uint_contents"),
        Datatype("UINT64", np.dtype("<u8"), "uint64_contents"),
        Datatype("FP16", np.dtype("<f2"), None),
        Datatype("FP32", np.dtype("<f4"), "fp32_contents"),
        Datatype("FP64", np.dtype("<f8"), "fp64_contents"),
        Datatype("BYTES", np.dtype(np.object_), "bytes_contents"),
    )
}
_CONTENT_FIELDS = sorted({d.contents for d in DATATYPES.values() if d.contents})


@dataclass(frozen=True)
class TensorSpec:
    """A tensor the model declares: -1 in `shape` is a dimension of any size."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    optional: bool = False

    def describe(self) -> str:
        return f"{self.name} {self.datatype}{list(self.shape)}"


@dataclass(frozen=True)
class Signature:
    """What a model takes and gives, from its backend's metadata and config."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    versions: tuple[str, ...] = ()
    platform: str = ""
    max_batch_size: int = 0  # over 0: the first dimension of every tensor is the batch
    decoupled: bool = False
    priority_levels: int = 0  # the backend's queue orders requests by priority (Triton's levels)

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)

    @classmethod
    def from_proto(cls, meta: inference_pb2.ModelMetadataResponse) -> Signature:
        def spec(t: inference_pb2.TensorMetadata) -> TensorSpec:
            return TensorSpec(t.name, t.datatype, tuple(t.shape), t.optional)

        return cls(
            name=meta.name,
            inputs=tuple(spec(t) for t in meta.inputs),
            outputs=tuple(spec(t) for t in meta.outputs),
            versions=tuple(meta.versions),
            platform=meta.platform,
            max_batch_size=meta.max_batch_size,
            decoupled=meta.decoupled,
        )

    def to_proto(self, backends: Iterable[str] = ()) -> inference_pb2.ModelMetadataResponse:
        def meta(t: TensorSpec) -> inference_pb2.TensorMetadata:
            return inference_pb2.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape, optional=t.optional)

        return inference_pb2.ModelMetadataResponse(
            name=self.name,
            versions=self.versions,
            platform=self.platform,
            inputs=[meta(t) for t in self.inputs],
            outputs=[meta(t) for t in self.outputs],
            max_batch_size=self.max_batch_size,
            decoupled=self.decoupled,
            backends=sorted(backends),
        )


@dataclass(frozen=True)
class TensorData:
    """One tensor in canonical form: its raw little-endian bytes (BYTES: length-prefixed)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes

    def array(self) -> Array:
        kind = DATATYPES[self.datatype]
        if self.datatype == "BYTES":
            return np.array(_split_bytes(self.raw), dtype=np.object_).reshape(self.shape)
        return np.frombuffer(self.raw, dtype=kind.dtype).reshape(self.shape)

    @classmethod
    def from_contents(
        cls, name: str, datatype: str, shape: tuple[int, ...], contents: tensor_pb2.InferTensorContents
    ) -> TensorData:
        """A response's typed contents (trusted: the service wrote them) in canonical form."""
        field_name = DATATYPES[datatype].contents
        assert field_name is not None, f"{datatype} has no typed contents"
        values = list(getattr(contents, field_name))
        array = np.array(values, dtype=DATATYPES[datatype].dtype) if values else np.zeros(0, DATATYPES[datatype].dtype)
        return cls.of(name, datatype, array.reshape(shape))

    @classmethod
    def of(cls, name: str, datatype: str, values: Array) -> TensorData:
        """`values` as a tensor of `datatype` (converted to its dtype)."""
        if datatype == "BYTES":
            items = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values.reshape(-1)]
            return cls(name, datatype, tuple(values.shape), _join_bytes(items))
        array = np.ascontiguousarray(values, dtype=DATATYPES[datatype].dtype)
        return cls(name, datatype, tuple(array.shape), array.tobytes())


@dataclass
class TensorRequest:
    """A checked request: its inputs in the model's terms, the outputs wanted (empty: all)."""

    inputs: list[TensorData]
    outputs: list[str] = field(default_factory=list)
    parameters: dict[str, bool | int | float | str] = field(default_factory=dict)
    id: str = ""
    version: str = ""


def add_raw_inputs(request: Any, tensors: Iterable[TensorData]) -> Any:
    """`request` — ours or Triton's ModelInferRequest, the same fields — with `tensors` as its
    inputs in raw contents."""
    for tensor in tensors:
        request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        request.raw_input_contents.append(tensor.raw)
    return request


def _frames(raw: bytes, where: str = "raw") -> Iterator[slice]:
    """Where each length-prefixed BYTES element of `raw` lies; InvalidArgument if it is cut short."""
    count, offset = 0, 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidArgument(where, f"ends inside the length of BYTES element {count}")
        (size,) = struct.unpack_from("<I", raw, offset)
        start, offset = offset + 4, offset + 4 + size
        if offset > len(raw):
            raise InvalidArgument(where, f"BYTES element {count} claims {size} bytes past the end")
        count += 1
        yield slice(start, offset)


def _split_bytes(raw: bytes) -> list[bytes]:
    return [raw[frame] for frame in _frames(raw)]


def _join_bytes(items: Iterable[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def parameters_of(parameters: Mapping[str, tensor_pb2.InferParameter]) -> dict[str, bool | int | float | str]:
    values: dict[str, bool | int | float | str] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else ""
    return values


def set_parameters(target: Any, values: Mapping[str, bool | int | float | str]) -> None:
    for key, value in values.items():
        slot = target[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int):
            slot.int64_param = value
        elif isinstance(value, float):
            slot.double_param = value
        else:
            slot.string_param = str(value)


def check_request(request: inference_pb2.ModelInferRequest, signature: Signature) -> TensorRequest:
    """`request`'s inputs and outputs checked against `signature`, in canonical form."""
    return check_tensors(
        signature,
        request.inputs,
        request.raw_input_contents,
        [o.name for o in request.outputs],
        request.parameters,
        request.model_version,
        request.id,
    )


def check_infer_input(payload: task_pb2.InferInput, signature: Signature, prefix: str) -> TensorRequest:
    """An `infer` task's payload checked against the model's signature; fields named under `prefix`."""
    return check_tensors(
        signature,
        payload.inputs,
        payload.raw_input_contents,
        payload.outputs,
        payload.parameters,
        payload.model_version,
        prefix=prefix,
    )


MAX_RANK = 8
MAX_INPUTS = 64


def check_infer_structure(payload: task_pb2.InferInput, prefix: str) -> None:
    """What an `infer` payload must be whatever the model: a model name, known datatypes, sizes
    that match the shapes (the model's own signature is checked where it is known)."""
    if not payload.model or len(payload.model) > 128 or not payload.model.isprintable():
        raise InvalidArgument(f"{prefix}model", "is required: a model name of at most 128 characters")
    if not 1 <= len(payload.inputs) <= MAX_INPUTS:
        raise InvalidArgument(f"{prefix}inputs", f"must hold 1..{MAX_INPUTS} tensors")
    for index, tensor in enumerate(payload.inputs):
        if not tensor.name:
            raise InvalidArgument(f"{prefix}inputs[{index}].name", "is required")
        if tensor.datatype not in DATATYPES:
            raise InvalidArgument(
                f"{prefix}inputs[{index}].datatype", f"is {tensor.datatype!r}; one of {', '.join(DATATYPES)}"
            )
        if len(tensor.shape) > MAX_RANK:
            raise InvalidArgument(f"{prefix}inputs[{index}].shape", f"has over {MAX_RANK} dimensions")
    for index, name in enumerate(payload.outputs):
        if not name:
            raise InvalidArgument(f"{prefix}outputs[{index}]", "is empty")
    accepting = Signature(
        payload.model,
        tuple(TensorSpec(t.name, t.datatype, (-1,) * len(t.shape)) for t in payload.inputs),
        tuple(TensorSpec(name, "BYTES", ()) for name in payload.outputs),
    )
    check_infer_input(payload, accepting, prefix)


def check_tensors(
    signature: Signature,
    given: Sequence[tensor_pb2.InferInputTensor],
    raw_contents: Sequence[bytes],
    wanted: Sequence[str],
    parameters: Mapping[str, tensor_pb2.InferParameter],
    version: str = "",
    request_id: str = "",
    prefix: str = "",
) -> TensorRequest:
    """Inputs, outputs and version checked against `signature`, in canonical form."""
    raw = list(raw_contents)
    if raw and len(raw) != len(given):
        raise InvalidArgument(
            f"{prefix}raw_input_contents", f"holds {len(raw)} entries for {len(given)} inputs; send one per input"
        )
    seen: dict[str, int] = {}
    batch: tuple[int, int] | None = None  # (rows, index of the input that set it)
    inputs = []
    for index, tensor in enumerate(given):
        where = f"{prefix}inputs[{index}]"
        spec = signature.input(tensor.name)
        if spec is None:
            names = ", ".join(t.name for t in signature.inputs)
            raise InvalidArgument(
                f"{where}.name", f"model {signature.name!r} has no input {tensor.name!r} (inputs: {names})"
            )
        if tensor.name in seen:
            raise InvalidArgument(f"{where}.name", f"input {tensor.name!r} is also inputs[{seen[tensor.name]}]")
        seen[tensor.name] = index
        if tensor.datatype != spec.datatype:
            raise InvalidArgument(
                f"{where}.datatype",
                f"input {spec.name!r} is {spec.datatype} in model {signature.name!r}; got {tensor.datatype or 'none'}",
            )
        shape = _check_shape(tensor, spec, signature, where)
        if signature.max_batch_size:
            if batch is not None and shape[0] != batch[0]:
                raise InvalidArgument(
                    f"{where}.shape[0]",
                    f"input {spec.name!r} has batch {shape[0]}; inputs[{batch[1]}] has {batch[0]}",
                )
            batch = (shape[0], index)
        if raw:
            if tensor.HasField("contents") and tensor.contents.ByteSize():
                raise InvalidArgument(f"{where}.contents", "send values in contents or raw_input_contents, not both")
            data = _check_raw(raw[index], spec, shape, f"{prefix}raw_input_contents[{index}]")
        else:
            data = _from_contents(tensor.contents, spec, shape, f"{where}.contents")
        inputs.append(TensorData(spec.name, spec.datatype, shape, data))
    missing = [t for t in signature.inputs if not t.optional and t.name not in seen]
    if missing:
        needed = ", ".join(t.describe() for t in missing)
        raise InvalidArgument(f"{prefix}inputs", f"model {signature.name!r} needs {needed}")
    outputs = []
    for index, name in enumerate(wanted):
        if signature.output(name) is None:
            names = ", ".join(t.name for t in signature.outputs)
            where = f"{prefix}outputs[{index}]" + ("" if prefix else ".name")
            raise InvalidArgument(where, f"model {signature.name!r} has no output {name!r} (outputs: {names})")
        outputs.append(name)
    if version and signature.versions and version not in signature.versions:
        raise InvalidArgument(
            f"{prefix}model_version",
            f"model {signature.name!r} has no version {version!r} (versions: {', '.join(signature.versions)})",
        )
    return TensorRequest(inputs, outputs, parameters_of(parameters), request_id, version)


def _check_shape(
    tensor: tensor_pb2.InferInputTensor, spec: TensorSpec, signature: Signature, where: str
) -> tuple[int, ...]:
    shape = tuple(int(d) for d in tensor.shape)
    if len(shape) != len(spec.shape):
        raise InvalidArgument(
            f"{where}.shape",
            f"input {spec.name!r} has {len(shape)} dimensions {list(shape)}; model {signature.name!r} "
            f"expects {len(spec.shape)}: {list(spec.shape)}",
        )
    for dim, (got, want) in enumerate(zip(shape, spec.shape, strict=True)):
        if got < 0:
            raise InvalidArgument(f"{where}.shape[{dim}]", f"input {spec.name!r} dimension {dim} is negative ({got})")
        if want >= 0 and got != want:
            raise InvalidArgument(
                f"{where}.shape[{dim}]",
                f"input {spec.name!r} dimension {dim} is {got}; model {signature.name!r} expects {want}",
            )
    if signature.max_batch_size and shape[0] > signature.max_batch_size:
        raise InvalidArgument(
            f"{where}.shape[0]",
            f"input {spec.name!r} batch {shape[0]} is over model {signature.name!r}'s "
            f"max_batch_size {signature.max_batch_size}",
        )
    if math.prod(shape) > MAX_ELEMENTS:
        raise InvalidArgument(f"{where}.shape", f"input {spec.name!r} has over {MAX_ELEMENTS} elements")
    return shape


def _check_raw(data: bytes, spec: TensorSpec, shape: tuple[int, ...], where: str) -> bytes:
    if len(data) > MAX_TENSOR_BYTES:
        raise InvalidArgument(where, f"holds {len(data)} bytes, over the {MAX_TENSOR_BYTES}-byte limit")
    elements = math.prod(shape)
    if spec.datatype == "BYTES":
        count = sum(1 for _ in _frames(data, where))
        if count != elements:
            raise InvalidArgument(
                where, f"holds {count} BYTES elements; input {spec.name!r} of shape {list(shape)} needs {elements}"
            )
        return data
    expected = elements * DATATYPES[spec.datatype].dtype.itemsize
    if len(data) != expected:
        raise InvalidArgument(
            where,
            f"holds {len(data)} bytes; input {spec.name!r} of shape {list(shape)} as {spec.datatype} needs {expected}",
        )
    return data


def _from_contents(
    contents: tensor_pb2.InferTensorContents, spec: TensorSpec, shape: tuple[int, ...], where: str
) -> bytes:
    kind = DATATYPES[spec.datatype]
    if kind.contents is None:
        raise InvalidArgument(where, f"{spec.datatype} travels only as raw_input_contents (input {spec.name!r})")
    others = [f for f in _CONTENT_FIELDS if f != kind.contents and len(getattr(contents, f))]
    if others:
        raise InvalidArgument(
            f"{where}.{others[0]}", f"input {spec.name!r} is {spec.datatype}: its values go in {kind.contents}"
        )
    values: Sequence[Any] = getattr(contents, kind.contents)
    elements = math.prod(shape)
    if len(values) != elements:
        raise InvalidArgument(
            f"{where}.{kind.contents}",
            f"holds {len(values)} values; input {spec.name!r} of shape {list(shape)} needs {elements}",
        )
    if spec.datatype == "BYTES":
        return _join_bytes(values)
    array = np.asarray(values)
    if kind.bounds is not None and array.size:
        low, high = kind.bounds
        bad = np.flatnonzero((array < low) | (array > high))
        if bad.size:
            raise InvalidArgument(
                f"{where}.{kind.contents}[{int(bad[0])}]",
                f"{int(array[bad[0]])} is outside {spec.datatype}'s range [{low}, {high}] (input {spec.name!r})",
            )
    return np.ascontiguousarray(array, dtype=kind.dtype).tobytes()


def response_proto(
    model: str,
    version: str,
    request_id: str,
    outputs: Sequence[TensorData],
    *,
    raw: bool,
    backend: str,
) -> inference_pb2.ModelInferResponse:
    """The response in the form the request used: raw contents, or typed contents (raw for all
    when any output is FP16, which has no typed field — the protocol's rule is all or none)."""
    raw = raw or any(DATATYPES[t.datatype].contents is None for t in outputs)
    response = inference_pb2.ModelInferResponse(model_name=model, model_version=version, id=request_id, backend=backend)
    for tensor in outputs:
        out = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if raw:
            response.raw_output_contents.append(tensor.raw)
            continue
        kind = DATATYPES[tensor.datatype]
        assert kind.contents is not None
        values = tensor.array().reshape(-1)
        field_values = getattr(out.contents, kind.contents)
        field_values.extend(values.tolist())
    return response
