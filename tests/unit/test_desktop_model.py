"""The desktop app's data without Flet: overview rows, task and stream lines (word + symbol,
sequence, time, confidence), dead letters and the replay question, and every view's route."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from desktop._model import (
    letter_lines,
    overview,
    parse_route,
    replay_question,
    route_for,
    state_mark,
    stream_lines,
    stream_outcome,
    task_lines,
)
from mesh.v1 import deadletter_pb2, gateway_pb2, task_pb2
from tui._model import DashModel


def _status() -> gateway_pb2.GetMeshStatusResponse:
    reply = gateway_pb2.GetMeshStatusResponse()
    reply.queues.add(pool="inference", priority_class=2, pending=3, in_flight=1, oldest_age_s=4.5)
    reply.tenant_queues.add(pool="inference", priority_class=2, pending=3, in_flight=1, tenant="acme")
    reply.workers.add(worker_id="worker-1", pools=["inference", "ingestion"], health=1)
    reply.inference_backends.add(backend="cpu", address="embedded", circuit="open", last_error="boom")
    return reply


def _event(
    sequence: int, state: task_pb2.TaskState, *, text: str = "", confidence: float = 0.0, final: bool = False
) -> task_pb2.TaskEvent:
    event = task_pb2.TaskEvent(task_id="t-1", sequence=sequence, state=state, final=final)
    event.timestamp.FromSeconds(1_700_000_000 + sequence)
    if text:
        event.output.text = text
        event.partial_confidence = confidence
    return event


def test_every_state_reads_as_a_word_and_a_distinct_symbol() -> None:
    """Each task state has its word and a symbol of its own, so no state is told by colour alone."""
    states = [v for v in task_pb2.TaskState.values() if v]
    marks = [state_mark(state) for state in states]
    assert [m.word for m in marks] == [task_pb2.TaskState.Name(s).removeprefix("TASK_STATE_") for s in states]
    assert len({m.symbol for m in marks}) == len(marks)
    assert state_mark(task_pb2.TASK_STATE_SUCCEEDED).text == "✔ SUCCEEDED"


def test_the_overview_lists_lanes_tenants_workers_and_backends_from_a_status_reading() -> None:
    """A status reading gives a lane, its tenant partition, the worker's health and the circuit, each labelled."""
    model = DashModel()
    assert overview(model).queues == ()
    model.apply_status(_status(), now=1.0)
    seen = overview(model)
    assert [q.name for q in seen.queues] == ["inference/standard", "inference/standard/acme"]
    assert seen.queues[0].label == "queue inference/standard: 3 pending, 1 in flight, oldest 4s"
    assert seen.workers[0].label == "worker worker-1 alive, pools inference,ingestion"
    assert seen.workers[0].mark.text == "● alive"
    assert seen.backends[0].label == "inference cpu embedded circuit open: boom"
    assert seen.backends[0].mark.tone == "error"


def test_the_task_list_follows_the_filter() -> None:
    """Every word of the filter must be found in the task's id, kind, state or tenant."""
    model = DashModel()
    done = task_pb2.TaskInfo(state=task_pb2.TASK_STATE_SUCCEEDED)
    done.spec.task_id, done.spec.kind, done.spec.tenant = "a1", "stream", "acme"
    waiting = task_pb2.TaskInfo(state=task_pb2.TASK_STATE_QUEUED)
    waiting.spec.task_id, waiting.spec.kind, waiting.spec.tenant = "b2", "echo", "acme"
    model.set_tasks([done, waiting])
    assert [line.task_id for line in task_lines(model)] == ["a1", "b2"]
    model.task_filter = "stream succeeded"
    lines = task_lines(model)
    assert [line.task_id for line in lines] == ["a1"]
    assert lines[0].label == "task a1, stream, SUCCEEDED"


def test_a_stream_shows_sequence_time_state_and_each_partials_confidence() -> None:
    """Partials carry their confidence; the result and state changes do not; the outcome waits for the final event."""
    model = DashModel()
    model.open_task("t-1")
    model.add_event(_event(1, task_pb2.TASK_STATE_RUNNING))
    model.add_event(_event(2, task_pb2.TASK_STATE_RUNNING, text="tide", confidence=0.5))
    assert stream_outcome(model, "t-1") is None
    model.add_event(_event(3, task_pb2.TASK_STATE_SUCCEEDED, text="tide pools", final=True))
    lines = stream_lines(model, "t-1")
    assert [(line.sequence, line.confidence) for line in lines] == [(1, None), (2, 0.5), (3, None)]
    assert lines[1].time.endswith(":22.000")  # 1 700 000 002 s: …:13:22 UTC
    assert lines[1].label.endswith("RUNNING partial, confidence 0.50 tide")
    assert lines[2].label.endswith("SUCCEEDED result tide pools")
    outcome = stream_outcome(model, "t-1")
    assert outcome is not None and outcome.word == "SUCCEEDED"


def test_a_resumed_watch_adds_no_duplicate_line() -> None:
    """An event seen already (a resumed stream's overlap) adds no second line."""
    model = DashModel()
    model.open_task("t-1")
    running = task_pb2.TASK_STATE_RUNNING
    for event in (
        _event(1, running),
        _event(2, running, text="a", confidence=0.3),
        _event(2, running, text="a", confidence=0.3),
    ):
        model.add_event(event)
    assert [line.sequence for line in stream_lines(model, "t-1")] == [1, 2]


def test_a_dead_letter_and_the_question_its_replay_asks() -> None:
    """The row names the failure; the confirmation says what a replay touches (the new task's id)."""
    model = DashModel()
    letter = deadletter_pb2.DeadLetter(
        task_id="t-9",
        error_class="NotFound",
        message="no model x",
        classification=deadletter_pb2.FAILURE_CLASS_POISON_INPUT,
        replayed_as=["t-9-r"],
    )
    letter.spec.kind, letter.spec.tenant = "embed", "acme"
    model.set_dead_letters([letter])
    (line,) = letter_lines(model)
    assert line.label.startswith("dead letter t-9, embed: ")
    assert "NotFound: no model x" in line.label and line.label.endswith("replayed as t-9-r")
    question = replay_question(line)
    assert "t-9 (embed, tenant acme)" in question and "t-9-r" in question


@pytest.mark.parametrize(
    ("route", "view", "task_id"),
    [
        ("/", "overview", ""),
        ("", "overview", ""),
        ("/tasks", "tasks", ""),
        ("tasks/01abc", "detail", "01abc"),
        ("/tasks/my-task_1/", "detail", "my-task_1"),
        ("/submit?kind=stream", "submit", ""),
        ("/dlq", "dead letters", ""),
        ("dlq/01abc-r", "letter", "01abc-r"),
    ],
)
def test_every_view_has_a_route_and_back(route: str, view: str, task_id: str) -> None:
    """A route (with or without its leading slash, a query ignored) names a view; the view's route reads back."""
    assert parse_route(route) == (view, task_id)
    assert parse_route(route_for(view, task_id)) == (view, task_id)


@pytest.mark.parametrize("route", ["/nope", "/tasks/a/b", "/tasks/a.b", "/dlq/" + "x" * 65, "/detail", "/letter/x"])
def test_a_route_to_no_view_says_which_there_are(route: str) -> None:
    with pytest.raises(ValueError, match="tasks/TASK_ID, submit, dlq and dlq/TASK_ID"):
        parse_route(route)


@given(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))
def test_any_task_id_deep_links_to_its_task_and_its_dead_letter(task_id: str) -> None:
    assert parse_route(route_for("detail", task_id)) == ("detail", task_id)
    assert parse_route(route_for("letter", task_id)) == ("letter", task_id)
