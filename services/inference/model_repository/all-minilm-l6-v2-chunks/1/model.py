"""Triton Python-backend model (decoupled): a long document embedded chunk by chunk.

One response per chunk — SEQUENCE, CHUNK_TEXT, EMBEDDING, CONFIDENCE (the fraction of the
document covered so far) — then a final flag. Between chunks the model checks whether the
request was cancelled (client gone or task cancelled) and stops there, logging how far it got.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

from mesh.tasks import split_words
from services.inference._minilm import MiniLM


class TritonPythonModel:
    def initialize(self, args):
        # KIND_GPU instances (configs/gpu.pbtxt) run on their GPU through cupy; others in numpy.
        gpu = args.get("model_instance_kind") == "GPU"
        self.model = MiniLM.load(device=f"cuda:{args['model_instance_device_id']}" if gpu else "cpu")

    def execute(self, requests):
        for request in requests:
            self._stream(request)
        return None

    def _stream(self, request):
        sender = request.get_response_sender()
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)[0]
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        size_tensor = pb_utils.get_input_tensor_by_name(request, "CHUNK_WORDS")
        size = int(size_tensor.as_numpy().reshape(-1)[0]) if size_tensor is not None else 0
        chunks = split_words(text, size)
        total = sum(len(c.split()) for c in chunks) or 1
        covered = 0
        for sequence, chunk in enumerate(chunks, start=1):
            if sender.is_cancelled():
                pb_utils.Logger.log_info(
                    f"tidemesh: request {request.request_id()} cancelled after {sequence - 1} of {len(chunks)} chunks"
                )
                sender.send(flags=final)
                return
            vector = self.model.encode([chunk])
            covered += len(chunk.split())
            sender.send(
                flags=final if sequence == len(chunks) else 0,
                response=pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("SEQUENCE", np.array([sequence], dtype=np.uint64)),
                        pb_utils.Tensor("CHUNK_TEXT", np.array([chunk.encode("utf-8")], dtype=np.object_)),
                        pb_utils.Tensor("EMBEDDING", vector[0]),
                        pb_utils.Tensor("CONFIDENCE", np.array([covered / total], dtype=np.float32)),
                    ]
                ),
            )
        if not chunks:
            sender.send(flags=final)
