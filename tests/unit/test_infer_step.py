"""The `infer` step: a decoupled model's responses become partial outputs (a redelivered attempt
skips those already stored), the last one the output; the request carries the task's tensors,
id and priority; the call ends however the step ends; refusals map to the right failure."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from mesh.v1 import inference_pb2, task_pb2
from services.worker._steps import StepContext, StepFailed, infer


def _response(value: int, final: bool = False, outputs: bool = True) -> inference_pb2.ModelStreamInferResponse:
    reply = inference_pb2.ModelInferResponse(model_name="m", backend="triton")
    if outputs:
        reply.outputs.add(name="INDEX", datatype="INT32", shape=[1], contents={"int_contents": [value]})
    return inference_pb2.ModelStreamInferResponse(infer_response=reply, final=final)


class _Call:
    def __init__(self, messages: list[inference_pb2.ModelStreamInferResponse], error: grpc.StatusCode | None = None):
        self.messages = messages
        self.error = error
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator[inference_pb2.ModelStreamInferResponse]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[inference_pb2.ModelStreamInferResponse]:
        for message in self.messages:
            yield message
        if self.error is not None:
            raise grpc.aio.AioRpcError(self.error, grpc.aio.Metadata(), grpc.aio.Metadata(), details="refused")

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class _Inference:
    def __init__(self, call: _Call) -> None:
        self.call = call
        self.requests: list[inference_pb2.ModelStreamInferRequest] = []

    def ModelStreamInfer(self, request: inference_pb2.ModelStreamInferRequest, **_: object) -> _Call:
        self.requests.append(request)
        return self.call


def _context(inference: _Inference, resume_from: int = 0) -> tuple[StepContext, list[int]]:
    emitted: list[int] = []

    async def emit(output: task_pb2.TaskOutput, confidence: float) -> None:
        emitted.append(output.tensors.outputs[0].contents.int_contents[0])

    spec = task_pb2.TaskSpec(task_id="t1", kind="infer", priority_class=task_pb2.PRIORITY_CLASS_INTERACTIVE)
    spec.payload.infer.model = "m"
    spec.payload.infer.inputs.add(name="COUNT", datatype="INT32", shape=[1], contents={"int_contents": [3]})
    spec.payload.infer.outputs.append("INDEX")
    context = StepContext(
        spec=spec,
        carry=[],
        attempt=1,
        resume_from=resume_from,
        emit_partial=emit,
        inference=inference,  # type: ignore[arg-type]
    )
    return context, emitted


DECOUPLED = [_response(0), _response(1), _response(2), _response(0, final=True, outputs=False)]


async def test_each_response_of_a_decoupled_model_is_a_partial_and_the_last_the_output() -> None:
    inference = _Inference(_Call(DECOUPLED))
    context, emitted = _context(inference)
    [output] = await infer(context)
    assert emitted == [0, 1, 2]
    assert output.tensors.outputs[0].contents.int_contents[0] == 2 and output.tensors.backend == "triton"
    request = inference.requests[0].request
    assert (request.model_name, request.id, [o.name for o in request.outputs]) == ("m", "t1", ["INDEX"])
    assert request.priority_class == task_pb2.PRIORITY_CLASS_INTERACTIVE
    assert request.inputs[0].contents.int_contents[0] == 3
    assert inference.call.cancelled


async def test_a_redelivered_attempt_skips_the_partials_already_stored() -> None:
    context, emitted = _context(_Inference(_Call(DECOUPLED)), resume_from=2)
    await infer(context)
    assert emitted == [2]


async def test_a_plain_model_answers_once_with_no_partial() -> None:
    context, emitted = _context(_Inference(_Call([_response(9, final=True)])))
    [output] = await infer(context)
    assert emitted == [] and output.tensors.outputs[0].contents.int_contents[0] == 9


@pytest.mark.parametrize(
    ("code", "error_class", "retryable"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "invalid_input", False),
        (grpc.StatusCode.UNKNOWN, "bug", False),  # the model's own failure
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "resource_exhausted", True),
        (grpc.StatusCode.UNAVAILABLE, "dependency_down", True),
    ],
)
async def test_refusals_map_to_step_failures_and_the_call_ends(
    code: grpc.StatusCode, error_class: str, retryable: bool
) -> None:
    inference = _Inference(_Call([_response(0)], error=code))
    context, _ = _context(inference)
    with pytest.raises(StepFailed) as failed:
        await infer(context)
    assert (failed.value.error_class, failed.value.retryable) == (error_class, retryable)
    assert inference.call.cancelled
