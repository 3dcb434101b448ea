"""Every failure class's runbook shows the exact commands its dead letters carry and the dashboard view."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.fabric import actions_for, console_path, runbook_for
from mesh.v1 import deadletter_pb2

REPO = Path(__file__).resolve().parents[2]
CLASSES = [value for value in deadletter_pb2.FailureClass.values() if value]


@pytest.mark.parametrize("classification", CLASSES, ids=deadletter_pb2.FailureClass.Name)
def test_the_runbook_shows_what_its_records_carry(classification: int) -> None:
    page = (REPO / runbook_for(classification)).read_text()
    commands, view = actions_for("TASK_ID", classification)
    for action in [*commands, view, console_path("dlq", "TASK_ID")]:
        assert f"`{action}`" in page, f"{runbook_for(classification)} does not show {action}"


def test_only_input_that_can_succeed_is_offered_a_replay() -> None:
    poison, _ = actions_for("t1", deadletter_pb2.FAILURE_CLASS_POISON_INPUT)
    assert poison == ["tidemesh dlq show t1", "tidemesh dlq purge t1"]
    for classification in set(CLASSES) - {deadletter_pb2.FAILURE_CLASS_POISON_INPUT}:
        commands, view = actions_for("t1", classification)
        assert commands == ["tidemesh dlq show t1", "tidemesh dlq replay t1", "tidemesh dlq purge t1"]
        assert view == "tidemesh dash --dlq t1"


def test_console_paths_are_the_console_s_pages() -> None:
    assert console_path("dlq", "t1") == "/console/dlq/t1" and console_path("tasks", "t1") == "/console/tasks/t1"
    with pytest.raises(ValueError, match="no console view"):
        console_path("nope", "t1")
