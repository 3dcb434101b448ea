"""Pane transitions and reduced motion: durations from the design tokens, a brief flash of the
pane the focus reaches and of rows that appear, and nothing of the kind under reduced motion."""

from __future__ import annotations

import urwid

from mesh.v1 import task_pb2
from tests.unit.test_tui_render import SIZE, Recorder, model, task
from tui import Motion, Screen, reduced_motion


def attrs(widget: urwid.Widget) -> set[object]:
    """Every display attribute the widget draws with (of layered ones, the innermost: what shows)."""
    drawn = (attr for row in widget.render(SIZE, focus=True).content() for attr, _, _ in row if attr)
    return {attr.layers[0] if isinstance(attr, urwid.util.LayeredAttr) else attr for attr in drawn}


def test_durations_come_from_the_motion_tokens() -> None:
    """motion.pane and motion.fast in tokens.json (milliseconds there, seconds here)."""
    motion = Motion()
    assert (motion.pane_s, motion.fast_s) == (0.2, 0.12)


def test_reduced_motion_is_asked_for_or_implied() -> None:
    """--reduced-motion, TIDEMESH_REDUCED_MOTION=1 and --accessible all hold still; the flag wins over the env."""
    assert not reduced_motion(None, False, {})
    assert reduced_motion(True, False, {}) and reduced_motion(None, True, {})
    assert reduced_motion(None, False, {"TIDEMESH_REDUCED_MOTION": "1"})
    assert not reduced_motion(None, False, {"TIDEMESH_REDUCED_MOTION": "0"})
    assert not reduced_motion(False, False, {"TIDEMESH_REDUCED_MOTION": "1"})
    assert reduced_motion(False, True, {})  # the linear mode never moves


def test_focus_and_new_rows_flash_briefly_then_settle() -> None:
    """Tab lights the new pane's border and a new task row lights up, each for its token's time;
    a redraw is asked for when they settle, and then neither is drawn."""
    now = [0.0]
    actions = Recorder()
    m = model()
    screen = Screen(m, actions, motion=Motion(clock=lambda: now[0]))
    now[0] = 1.0
    screen.update()
    assert not {"flash", "changed"} & attrs(screen)
    screen.keypress(SIZE, "tab")
    screen.update()
    assert "flash" in attrs(screen) and ("redraw_after", 0.2) in actions.calls
    m.set_tasks([task("t-new", task_pb2.TASK_STATE_QUEUED), *m.tasks])
    now[0] = 1.1
    screen.update()
    drawn = attrs(screen)
    assert "changed" in drawn and "flash" in drawn
    now[0] = 1.3
    screen.update()
    assert not {"flash", "changed"} & attrs(screen)
    assert actions.calls.count(("redraw_after", 0.2)) == 1


def test_reduced_motion_draws_no_transition() -> None:
    """The same steps under reduced motion: no flash, no highlight, no redraw scheduled for them."""
    actions = Recorder()
    m = model()
    screen = Screen(m, actions, motion=Motion(enabled=False))
    screen.keypress(SIZE, "tab")
    m.set_tasks([task("t-new", task_pb2.TASK_STATE_QUEUED), *m.tasks])
    screen.update()
    assert not {"flash", "changed"} & attrs(screen)
    assert not [call for call in actions.calls if call[0] == "redraw_after"]
    linear = Screen(model(), Recorder(), linear=True)
    assert not linear.motion.enabled
