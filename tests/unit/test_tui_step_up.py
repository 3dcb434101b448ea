"""The dashboard's purge and its second factor, without a terminal: D asks first (Cancel the default);
a purge the mesh challenges opens a prompt for a one-time code — labelled, the cursor in its field,
Tab kept inside — that shows a refused code on the field and asks again, runs the purge once more
with the token a good code buys, and on Esc does nothing; in --accessible plain lines, announced,
the code itself never said."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from mesh.errors import InvalidArgument, StepUpRequired, Unauthenticated, Unavailable
from tests.unit.test_tui_render import SIZE, Recorder, model, text
from tui import Screen
from tui._app import Dashboard
from tui._stepup import checked_code, with_step_up

GOOD, TOKEN = "246810", "token-for-t-dead"
CHALLENGE = ("dlq.purge", "dlq:t-dead")


class Mesh:
    """The SDK calls the dashboard's purge makes: a purge wants TOKEN, which GOOD buys."""

    def __init__(self) -> None:
        self.purges: list[str] = []  # the step-up token each purge brought
        self.codes: list[str] = []
        self.letters = ["t-dead"]

    async def purge_dead_letters(self, task_id: str = "", tenant: str = "", step_up: str = "") -> int:
        self.purges.append(step_up)
        if step_up != TOKEN:
            raise StepUpRequired("dlq.purge on dlq:t-dead needs a fresh second factor", *CHALLENGE)
        self.letters.remove(task_id)
        return 1

    async def step_up(self, action: str, resource: str, code: str) -> Any:
        self.codes.append(code)
        if (action, resource) != CHALLENGE or code != GOOD:
            raise Unauthenticated("code: the one-time code is wrong or too old")
        return SimpleNamespace(token=TOKEN, amr=["otp"])

    async def list_tasks(self, tenant: str, limit: int) -> tuple[list[Any], str]:
        return [], ""

    async def dead_letters(self, limit: int) -> list[Any]:
        return [letter for letter in model().dead_letters if letter.task_id in self.letters]


def dashboard(linear: bool = False) -> tuple[Dashboard, Mesh]:
    mesh = Mesh()
    dash = Dashboard(mesh, tenant="default", linear=linear, fps=60, theme=None, endpoint="mesh:8080")  # type: ignore[arg-type]
    dash.model = dash.screen.model = model()
    dash.screen.update()
    return dash, mesh


async def until(done: Callable[[], bool], what: str) -> None:
    """Let the dashboard's tasks run until `done()`: bounded by the loop's turns (the fake mesh answers
    at once, so a few turns are enough) and by a second."""
    async with asyncio.timeout(1.0):
        for _ in range(10_000):
            if done():
                return
            await asyncio.sleep(0)
    raise AssertionError(f"not done: {what}")


def keys(screen: Screen, *pressed: str) -> None:
    for key in pressed:
        screen.keypress(SIZE, key)


def to_dead_letters(screen: Screen) -> None:
    keys(screen, *["tab"] * 4)


def test_purge_asks_first_and_cancel_is_the_default() -> None:
    """D on a dead letter opens the confirmation on Cancel: Enter cancels; Right, Enter purges; `:dlq purge ID` too."""
    actions = Recorder()
    screen = Screen(model(), actions)
    keys(screen, "D")
    assert "D purges a dead letter: focus the Dead letters pane" in text(screen)
    to_dead_letters(screen)
    keys(screen, "D")
    shown = text(screen)
    assert "Purge the dead letter of t-dead?" in shown and "> [ Cancel ]" in shown and "  [ Purge ]" in shown
    keys(screen, "enter")
    assert "Purge the dead letter" not in text(screen) and ("purge", "t-dead") not in actions.calls
    keys(screen, "D", "right", "enter")
    assert ("purge", "t-dead") in actions.calls and "purging the dead letter of t-dead" in text(screen)
    screen.run_command("dlq purge t-other")  # the palette's line asks the same way (no CLI parser: refused)
    assert "error: no command palette here" in text(screen)


async def test_a_challenged_purge_asks_for_a_code_and_goes_through_with_a_good_one() -> None:
    """The challenge opens the prompt (what it approves, the field focused, the cursor in it); a wrong code
    is said on the field, which empties and keeps the focus; a malformed one is refused before any call;
    a good one buys the token and the purge runs once more with it; the record leaves the pane."""
    dash, mesh = dashboard()
    screen = dash.screen
    to_dead_letters(screen)
    keys(screen, "D", "right", "enter")
    await until(lambda: screen.overlay == "code", "the prompt for a code")
    shown = text(screen)
    assert "Second factor" in shown and "dlq.purge on dlq:t-dead wants a fresh second factor" in shown
    assert "One-time code:" in shown and mesh.purges == [""]
    rows = shown.splitlines()
    x, y = screen.render(SIZE, focus=True).cursor or (-1, -1)
    assert "One-time code:" in rows[y] and rows[y].index("One-time code:") + len("One-time code: ") == x

    keys(screen, *"135791", "enter")
    await until(lambda: "wrong or too old" in text(screen), "the refusal on the field")
    assert mesh.codes == ["135791"] and "error: code: the one-time code is wrong or too old" in text(screen)
    assert "135791" not in text(screen) and screen.overlay == "code"
    keys(screen, *"12a45", "enter")
    await until(lambda: "error: code: a one-time code is 6 digits" in text(screen), "the malformed code refused")
    assert mesh.codes == ["135791"]  # not sent

    keys(screen, *GOOD, "enter")
    await until(lambda: "purged the dead letter of t-dead" in text(screen), "the purge done")
    assert mesh.codes == ["135791", GOOD] and mesh.purges == ["", TOKEN] and screen.overlay is None
    await until(lambda: "t-dead" not in "".join(d.task_id for d in dash.model.dead_letters), "the list fetched")


async def test_cancelling_the_prompt_purges_nothing() -> None:
    """Esc (or Cancel) closes the prompt: no code sent, the purge not repeated, and it says so."""
    for cancel in (("esc",), ("tab", "enter")):  # Tab from the field is Cancel
        dash, mesh = dashboard()
        to_dead_letters(dash.screen)
        keys(dash.screen, "D", "right", "enter")
        await until(lambda: dash.screen.overlay == "code", "the prompt")  # noqa: B023
        keys(dash.screen, *cancel)
        await until(lambda: "cancelled" in text(dash.screen), "the cancellation said")  # noqa: B023
        assert "purge of t-dead cancelled: no second factor given, nothing purged" in text(dash.screen)
        assert mesh.purges == [""] and mesh.codes == [] and mesh.letters == ["t-dead"]


async def test_tab_goes_round_the_field_and_buttons_and_never_leaves_the_prompt() -> None:
    """Tab: field → Cancel → Step up → field; Shift-Tab the other way; Enter on Step up offers the code."""
    dash, mesh = dashboard()
    screen = dash.screen
    to_dead_letters(screen)
    keys(screen, "D", "right", "enter")
    await until(lambda: screen.overlay == "code", "the prompt")

    def focused() -> str:
        rows = text(screen).splitlines()
        if "> [ Cancel ]" in text(screen):
            return "cancel"
        if "> [ Step up ]" in text(screen):
            return "step up"
        x, y = screen.render(SIZE, focus=True).cursor or (-1, -1)
        return "field" if "One-time code:" in rows[y] else f"elsewhere ({x},{y})"

    walk = [focused()]
    for key in ("tab", "tab", "tab", "shift tab", "shift tab", "shift tab"):
        keys(screen, key)
        walk.append(focused())
    assert walk == ["field", "cancel", "step up", "field", "step up", "cancel", "field"]
    keys(screen, *GOOD, "shift tab", "enter")
    await until(lambda: mesh.purges == ["", TOKEN], "the purge with the token")


async def test_accessible_prompt_is_plain_lines_announced_without_the_code() -> None:
    """--accessible: the prompt sits at the bottom without box drawing, announced as a change; a refusal is
    announced too; the code typed is in no announcement or message."""
    dash, mesh = dashboard(linear=True)
    screen = dash.screen
    to_dead_letters(screen)
    keys(screen, "D", "right", "enter")
    await until(lambda: screen.overlay == "code", "the prompt")
    shown = text(screen)
    assert not any(ch in shown for ch in "┌┐└┘│─")
    rows = shown.splitlines()
    assert any(row.startswith("Second factor: dlq.purge on dlq:t-dead") for row in rows[-6:])
    assert screen.render(SIZE, focus=True).cursor is not None
    assert any("second factor: dlq.purge on dlq:t-dead" in line for line in screen.changes)
    keys(screen, *"135791", "enter")
    await until(lambda: any("was not taken" in line for line in screen.changes), "the refusal announced")
    keys(screen, *GOOD, "enter")
    await until(lambda: mesh.purges == ["", TOKEN], "the purge")
    said = [*screen.changes, screen.message]
    assert not any("135791" in line or GOOD in line for line in said)


async def test_with_step_up_runs_once_without_a_challenge_and_lets_other_errors_through() -> None:
    def ask(challenge: StepUpRequired) -> Any:
        raise AssertionError("no prompt without a challenge")

    async def step_up(action: str, resource: str, code: str) -> str:
        raise AssertionError("no step-up without a challenge")

    async def fine(token: str) -> int:
        return 7

    async def down(token: str) -> int:
        raise Unavailable("the gateway is away")

    assert await with_step_up(ask, step_up, fine) == 7
    with pytest.raises(Unavailable):
        await with_step_up(ask, step_up, down)
    assert checked_code(" 123 456 ") == "123456"
    with pytest.raises(InvalidArgument) as refused:
        checked_code("12345")
    assert refused.value.field == "code"
