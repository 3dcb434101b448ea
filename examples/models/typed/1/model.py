"""Every datatype in and out (see config.pbtxt): a model to try generic inference on."""

import numpy as np
import triton_python_backend_utils as pb_utils

NAMES = ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64"]


def step(name, values):
    if name == "BOOL":
        return np.logical_not(values)
    if name.startswith("FP"):
        return (values * 2).astype(values.dtype)
    return (values + 1).astype(values.dtype)  # integers wrap, as numpy does


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            outputs = []
            for name in NAMES:
                values = pb_utils.get_input_tensor_by_name(request, f"IN_{name}").as_numpy()
                outputs.append(pb_utils.Tensor(f"OUT_{name}", step(name, values)))
            texts = pb_utils.get_input_tensor_by_name(request, "IN_BYTES").as_numpy()
            reversed_texts = np.vectorize(lambda b: bytes(b)[::-1], otypes=[np.object_])(texts)
            outputs.append(pb_utils.Tensor("OUT_BYTES", reversed_texts))
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
