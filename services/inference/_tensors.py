"""Pre-tokenized input: KServe-style tensors checked and turned into token-id rows.

Every way a tensor can be wrong is an InvalidArgument that names the field: the datatype,
the shape (rank, sizes, the model's sequence limit), the byte length, and mask values.
"""

from __future__ import annotations

import numpy as np

from mesh.errors import InvalidArgument
from mesh.v1 import inference_pb2

_ID_TYPES: dict[str, np.dtype[np.signedinteger]] = {"INT64": np.dtype("<i8"), "INT32": np.dtype("<i4")}
MAX_ROWS = 256


def _array(tensor: inference_pb2.Tensor, field: str) -> np.ndarray:
    dtype = _ID_TYPES.get(tensor.datatype)
    if dtype is None:
        raise InvalidArgument(f"{field}.datatype", f"is {tensor.datatype!r}; token ids are INT64 or INT32")
    shape = list(tensor.shape)
    if len(shape) != 2 or min(shape) < 1:
        raise InvalidArgument(f"{field}.shape", f"is {shape}; expected [batch, sequence], both at least 1")
    expected = shape[0] * shape[1] * dtype.itemsize
    if len(tensor.raw) != expected:
        raise InvalidArgument(
            f"{field}.raw", f"holds {len(tensor.raw)} bytes; shape {shape} of {tensor.datatype} needs {expected}"
        )
    return np.frombuffer(tensor.raw, dtype=dtype).reshape(shape).astype(np.int64)


def token_rows(
    ids: inference_pb2.Tensor, mask: inference_pb2.Tensor | None, max_sequence_length: int
) -> list[list[int]]:
    """The unpadded token-id rows of `ids` (masked by `mask` when it is set)."""
    values = _array(ids, "input_ids")
    batch, length = values.shape
    if batch > MAX_ROWS:
        raise InvalidArgument("input_ids.shape", f"batch {batch} is over the limit of {MAX_ROWS}")
    if length > max_sequence_length:
        raise InvalidArgument(
            "input_ids.shape", f"sequence {length} is over the model's maximum of {max_sequence_length} tokens"
        )
    if mask is None or not (mask.datatype or mask.shape or mask.raw):
        return values.tolist()
    keep = _array(mask, "attention_mask")
    if keep.shape != values.shape:
        raise InvalidArgument(
            "attention_mask.shape", f"is {list(keep.shape)}; it must equal input_ids' {list(values.shape)}"
        )
    if not np.isin(keep, (0, 1)).all():
        raise InvalidArgument("attention_mask.raw", "holds values other than 0 and 1")
    rows = [row[m.astype(bool)].tolist() for row, m in zip(values, keep, strict=True)]
    if any(not row for row in rows):
        raise InvalidArgument("attention_mask.raw", "masks out every token of some row")
    return rows
