"""Open Inference Protocol tensors: every datatype through typed and raw contents, and every
way a request can disagree with the model's signature named by tensor and dimension."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mesh.errors import InvalidArgument
from mesh.oip import (
    DATATYPES,
    Signature,
    TensorData,
    TensorSpec,
    check_request,
    response_proto,
)
from mesh.v1 import inference_pb2

NUMERIC = [name for name in DATATYPES if name != "BYTES"]


def _signature(datatype: str, shape: tuple[int, ...] = (-1, 3), max_batch: int = 8) -> Signature:
    return Signature(
        name="m",
        inputs=(TensorSpec("X", datatype, shape), TensorSpec("HINT", "INT32", (-1, 1), optional=True)),
        outputs=(TensorSpec("Y", datatype, shape),),
        versions=("1", "2"),
        max_batch_size=max_batch,
    )


def _values(datatype: str, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    if datatype == "BYTES":
        return hnp.arrays(np.object_, shape, elements=st.binary(max_size=12))
    dtype = DATATYPES[datatype].dtype
    if dtype.kind == "f":
        return hnp.arrays(dtype, shape, elements=hnp.from_dtype(dtype, allow_nan=False))
    return hnp.arrays(dtype, shape)


def _request(values: np.ndarray, datatype: str, *, raw: bool, name: str = "X") -> inference_pb2.ModelInferRequest:
    request = inference_pb2.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=values.shape)
    data = TensorData.of(name, datatype, values)
    if raw:
        request.raw_input_contents.append(data.raw)
    else:
        field = DATATYPES[datatype].contents
        assert field is not None
        flat = values.reshape(-1)
        getattr(tensor.contents, field).extend(list(flat) if datatype == "BYTES" else flat.tolist())
    return request


@pytest.mark.parametrize("datatype", list(DATATYPES))
@settings(max_examples=15, deadline=None)
@given(data=st.data(), rows=st.integers(1, 8), raw=st.booleans())
def test_every_datatype_round_trips_through_contents_and_raw(
    datatype: str, data: st.DataObject, rows: int, raw: bool
) -> None:
    raw = raw or DATATYPES[datatype].contents is None  # FP16 has no typed field
    values = data.draw(_values(datatype, (rows, 3)))
    checked = check_request(_request(values, datatype, raw=raw), _signature(datatype))
    (tensor,) = checked.inputs
    assert tensor.shape == (rows, 3)
    decoded = tensor.array()
    if datatype == "BYTES":
        assert decoded.tolist() == values.tolist()
    else:
        assert decoded.dtype == DATATYPES[datatype].dtype
        assert np.array_equal(decoded, values)
    # and back out in the form the request used
    response = response_proto(
        "m", "", "id-1", [TensorData("Y", datatype, tensor.shape, tensor.raw)], raw=raw, backend="cpu"
    )
    out = response.outputs[0]
    assert (out.name, out.datatype, tuple(out.shape)) == ("Y", datatype, (rows, 3))
    if raw:
        assert response.raw_output_contents == [tensor.raw]
    else:
        field = DATATYPES[datatype].contents
        assert field is not None
        assert list(getattr(out.contents, field)) == (
            list(values.reshape(-1)) if datatype == "BYTES" else values.reshape(-1).tolist()
        )


def _refusal(request: inference_pb2.ModelInferRequest, signature: Signature | None = None) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        check_request(request, signature or _signature("FP32"))
    return caught.value


def test_a_dimension_that_disagrees_is_named_with_its_index() -> None:
    refusal = _refusal(_request(np.zeros((2, 4), np.float32), "FP32", raw=True))
    assert refusal.field == "inputs[0].shape[1]"
    assert "'X' dimension 1 is 4" in refusal.reason and "expects 3" in refusal.reason


def test_a_wrong_rank_a_wrong_datatype_and_an_unknown_input_are_named() -> None:
    assert _refusal(_request(np.zeros(3, np.float32), "FP32", raw=True)).field == "inputs[0].shape"
    wrong_type = _refusal(_request(np.zeros((1, 3), np.int64), "INT64", raw=True))
    assert wrong_type.field == "inputs[0].datatype" and "FP32" in wrong_type.reason
    unknown = _refusal(_request(np.zeros((1, 3), np.float32), "FP32", raw=True, name="Z"))
    assert unknown.field == "inputs[0].name" and "(inputs: X, HINT)" in unknown.reason


def test_the_batch_limit_and_consistent_batches_are_checked() -> None:
    over = _refusal(_request(np.zeros((9, 3), np.float32), "FP32", raw=True))
    assert over.field == "inputs[0].shape[0]" and "max_batch_size 8" in over.reason
    request = _request(np.zeros((2, 3), np.float32), "FP32", raw=True)
    hint = request.inputs.add(name="HINT", datatype="INT32", shape=[3, 1])
    request.raw_input_contents.append(np.zeros((3, 1), "<i4").tobytes())
    assert hint.name == "HINT"
    mixed = _refusal(request)
    assert mixed.field == "inputs[1].shape[0]" and "inputs[0] has 2" in mixed.reason


def test_a_required_input_missing_is_named_and_an_optional_one_may_be() -> None:
    request = inference_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="HINT", datatype="INT32", shape=[1, 1], contents={"int_contents": [4]})
    missing = _refusal(request)
    assert missing.field == "inputs" and "X FP32[-1, 3]" in missing.reason
    assert len(check_request(_request(np.zeros((1, 3), np.float32), "FP32", raw=False), _signature("FP32")).inputs) == 1


def test_sizes_of_raw_and_typed_contents_must_match_the_shape() -> None:
    short = _request(np.zeros((2, 3), np.float32), "FP32", raw=True)
    short.raw_input_contents[0] = short.raw_input_contents[0][:-4]
    refusal = _refusal(short)
    assert refusal.field == "raw_input_contents[0]" and "needs 24" in refusal.reason
    typed = _request(np.zeros((2, 3), np.float32), "FP32", raw=False)
    del typed.inputs[0].contents.fp32_contents[-1]
    assert _refusal(typed).field == "inputs[0].contents.fp32_contents"
    wrong_field = _request(np.zeros((1, 3), np.float32), "FP32", raw=False)
    wrong_field.inputs[0].contents.int_contents.append(1)
    assert _refusal(wrong_field).field == "inputs[0].contents.int_contents"
    extra = _request(np.zeros((1, 3), np.float32), "FP32", raw=True)
    extra.raw_input_contents.append(b"")
    assert _refusal(extra).field == "raw_input_contents"


def test_bytes_elements_cut_short_are_refused() -> None:
    request = _request(np.array([[b"ab", b"cd", b"ef"]], dtype=np.object_), "BYTES", raw=True)
    request.raw_input_contents[0] = request.raw_input_contents[0][:-1]
    assert "past the end" in _refusal(request, _signature("BYTES")).reason
    request.raw_input_contents[0] = struct.pack("<I", 2) + b"ab" + b"\x01\x00"
    assert "ends inside the length" in _refusal(request, _signature("BYTES")).reason


@pytest.mark.parametrize(("datatype", "value"), [("INT8", 128), ("UINT8", 256), ("INT16", 40000), ("UINT16", 70000)])
def test_narrow_integers_out_of_range_are_refused_by_position(datatype: str, value: int) -> None:
    request = inference_pb2.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="X", datatype=datatype, shape=[1, 3])
    getattr(tensor.contents, DATATYPES[datatype].contents or "").extend([0, value, 0])
    refusal = _refusal(request, _signature(datatype))
    assert refusal.field.endswith("[1]") and datatype in refusal.reason


def test_fp16_travels_only_raw_and_answers_raw() -> None:
    request = inference_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="X", datatype="FP16", shape=[1, 3])
    assert "raw_input_contents" in _refusal(request, _signature("FP16")).reason
    out = TensorData.of("Y", "FP16", np.ones((1, 3), np.float16))
    response = response_proto("m", "", "", [out], raw=False, backend="triton")
    assert response.raw_output_contents == [out.raw]


def test_unknown_outputs_and_versions_are_named() -> None:
    request = _request(np.zeros((1, 3), np.float32), "FP32", raw=True)
    request.outputs.add(name="NOPE")
    assert _refusal(request).field == "outputs[0].name"
    versioned = _request(np.zeros((1, 3), np.float32), "FP32", raw=True)
    versioned.model_version = "7"
    assert _refusal(versioned).field == "model_version"
    versioned.model_version = "2"
    assert check_request(versioned, _signature("FP32")).version == "2"


def test_fixed_shapes_without_a_batch_dimension() -> None:
    signature = Signature("m", (TensorSpec("X", "INT64", (2, -1)),), (TensorSpec("Y", "INT64", (2,)),))
    assert check_request(_request(np.zeros((2, 5), np.int64), "INT64", raw=False), signature).inputs[0].shape == (2, 5)
    refusal = _refusal(_request(np.zeros((3, 5), np.int64), "INT64", raw=False), signature)
    assert refusal.field == "inputs[0].shape[0]" and "expects 2" in refusal.reason


def test_a_shape_whose_product_overflows_64_bits_is_refused_not_wrapped_to_zero() -> None:
    request = inference_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="X", datatype="FP32", shape=[1, 2**32, 2**32])
    request.raw_input_contents.append(b"")
    signature = Signature("m", (TensorSpec("X", "FP32", (-1, -1, -1)),), (TensorSpec("Y", "FP32", (-1,)),))
    refusal = _refusal(request, signature)
    assert refusal.field == "inputs[0].shape" and "elements" in refusal.reason
