"""COUNT responses for one request, then the final flag (see config.pbtxt)."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            count = int(pb_utils.get_input_tensor_by_name(request, "COUNT").as_numpy()[0])
            for index in range(count):
                if request.is_cancelled():
                    break
                outputs = [
                    pb_utils.Tensor("INDEX", np.array([index], dtype=np.int32)),
                    pb_utils.Tensor("TEXT", np.array([f"part {index}".encode()], dtype=np.object_)),
                ]
                sender.send(pb_utils.InferenceResponse(output_tensors=outputs))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
