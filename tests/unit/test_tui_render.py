"""The dashboard without a terminal: the model from status messages, panes and the dialog as
rendered text (urwid's `render(...).text`), keys, the redraw throttle, and the palette's contrast."""

from __future__ import annotations

import time
from typing import Any

import pytest
import urwid

from clients.design import MINIMUM, THEMES, contrast, theme
from mesh.v1 import deadletter_pb2, gateway_pb2, task_pb2
from tui import DashModel, Screen, Throttle, clamp_fps
from tui._model import DEPENDENCY_DOWN, RESOURCE_EXHAUSTION, drain_rate
from tui._palette import TEXT_PAIRS, UI_PAIRS, palette
from tui._panes import Pane
from tui._screen import STREAM, View
from tui._views import Line, sparkline

SIZE = (160, 48)


class Recorder:
    """The screen's Actions, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append((name, *args))


def status(pending: int) -> gateway_pb2.GetMeshStatusResponse:
    reply = gateway_pb2.GetMeshStatusResponse()
    reply.queues.add(pool="inference", priority_class=2, pending=pending, in_flight=1, oldest_age_s=4.5)
    reply.tenant_queues.add(pool="inference", priority_class=2, pending=pending, in_flight=1, tenant="acme")
    worker = reply.workers.add(worker_id="worker-1", pools=["inference"], concurrency=4, in_flight=1, health=1)
    worker.last_heartbeat.FromSeconds(int(time.time()))
    reply.inference_backends.add(backend="cpu", address="embedded", circuit="open", capacity=4, models=["minilm"])
    return reply


def task(task_id: str, state: int, kind: str = "stream") -> task_pb2.TaskInfo:
    info = task_pb2.TaskInfo(state=state)  # type: ignore[arg-type]
    info.spec.task_id, info.spec.kind, info.spec.tenant = task_id, kind, "default"
    return info


def model() -> DashModel:
    m = DashModel()
    m.apply_status(status(8), 100.0)
    m.apply_status(status(4), 102.0)
    m.set_tasks([task("t-alpha", task_pb2.TASK_STATE_SUCCEEDED), task("t-beta", task_pb2.TASK_STATE_RUNNING, "echo")])
    letter = deadletter_pb2.DeadLetter(task_id="t-dead", classification=1, error_class="invalid_input", message="bad")
    m.set_dead_letters([letter])
    return m


def text(widget: urwid.Widget, size: tuple[int, int] = SIZE) -> str:
    return "\n".join(row.decode() for row in widget.render(size, focus=True).text)


def test_the_model_folds_statuses_into_rows_and_announces_changes() -> None:
    """Depth history gives the sparkline and the drain rate; a change is a sentence; pause holds updates."""
    m = model()
    lane, tenant = m.queue_rows()
    assert (lane.name, lane.pending, lane.history, tenant.tenant) == ("inference/standard", 4, (9, 5), "acme")
    assert lane.drain_per_s == pytest.approx(2.0)  # depth 9 -> 5 in two seconds
    assert m.apply_status(status(0), 103.0) == ["queue inference/standard: 0 pending, 1 in flight"]
    m.pause()
    assert m.apply_status(status(7), 104.0) == [] and m.queue_rows()[0].pending == 0
    assert m.set_tasks([task("t-gamma", task_pb2.TASK_STATE_QUEUED)]) == []
    assert m.resume() == ["queue inference/standard: 7 pending, 1 in flight", "task t-gamma QUEUED"]
    assert drain_rate([(0.0, 5), (1.0, 9)]) == 0.0 and sparkline((0, 4, 8)) == "▁▅█"


def test_the_main_screen_shows_every_pane_with_focus_visible_without_colour() -> None:
    """Boxed panes with state words and symbols; the focused pane is `> Title <`, its focused row
    starts with `>`, and the cursor sits on that row."""
    screen = Screen(model(), Recorder(), endpoint="mesh:8080")
    shown = text(screen)
    for expected in ("> Queues <", "Workers", "Tasks", "Inference backends", "Dead letters", "✔ alive", "✖ open"):
        assert expected in shown
    assert "✔ SUCCEEDED" in shown and "▸ RUNNING" in shown and "POISON_INPUT" in shown
    focused_row = next(line for line in shown.splitlines() if "inference/standard" in line)
    assert focused_row.startswith("│> inference/standard")
    x, y = screen.render(SIZE, focus=True).cursor or (-1, -1)
    assert (x, y) == (1, shown.splitlines().index(focused_row))


def test_keys_move_between_panes_filter_and_open_help() -> None:
    """Tab moves the focus; / filters the task list as one types; ? lists every key; Esc closes it."""
    m = model()
    screen = Screen(m, Recorder())
    screen.keypress(SIZE, "tab")
    assert "> Workers <" in text(screen)
    for key in ("/", "e", "c", "h", "o", "enter"):
        screen.keypress(SIZE, key)
    screen.update()  # what the redraw the keys asked for does
    shown = text(screen)
    assert "Tasks · filter: 'echo' (1 of 2)" in shown and "t-beta" in shown and "t-alpha" not in shown
    screen.keypress(SIZE, "?")
    assert "Shift-Tab" in text(screen) and "replay the focused dead letter" in text(screen)
    screen.keypress(SIZE, "esc")
    assert "Shift-Tab  " not in text(screen)


def test_replay_asks_first_and_cancel_is_the_default() -> None:
    """R on a dead letter opens the dialog focused on Cancel: Enter cancels; Right, Enter replays."""
    actions = Recorder()
    screen = Screen(model(), actions)
    for _ in range(4):
        screen.keypress(SIZE, "tab")
    screen.keypress(SIZE, "R")
    shown = text(screen)
    assert "Replay dead-lettered task t-dead?" in shown and "> [ Cancel ]" in shown and "  [ Replay ]" in shown
    screen.keypress(SIZE, "enter")
    assert "Replay dead-lettered" not in text(screen) and ("replay", "t-dead") not in actions.calls
    screen.keypress(SIZE, "R")
    screen.keypress(SIZE, "right")
    assert "> [ Replay ]" in text(screen)
    screen.keypress(SIZE, "enter")
    assert ("replay", "t-dead") in actions.calls


def test_the_stream_view_follows_partial_outputs_to_the_end() -> None:
    """Each partial: sequence, time, confidence, output; then how the task ended."""
    m = model()
    screen = Screen(m, Recorder())
    screen.open(View(STREAM, "t-alpha"))
    for sequence, confidence, word in ((3, 0.5, "one"), (4, 1.0, "two")):
        event = task_pb2.TaskEvent(task_id="t-alpha", sequence=sequence, partial_confidence=confidence)
        event.output.text = word
        m.add_event(event)
    m.add_event(task_pb2.TaskEvent(task_id="t-alpha", sequence=5, final=True, state=task_pb2.TASK_STATE_SUCCEEDED))
    screen.update()
    rows = [line for line in text(screen).splitlines() if "one" in line or "two" in line or "ended" in line]
    assert [row.split()[-2] for row in rows[:2]] == ["one", "two"] and "0.50" in rows[0]
    assert "ended SUCCEEDED after 2 partial outputs" in rows[2]


def test_accessible_mode_is_linear_and_announces_changes() -> None:
    """No box drawing; the changes appended as timestamped lines in their own section."""
    screen = Screen(model(), Recorder(), linear=True)
    screen.announce(["worker worker-1 dead"], now=0.0)
    screen.update()
    shown = text(screen)
    assert not any(ch in shown for ch in "┌┐└┘│─")
    assert "> Queues <" in shown and "Changes" in shown and "worker worker-1 dead" in shown


def test_redraws_are_coalesced_and_throttled() -> None:
    """Many requests within a frame make one draw, scheduled no sooner than 1/fps after the last."""

    class Loop:
        def __init__(self) -> None:
            self.scheduled: list[tuple[float, Any]] = []

        def call_later(self, delay: float, callback: Any) -> Any:
            self.scheduled.append((delay, callback))
            return self

        def cancel(self) -> None:
            pass

    now = [0.0]
    loop = Loop()
    drawn: list[float] = []
    throttle = Throttle(lambda: drawn.append(now[0]), fps=10, loop=loop, clock=lambda: now[0])  # type: ignore[arg-type]
    for _ in range(50):
        throttle.request()
    assert len(loop.scheduled) == 1 and loop.scheduled[0][0] == 0.0
    loop.scheduled.pop()[1]()
    now[0] = 0.02
    throttle.request()
    assert loop.scheduled[0][0] == pytest.approx(0.08) and drawn == [0.0]
    assert (clamp_fps(500), clamp_fps(0), clamp_fps(float("nan"))) == (60.0, 1.0, 10.0)


@pytest.mark.parametrize("name", THEMES)
def test_every_pair_the_dashboard_draws_meets_its_contrast(name: str) -> None:
    """The focused row (background on the focus colour) included; 7:1 throughout high contrast."""
    colours = theme(name)
    failing = [
        (fg, bg, round(contrast(colours[fg], colours[bg]), 2))
        for pairs, kind in ((TEXT_PAIRS, "text"), (UI_PAIRS, "ui"))
        for fg, bg in pairs
        if contrast(colours[fg], colours[bg]) < MINIMUM["high-contrast" if name == "high-contrast" else kind]
    ]
    assert not failing
    assert {entry[0] for entry in palette(name)} == {entry[0] for entry in palette(None)}


def test_accessible_replay_is_a_linear_prompt_with_cancel_first() -> None:
    """--accessible: the replay question is plain lines at the bottom (no box), announced as a line,
    the cursor on the focused Cancel; Enter alone cancels, Right then Enter replays."""
    actions = Recorder()
    screen = Screen(model(), actions, linear=True)
    for _ in range(4):
        screen.keypress(SIZE, "tab")
    screen.keypress(SIZE, "R")
    shown = text(screen)
    assert not any(ch in shown for ch in "┌┐└┘│─")
    rows = shown.splitlines()
    assert rows[-3].startswith("Confirm: Replay dead-lettered task t-dead?")
    assert rows[-2].startswith("> [ Cancel ]") and "[ Replay ]" in rows[-2]
    assert screen.render(SIZE, focus=True).cursor == (0, len(rows) - 2)
    assert any("confirm: Replay dead-lettered task t-dead?" in line for line in screen.changes)
    screen.keypress(SIZE, "enter")
    assert "Confirm:" not in text(screen) and ("replay", "t-dead") not in actions.calls
    screen.keypress(SIZE, "R")
    screen.keypress(SIZE, "right")
    screen.keypress(SIZE, "enter")
    assert ("replay", "t-dead") in actions.calls and text(screen).splitlines()[-1].startswith("replaying t-dead")


def test_accessible_help_has_no_box() -> None:
    """? in --accessible lists the keys as lines, without box drawing."""
    screen = Screen(model(), Recorder(), linear=True)
    screen.keypress(SIZE, "?")
    shown = text(screen)
    assert "Shift-Tab" in shown and not any(ch in shown for ch in "┌┐└┘│─")


def test_alerts_come_from_the_status_and_the_dead_letters() -> None:
    """An open circuit, a dead or draining worker, a lane older than the threshold and each dead
    letter not replayed (new ones: arrived while watching) are alerts, errors first, each with its
    runbook, the CLI commands that act on it and its dashboard view."""
    m = model()
    assert [(a.key, a.word, a.severity) for a in m.alerts()] == [
        ("backend//cpu/embedded", "open", "error"),
        ("dlq/t-dead", "unreplayed", "warn"),  # there when the dashboard first listed them
    ]
    circuit, letter = m.alerts()
    assert (circuit.runbook, circuit.commands, circuit.view) == (
        DEPENDENCY_DOWN,
        ("tidemesh status",),
        "tidemesh dash --pane backends",
    )
    # A poison input is not worth replaying: its commands are the record's rule's, without replay.
    assert letter.runbook == "docs/runbooks/poison-input.md" and letter.view == "tidemesh dash --dlq t-dead"
    assert letter.commands == ("tidemesh dlq show t-dead", "tidemesh dlq purge t-dead")

    reading = status(3)
    reading.queues[0].oldest_age_s = 45.0
    reading.inference_backends[0].circuit = "half_open"
    reading.workers.add(worker_id="worker-2", pools=["cpu"], health=2)
    reading.workers.add(worker_id="worker-3", pools=["cpu"], health=3)
    m.apply_status(reading, 104.0)
    fresh = deadletter_pb2.DeadLetter(
        task_id="t-new", classification=5, runbook="docs/runbooks/dependency-down.md", cli_commands=["x show"]
    )
    fresh.dashboard_view = "tidemesh dash --dlq t-new"
    replayed = deadletter_pb2.DeadLetter(task_id="t-old", classification=5, replayed_as=["t-old-r"])
    m.set_dead_letters([*m.dead_letters, fresh, replayed])
    found = {a.key: a for a in m.alerts()}
    assert [(a.word, a.severity) for a in m.alerts()][:2] == [("dead", "error"), ("new", "error")]
    assert (found["worker/worker-3"].word, found["worker/worker-3"].severity) == ("draining", "warn")
    assert (found["backend//cpu/embedded"].word, found["backend//cpu/embedded"].severity) == ("half_open", "warn")
    lane = found["lane/inference/standard"]
    assert (lane.word, lane.runbook, lane.view) == ("old", RESOURCE_EXHAUSTION, "tidemesh dash --pane queues")
    assert found["dlq/t-new"].commands == ("x show",) and "dlq/t-old" not in found
    m.alert_age_s = 60.0
    assert "lane/inference/standard" not in {a.key for a in m.alerts()}


def test_the_alerts_pane_shows_each_alert_and_opens_its_view() -> None:
    """Word and symbol, runbook, commands and view; Enter on an alert goes where it points."""
    screen = Screen(model(), Recorder())
    shown = text(screen)
    assert "Alerts (2)" in shown and "✖ open" in shown and "runbook docs/runbooks/dependency-down.md" in shown
    assert "act: tidemesh status · view: tidemesh dash --pane backends" in shown
    assert "act: tidemesh dlq show t-dead · tidemesh dlq purge t-dead · view: tidemesh dash --dlq t-dead" in shown
    for _ in range(5):
        screen.keypress(SIZE, "tab")
    assert "> Alerts (2) <" in text(screen)
    screen.keypress(SIZE, "enter")
    assert "> Inference backends <" in text(screen)
    screen.focus_named("alerts")
    screen.keypress(SIZE, "down")  # past the circuit's command line to the dead letter
    screen.keypress(SIZE, "enter")
    assert "Dead letter t-dead" in text(screen) and "poison" in text(screen).lower()


def test_a_pane_at_rest_shows_its_top_and_the_focused_pane_keeps_its_row() -> None:
    """New rows above: an unfocused pane shows them under its heading; a focused one keeps its row."""

    def lines(*keys: str) -> list[Line]:
        return [Line(["heading"]), *(Line([key], key=key) for key in keys)]

    pane = Pane("Tasks")
    pane.show(lines(*(f"t{i}" for i in range(10, 0, -1))))
    pane.render((40, 6))
    pane.show(lines(*(f"t{i}" for i in range(12, 0, -1))))
    assert [row.decode().strip("│ ") for row in pane.render((40, 6)).text][1:3] == ["heading", "t12"]
    pane.mark_focus(True)
    for _ in range(5):
        pane.keypress((40, 6), "down")
    pane.show(lines(*(f"t{i}" for i in range(13, 0, -1))))
    assert pane.focused_key() == "t7"
