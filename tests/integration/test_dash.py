"""`tidemesh dash` in tmux against a live mesh, by keyboard alone: a task's live stream to its end,
the task filter, the help overlay, replaying a dead letter through the dialog (Cancel first), the
queue pane while tasks wait, and the accessible mode (no box drawing, announced changes, alerts,
the cursor on the focused row)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clients.sdk import Client
from tests.integration.conftest import Mesh

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TMUX = "/usr/bin/tmux"
TIDEMESH = str(Path(sys.executable).parent / "tidemesh")


@dataclass
class Tmux:
    socket: str

    def run(self, *args: str) -> str:
        done = subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True, timeout=10, check=True)
        return done.stdout

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "dash", *keys)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "dash")

    def wait_for(self, pattern: str, timeout_s: float = 10.0) -> re.Match[str]:
        """Poll the screen until `pattern` (a regex, multiline) shows; fail with the screen."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = re.search(pattern, self.screen(), re.MULTILINE)
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on screen within {timeout_s}s:\n{self.screen()}")
            time.sleep(0.05)  # polling the pane, bounded by the deadline

    def wait_gone(self, pattern: str, timeout_s: float = 10.0) -> None:
        """Poll the screen until `pattern` no longer shows (a lone Escape is told from the start of
        a key sequence only by the time after it, so the next key must wait for its effect)."""
        deadline = time.monotonic() + timeout_s
        while re.search(pattern, self.screen(), re.MULTILINE):
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} still on screen after {timeout_s}s:\n{self.screen()}")
            time.sleep(0.05)  # polling the pane, bounded by the deadline

    def cursor(self) -> tuple[int, int]:
        x, y = self.run("display-message", "-p", "-t", "dash", "#{cursor_x} #{cursor_y}").split()
        return int(x), int(y)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    server = Tmux(f"tidemesh-dash-{uuid.uuid4().hex[:8]}")
    try:
        yield server
    finally:
        subprocess.run([TMUX, "-L", server.socket, "kill-server"], capture_output=True, timeout=10, check=False)


def start(tmux: Tmux, mesh: Mesh, *flags: str) -> None:
    command = [TIDEMESH, "dash", "--endpoint", mesh.endpoint, "--state-dir", str(mesh.plan.state_dir)]
    tmux.run(
        "new-session", "-d", "-s", "dash", "-x", "160", "-y", "48", "-c", str(REPO),
        shlex.join([*command, "--tenant", "dash", *flags]),
    )  # fmt: skip


BOX_DRAWING = re.compile("[\u2500-\u257f]")
CHANGE_LINE = re.compile(r"^(\d\d:\d\d:\d\d) (.+?)\s*$")


def assert_cursor_on_focused_row(tmux: Tmux, row_pattern: str, timeout_s: float = 5.0) -> None:
    """The hardware cursor (what BRLTTY and screen readers follow) is on the row with the `>` marker
    once a frame is complete (a capture can land mid-redraw: the cursor is then where drawing is)."""
    deadline = time.monotonic() + timeout_s
    while True:
        x, y = tmux.cursor()
        rows = tmux.screen().splitlines()
        marked = [i for i, row in enumerate(rows) if re.match(row_pattern, row)]
        if marked == [y] and rows[y][x:].startswith("> "):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"cursor at {x},{y}, marker on rows {marked}:\n" + "\n".join(rows))
        time.sleep(0.05)  # polling the pane, bounded by the deadline


async def test_dashboard_by_keyboard_on_a_live_mesh(mesh: Mesh, tmux: Tmux) -> None:
    """Follow a streaming task to its end; filter the task list; the help overlay; replay a dead
    letter through the dialog (Enter alone cancels); see the queue pane while tasks wait."""
    async with Client(mesh.endpoint, tenant="dash") as client:
        streaming = await client.submit(
            "stream", {"text": "alpha beta gamma delta", "chunks": 4, "chunk_delay_ms": 150}
        )
        dead = await client.submit("embed", {"text": "x", "model": "no-such-model"})
        [event async for event in client.watch(dead.task_id)]

        start(tmux, mesh, "--task", streaming.task_id)
        # The live stream: each partial with its sequence, time and confidence, then the end.
        tmux.wait_for(r"ended SUCCEEDED after 4 partial outputs")
        partials = re.findall(
            r"^[│> ]*(\d+)\s+(\d\d:\d\d:\d\d\.\d{3})\s+([01]\.\d\d)\s+(\w+ \w+|\w+)", tmux.screen(), re.M
        )
        assert [p[3] for p in partials] == ["alpha", "beta", "gamma", "delta"], tmux.screen()
        assert [float(p[2]) for p in partials] == sorted(float(p[2]) for p in partials)
        tmux.keys("Escape")
        tmux.wait_for(r"> Queues <")  # back on the main view
        assert_cursor_on_focused_row(tmux, r"│> \S+/\S+")

        # The task list, filtered to the dead task's kind.
        tmux.keys("/", "embed", "Enter")
        tmux.wait_for(r"filter: 'embed' \(1 of \d+\)")
        screen = tmux.screen()
        assert dead.task_id in screen and streaming.task_id not in screen

        tmux.keys("?")
        tmux.wait_for(r"Shift-Tab\s+next / previous pane")
        assert "replay the focused dead letter" in tmux.screen()
        tmux.keys("Escape")
        tmux.wait_gone(r"Help ─")

        # The dead letter: Tab to its pane, R, Enter on the default (Cancel) does nothing ...
        tmux.keys("Tab", "Tab")
        tmux.wait_for(r"> Dead letters <")
        tmux.keys("R")
        tmux.wait_for(r"> \[ Cancel \]")
        x, y = tmux.cursor()
        assert tmux.screen().splitlines()[y][x:].startswith("> [ Cancel ]"), "the cursor sits on the focused button"
        tmux.keys("Enter")
        tmux.wait_for(r"Tab panes")  # the dialog closed, the hint is back
        assert (await client.dead_letter(dead.task_id)).replayed_as == []
        # ... Right then Enter replays.
        tmux.keys("R")
        tmux.wait_for(r"> \[ Cancel \]")
        tmux.keys("Right", "Enter")
        tmux.wait_for(rf"replayed {dead.task_id} as {dead.task_id}-r")
        assert list((await client.dead_letter(dead.task_id)).replayed_as) == [f"{dead.task_id}-r"]

        # Tasks waiting: more long tasks than the worker runs at once (32).
        specs = [
            client.spec("stream", {"text": "slow", "chunks": 40, "chunk_delay_ms": 100}, priority="batch")
            for _ in range(40)
        ]
        waiting = [s.task_id for s in await client.submit_many(specs)]
        try:
            # The tenant's partition under its lane: depth (waiting + delivered) and its sparkline.
            row = tmux.wait_for(r"^│\s+dash\s+(\d+)\s+(\d+)\s+\S+s\s+[\d.]+\s+[▁▂▃▄▅▆▇█]+", timeout_s=10)
            assert int(row.group(1)) + int(row.group(2)) > 0, tmux.screen()
            tmux.keys("q")
        finally:
            for task_id in waiting:
                await client.cancel(task_id)


async def test_accessible_mode_on_a_live_mesh(mesh: Mesh, tmux: Tmux) -> None:
    """--accessible: no box drawing anywhere, changes appended as timestamped lines (newest last),
    a task submitted from the `:` palette, the cursor on the focused row, and replay asked as a
    plain prompt whose default is Cancel."""
    async with Client(mesh.endpoint, tenant="dash") as client:
        dead = await client.submit("embed", {"text": "x", "model": "no-such-model"})
        [event async for event in client.watch(dead.task_id)]
        start(tmux, mesh, "--accessible")
        tmux.wait_for(r"^> Queues <")
        tmux.wait_for(r"^  \d\d:\d\d:\d\d\.\d{3} \S+")  # a dead letter listed
        # The dead letter as an alert: state word, runbook, the commands and the view that act on it.
        tmux.wait_for(r"^  [✖▲] (new|unreplayed)\s+dead letter \S+ \w+: .* runbook docs/runbooks/[a-z-]+\.md")
        tmux.wait_for(r"^\s+act: tidemesh dlq show \S+ .*· view: tidemesh dash --dlq \S+")
        assert_cursor_on_focused_row(tmux, r"> \S+/\S+")
        assert not BOX_DRAWING.search(tmux.screen()), tmux.screen()

        tmux.keys("p")
        tmux.wait_for(r"live updates paused")
        tmux.keys("p")
        tmux.wait_for(r"live updates resumed")
        # The command palette, as typed at the CLI (Tab completes the verb): the task shows in the list.
        tmux.keys(":sub", "Tab", "echo --text hi", "Enter")
        echoed = tmux.wait_for(r"^\s*\d\d:\d\d:\d\d submitted echo as (\S+)").group(1)
        tmux.wait_for(rf"^  {echoed}\s+echo\s+")
        tmux.wait_for(rf"^\s*\d\d:\d\d:\d\d task {echoed} SUCCEEDED")
        assert (await client.get(echoed)).spec.payload.echo.text == "hi"
        changes = [CHANGE_LINE.match(row.strip()) for row in tmux.screen().split("Changes", 1)[1].splitlines()]
        said = [(found.group(1), found.group(2)) for found in changes if found]
        sentences = [sentence for _, sentence in said]
        assert sentences.index("live updates paused (p resumes)") < sentences.index("live updates resumed")
        assert sentences.index("live updates resumed") < sentences.index(f"task {echoed} SUCCEEDED")
        assert [stamp for stamp, _ in said] == sorted(stamp for stamp, _ in said), said

        # Replay asks on plain lines at the bottom; Enter on the default (Cancel) does nothing.
        tmux.keys("Tab", "Tab", "Tab", "Tab")
        tmux.wait_for(r"^> Dead letters <")
        assert_cursor_on_focused_row(tmux, r"> \d\d:\d\d:\d\d\.\d{3} ")
        tmux.keys("R")
        asked = tmux.wait_for(r"^Confirm: Replay dead-lettered task (\S+)\?")
        x, y = tmux.cursor()
        screen = tmux.screen()
        assert screen.splitlines()[y][x:].startswith("> [ Cancel ]") and not BOX_DRAWING.search(screen), screen
        before = list((await client.dead_letter(asked.group(1))).replayed_as)
        tmux.keys("Enter")
        tmux.wait_gone(r"^Confirm: ")
        assert list((await client.dead_letter(asked.group(1))).replayed_as) == before
        tmux.keys("q")
