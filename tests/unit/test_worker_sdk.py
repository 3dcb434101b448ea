"""The Python worker SDK without a mesh: `run_local` runs a handler as the mesh would, recording
partials and checkpoints, checking the returned type, classifying failures by exception type."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from clients.sdk import Fatal, Retryable, TaskContext, Worker, run_local

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "textpipe" / "python"


@pytest.fixture(scope="module")
def textpipe() -> Iterator[ModuleType]:
    sys.path.insert(0, str(EXAMPLE))
    try:
        import textpipe_worker

        yield textpipe_worker
    finally:
        sys.path.remove(str(EXAMPLE))


async def test_the_example_handler_runs_locally_with_partials_and_checkpoints(textpipe: ModuleType) -> None:
    """The textpipe handler under the harness: one partial and one checkpoint per line, the result."""
    run = await run_local(textpipe.worker, "textpipe.count", textpipe.CountRequest(text="a b\nb c\nb", top=1))
    assert run.failure is None and run.result is not None
    assert (run.result.lines, run.result.words, run.result.top[0].word) == (3, 5, "b")
    # Confidence travels as a float32 (PartialOutput.confidence).
    assert [(p.lines, p.words, round(c, 6)) for p, c in run.partials] == [
        (1, 2, 0.333333),
        (2, 4, 0.666667),
        (3, 5, 1.0),
    ]
    assert run.checkpoints[-1] == b'{"counts":{"a":1,"b":3,"c":1},"line":3}'


async def test_a_resumed_attempt_starts_at_its_checkpoint_and_skips_stored_partials(textpipe: ModuleType) -> None:
    """resume_state + resume_from: counting continues from the checkpoint, no partial is sent twice."""
    run = await run_local(
        textpipe.worker,
        "textpipe.count",
        textpipe.CountRequest(text="a b\nb c\nb"),
        attempt=2,
        resume_state=b'{"counts":{"a":1,"b":1},"line":1}',
        resume_from=2,
    )
    assert run.result is not None and run.result.words == 5
    assert [p.lines for p, _ in run.partials] == [3], "line 2's partial was stored by the earlier attempt"


async def test_failures_are_classified_by_exception_type(textpipe: ModuleType) -> None:
    """Retryable and unknown exceptions retry; Fatal and the task's fatal_on types do not."""
    retried = await run_local(
        textpipe.worker, "textpipe.count", textpipe.CountRequest(text="x", fail_first_attempt=True)
    )
    assert retried.failure is not None and retried.failure.retryable
    assert retried.failure.message == "first attempt fails on purpose"
    worker = Worker("unused:1")
    Request, Result = textpipe.CountRequest, textpipe.CountResult

    @worker.task("acme.boom", input=Request, output=Result, fatal_on=[KeyError])
    async def boom(request: Request, ctx: TaskContext) -> Result:
        if request.text == "fatal":
            raise Fatal("bad input", "invalid_input")
        if request.text == "key":
            raise KeyError("missing")
        if request.text == "retry":
            raise Retryable("later", "dependency_down")
        raise ZeroDivisionError("oops")

    cases = {"fatal": ("invalid_input", False), "key": ("fatal", False), "retry": ("dependency_down", True)}
    for text, (error_class, retryable) in {**cases, "bug": ("bug", True)}.items():
        run = await run_local(worker, "acme.boom", Request(text=text))
        assert run.failure is not None, text
        assert (run.failure.error_class, run.failure.retryable) == (error_class, retryable), text
    assert "ZeroDivisionError: oops" in (await run_local(worker, "acme.boom", Request(text="bug"))).failure.message  # type: ignore[union-attr]


async def test_a_wrong_return_type_is_a_fatal_invalid_output(textpipe: ModuleType) -> None:
    """A handler that returns another type than it declared fails without retry, naming both."""
    worker = Worker("unused:1")

    @worker.task("acme.wrong", input=textpipe.CountRequest, output=textpipe.CountResult)
    async def wrong(request: object, ctx: TaskContext) -> object:
        return textpipe.CountRequest(text="not a result")

    run = await run_local(worker, "acme.wrong", textpipe.CountRequest())
    assert run.failure is not None and not run.failure.retryable
    assert run.failure.error_class == "invalid_output"
    assert "CountRequest" in run.failure.message and "textpipe.v1.CountResult" in run.failure.message


async def test_a_sync_handler_runs_in_a_thread_and_its_context_blocks(textpipe: ModuleType) -> None:
    """A plain function handler runs off the event loop; its partials and checkpoints still land."""
    worker = Worker("unused:1")
    Result = textpipe.CountResult

    @worker.task("acme.sync", input=textpipe.CountRequest, output=Result)
    def slow(request: object, ctx: TaskContext) -> object:
        time.sleep(0.01)  # blocking work: fine in the handler's thread
        ctx.emit_partial(Result(lines=1), 0.5)
        ctx.checkpoint(b"half")
        return Result(lines=2)

    run = await run_local(worker, "acme.sync", textpipe.CountRequest())
    assert run.result is not None and run.result.lines == 2
    assert [p.lines for p, _ in run.partials] == [1] and run.checkpoints == [b"half"]


def test_declarations_are_refused_early_with_the_reason(textpipe: ModuleType) -> None:
    """Not a message class, a handler of the wrong arity, a kind declared twice: TypeError/ValueError."""
    worker = Worker("unused:1")
    with pytest.raises(TypeError, match="input must be a protobuf message class"):
        worker.task("acme.x", input=dict, output=textpipe.CountResult)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must take \\(input, ctx\\)"):
        worker.task("acme.x", input=textpipe.CountRequest, output=textpipe.CountResult)(lambda request: request)
    worker.task("acme.x", input=textpipe.CountRequest, output=textpipe.CountResult)(lambda request, ctx: request)
    with pytest.raises(ValueError, match="already has a handler"):
        worker.task("acme.x", input=textpipe.CountRequest, output=textpipe.CountResult)(lambda request, ctx: request)
    [declaration] = worker.declarations()
    assert declaration.input_type == "textpipe.v1.CountRequest" and [s.name for s in declaration.steps] == ["x"]
