"""The dashboard's screen: the panes laid out (boxed, or linear for `--accessible`), the views one
opens from them (a task's detail, its live stream, a dead letter's diagnosis), the help overlay,
the replay and purge dialogs, the prompt for a one-time code (`ask_code`), and the keys. What the
keys do to the mesh goes through `Actions`; the screen only reads the model.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import urwid

from mesh.errors import StepUpRequired
from tui import _views as views
from tui._commands import Command, CommandError, complete, parse
from tui._model import PANE_NAMES, DashModel
from tui._motion import Motion
from tui._panes import CodeDialog, ConfirmDialog, Pane, Size, help_overlay
from tui._stepup import CodePrompt

MAIN, TASK, STREAM, DEAD_LETTER = "main", "task", "stream", "dead letter"
# The main view's panes by the names `--pane` and an alert's view give them, in Tab order.
CHANGES_KEPT = 200


class Actions(Protocol):
    """What the screen asks of whoever talks to the mesh (`tui._app.Dashboard`)."""

    def watch_task(self, task_id: str) -> None: ...
    def stop_watching(self) -> None: ...
    def replay(self, task_id: str) -> None: ...
    def purge(self, task_id: str) -> None: ...
    def refresh(self) -> None: ...
    def toggle_pause(self) -> None: ...
    def quit(self) -> None: ...
    def redraw(self) -> None: ...
    def redraw_after(self, delay_s: float) -> None: ...
    def submit(self, kind: str, payload: dict[str, Any], priority: str) -> None: ...
    def cancel(self, task_ids: tuple[str, ...]) -> None: ...
    def set_theme(self, name: str) -> None: ...


@dataclass(frozen=True)
class View:
    kind: str
    key: str = ""  # the task id a detail view is about


class Screen(urwid.WidgetWrap[urwid.Widget]):
    def __init__(
        self,
        model: DashModel,
        actions: Actions,
        *,
        linear: bool = False,
        endpoint: str = "",
        cli: argparse.ArgumentParser | None = None,
        motion: Motion | None = None,
    ) -> None:
        self.model = model
        # Transitions (`tui._motion`): on unless told otherwise, never in the linear mode.
        self.motion = motion or Motion(enabled=not linear)
        self.cli = cli  # the CLI's own parser: the command palette reads its verbs with it
        self.actions = actions
        self.linear = linear
        self.endpoint = endpoint
        self.message = ""
        self.changes: list[str] = []  # the linear mode's announcements, oldest first
        self.queues = Pane("Queues", linear, self.motion)
        self.workers = Pane("Workers", linear, self.motion)
        self.tasks = Pane("Tasks", linear, self.motion)
        self.backends = Pane("Inference backends", linear, self.motion)
        self.dead_letters = Pane("Dead letters", linear, self.motion)
        self.alerts = Pane("Alerts", linear, self.motion)
        self.detail = Pane("Task", linear, self.motion)
        self.announced = Pane("Changes", linear, self.motion)
        self.panes = [self.queues, self.workers, self.tasks, self.backends, self.dead_letters, self.alerts]
        if linear:
            self.panes.append(self.announced)
        self.focused = 0
        self.stack = [View(MAIN)]
        self.overlay: str | None = None  # "help", "dialog" (a confirmation) or "code" (a one-time code)
        self.dialog: ConfirmDialog | None = None
        self.code_dialog: CodeDialog | None = None
        self.filter_edit = urwid.Edit(("accent", "/ filter tasks: "))
        self.filtering = False
        self.command_edit = urwid.Edit(("accent", ":"))
        self.prompting = False  # the command palette is open
        self.header = urwid.Text("", wrap="clip")
        self.footer = urwid.Text("", wrap="clip")
        self.main = self._main_layout()
        self.frame: urwid.Frame[urwid.Widget, Any, Any] = urwid.Frame(
            self.main, header=urwid.AttrMap(self.header, "header"), footer=self.footer
        )
        super().__init__(urwid.AttrMap(self.frame, "body"))
        self._focus_pane(0)
        self.update()

    # -- layout -------------------------------------------------------------------------------

    def _main_layout(self) -> urwid.Widget:
        if self.linear:  # one column, top to bottom, headings instead of boxes
            return urwid.Pile([("weight", 1, pane) for pane in self.panes])
        top = urwid.Columns([self.queues, self.workers])
        middle = urwid.Columns([self.tasks, self.backends])
        return urwid.Pile(
            [
                ("weight", 1.3, top),
                ("weight", 1.1, middle),
                ("weight", 0.6, self.dead_letters),
                ("weight", 0.6, self.alerts),
            ]
        )

    def _focus_pane(self, index: int) -> None:
        self.focused = index % len(self.panes)
        for i, pane in enumerate(self.panes):
            pane.mark_focus(i == self.focused)
        pile = self.main
        assert isinstance(pile, urwid.Pile)
        if self.linear:
            pile.focus_position = self.focused
            return
        place = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1), 4: (2, None), 5: (3, None)}[self.focused]
        pile.focus_position = place[0]
        if place[1] is not None:
            columns = pile.contents[place[0]][0]
            assert isinstance(columns, urwid.Columns)
            columns.focus_position = place[1]

    def focus_named(self, name: str) -> None:
        """Focus the main view's pane called `name` (one of PANE_NAMES)."""
        self._back_to_main()
        self._focus_pane(PANE_NAMES.index(name))

    @property
    def view(self) -> View:
        return self.stack[-1]

    def _show_view(self) -> None:
        view = self.view
        if view.kind == MAIN:
            body: urwid.Widget = self.main
        else:
            self.detail.focused = True
            self.detail.set_title(f"{view.kind.capitalize()} {view.key}")
            body = self.detail
        self.frame.body = body
        self._compose()

    def _compose(self) -> None:
        base = urwid.AttrMap(self.frame, "body")
        if self.overlay == "help":
            self._w = help_overlay(base, self.linear)
        elif self.overlay == "dialog" and self.dialog is not None and not self.linear:
            self._w = self.dialog.over(base)
        elif self.overlay == "code" and self.code_dialog is not None and not self.linear:
            self._w = self.code_dialog.over(base)
        else:
            self._w = base
        self._bottom()

    def _bottom(self) -> None:
        """The frame's last line: the linear mode's dialog, the filter, or the hint; the keys go
        to what it shows when that takes input."""
        bottom: urwid.Widget = self.footer
        if self.overlay == "dialog" and self.linear and self.dialog is not None:
            bottom = self.dialog
        elif self.overlay == "code" and self.linear and self.code_dialog is not None:
            bottom = self.code_dialog
        elif self.filtering:
            bottom = self.filter_edit
        elif self.prompting:
            bottom = self.command_edit
        if self.frame.footer is not bottom:
            self.frame.footer = bottom
        self.frame.focus_position = "body" if bottom is self.footer else "footer"

    # -- content ------------------------------------------------------------------------------

    def announce(self, sentences: list[str], now: float | None = None) -> None:
        stamp = time.time() if now is None else now
        self.changes = (self.changes + [views.announce(s, stamp) for s in sentences])[-CHANGES_KEPT:]

    def update(self, now: float | None = None) -> None:
        """Redraw every pane from the model (the throttle calls this; then urwid draws)."""
        now = time.time() if now is None else now
        model = self.model
        self.queues.show(views.queue_lines(model))
        self.workers.show(views.worker_lines(model, now))
        self.tasks.show(views.task_lines(model))
        self.tasks.set_title(views.task_title(model))
        self.backends.show(views.backend_lines(model))
        self.dead_letters.show(views.dead_letter_lines(model))
        self.alerts.show(views.alert_lines(model))
        self.alerts.set_title(views.alert_title(model))
        if self.linear:
            self.announced.show([views.Line([line], key=str(i)) for i, line in enumerate(self.changes)])
            if self.focused != len(self.panes) - 1:
                self.announced.follow_last()  # the newest in view
        view = self.view
        if view.kind in (TASK, STREAM):
            events = model.events.get(view.key, [])
            task = next((t for t in model.tasks if t.spec.task_id == view.key), None)
            body = views.timeline_lines(events) if view.kind == TASK else views.stream_lines(events)
            self.detail.show(views.task_facts(task, view.key) + body)
        elif view.kind == DEAD_LETTER:
            letter = next((d for d in model.dead_letters if d.task_id == view.key), None)
            found = views.dead_letter_detail(letter) if letter else [views.Line([f"no dead letter {view.key}"])]
            self.detail.show(found)
        live = ("PAUSED", "warn") if model.paused else ("live", "ok")
        where = "" if view.kind == MAIN else f" · {view.kind} {view.key}"
        self.header.set_text(
            [
                f"tidemesh dash · {self.endpoint} · ",
                views.state(*live),
                f"{where} · ? help · q quit",
            ]
        )
        self.footer.set_text(self.message or self._hint())
        settles_in_s = self.motion.settles_in_s()
        if settles_in_s is not None:  # draw again when the highlight is over
            self.actions.redraw_after(settles_in_s)

    def _hint(self) -> str:
        if self.view.kind == MAIN:
            return (
                "Tab panes · ↑↓/jk move · Enter open · f follow · R replay · D purge · / filter · : command · "
                "p pause · r refresh · ? help"
            )
        if self.view.kind == DEAD_LETTER:
            return "R replay · D purge · Esc back · ? help"
        return "f live stream · Enter timeline · Esc back · ? help"

    def say(self, message: str) -> None:
        self.message = message
        self.footer.set_text(message)

    # -- keys ---------------------------------------------------------------------------------

    def selectable(self) -> bool:
        return True  # urwid gives keys only to a selectable top widget, and the help overlay is not one

    def keypress(self, size: Size, key: str) -> str | None:
        if self.overlay in ("dialog", "code"):
            return super().keypress(size, key)
        if self.overlay == "help":
            if key in ("esc", "?", "q"):
                self.overlay = None
                self._compose()
            return None
        if self.filtering:
            return self._filter_key(size, key)
        if self.prompting:
            return self._command_key(size, key)
        self.message = ""
        handled = self._command(key)
        if handled:
            self.actions.redraw()
            return None
        return super().keypress(size, key)

    def _command(self, key: str) -> bool:
        view = self.view
        if key == "q":
            self.actions.quit()
        elif key == "?":
            self.overlay = "help"
            self._compose()
        elif key in ("tab", "shift tab") and view.kind == MAIN:
            self._focus_pane(self.focused + (1 if key == "tab" else -1))
        elif key == "/":
            self._back_to_main()
            self._focus_pane(self.panes.index(self.tasks))
            self.filtering = True
            self.filter_edit.set_edit_text(self.model.task_filter)
            self._bottom()
        elif key == ":":
            self.prompting = True
            self.command_edit.set_edit_text("")
            self._bottom()
        elif key == "p":
            self.actions.toggle_pause()
        elif key == "r":
            self.actions.refresh()
            self.say("refreshing…")
        elif key == "esc":
            self._back()
        elif key == "enter":
            self._open(TASK)
        elif key == "f":
            self._open(STREAM)
        elif key == "R":
            self._ask_replay()
        elif key == "D":
            self._ask_purge()
        else:
            return False
        return True

    def _filter_key(self, size: Size, key: str) -> str | None:
        if key in ("enter", "esc"):
            if key == "esc":
                self.model.task_filter = ""
            self.filtering = False
            self._bottom()
        else:
            self.frame.keypress(size, key)  # type: ignore[arg-type]
            self.model.task_filter = self.filter_edit.edit_text
        self.actions.redraw()
        return None

    def _command_key(self, size: Size, key: str) -> str | None:
        """The palette's line: Tab completes the verb, Enter runs it, Esc closes it."""
        if key in ("enter", "esc"):
            line = self.command_edit.edit_text
            self.prompting = False
            self._bottom()
            if key == "enter" and line.strip():
                self.run_command(line)
        elif key == "tab":
            completed, candidates = complete(self.command_edit.edit_text)
            self.command_edit.set_edit_text(completed)
            self.command_edit.set_edit_pos(len(completed))
            if len(candidates) > 1:
                self.say("  ".join(candidates))
        else:
            self.frame.keypress(size, key)  # type: ignore[arg-type]
        self.actions.redraw()
        return None

    def run_command(self, line: str) -> None:
        """Run one palette line; a bad one says why on the message line (and, linear, as a change)."""
        try:
            if self.cli is None:
                raise CommandError("no command palette here (the dashboard was started without the CLI)")
            command = parse(line, self.cli)
        except CommandError as exc:
            self.say(f"error: {exc}")
            if self.linear:
                self.announce([f"command {line!r} refused: {exc}"])
            return
        self._dispatch(command)

    def _dispatch(self, command: Command) -> None:
        verb, targets = command.verb, command.targets
        if verb == "submit":
            self.actions.submit(command.kind, command.payload, command.priority)
            self.say(f"submitting {command.kind}…")
        elif verb == "cancel":
            self.actions.cancel(targets)
            self.say(f"cancelling {', '.join(targets)}…")
        elif verb in ("watch", "get", "show"):
            self._back_to_main()
            self.open(View({"watch": STREAM, "get": TASK, "show": DEAD_LETTER}[verb], targets[0]))
        elif verb == "replay":
            self._ask_replay(targets[0])
        elif verb == "purge":
            self._ask_purge(targets[0])
        elif verb == "filter":
            self.focus_named("tasks")
            self.model.task_filter = targets[0]
        elif verb == "theme":
            self.actions.set_theme(targets[0])
        elif verb == "help":
            self.overlay = "help"
            self._compose()
        elif verb == "quit":
            self.actions.quit()

    def _focused_pane(self) -> Pane:
        return self.panes[self.focused] if self.view.kind == MAIN else self.detail

    def _open(self, kind: str) -> None:
        """Enter (a task's detail, a dead letter's diagnosis) or f (a task's live stream)."""
        view, pane = self.view, self._focused_pane()
        if view.kind in (TASK, STREAM):
            if view.kind != kind:  # f in the detail, Enter in the stream: the other view of the same task
                self.stack[-1] = View(kind, view.key)
                self._show_view()
            return
        if view.kind != MAIN or pane.focused_key() is None:
            return
        task_id = pane.focused_key() or ""
        if pane is self.alerts:
            self._open_alert(task_id)
        elif pane is self.dead_letters and kind == TASK:
            self.open(View(DEAD_LETTER, task_id))
        elif pane in (self.tasks, self.dead_letters):
            self.open(View(kind, task_id))

    def _open_alert(self, key: str) -> None:
        """An alert's dashboard view: a dead letter's diagnosis, or the pane that shows it."""
        alert = next((a for a in self.model.alerts() if a.key == key), None)
        if alert is None:
            return
        if key.startswith("dlq/"):
            self.open(View(DEAD_LETTER, key.removeprefix("dlq/")))
        elif "--pane " in alert.view:
            self.focus_named(alert.view.rsplit("--pane ", 1)[1])

    def open(self, view: View) -> None:
        """Show `view` (also how `--task` and `--dlq` start)."""
        if view.kind in (TASK, STREAM):
            self.model.open_task(view.key)
            self.actions.watch_task(view.key)
        self.stack.append(view)
        self._show_view()
        self.update()

    def _back(self) -> None:
        if len(self.stack) > 1:
            if self.stack.pop().kind in (TASK, STREAM):
                self.actions.stop_watching()
            self._show_view()

    def _back_to_main(self) -> None:
        while len(self.stack) > 1:
            self._back()

    def _dead_letter_target(self, named: str, verb: str) -> str:
        """The dead letter a key or a command is about: the one named, the one open, or the focused
        row of the Dead letters pane; "" (said why) when there is none."""
        view = self.view
        if named:
            return named
        if view.kind == DEAD_LETTER:
            return view.key
        if view.kind == MAIN and self.panes[self.focused] is self.dead_letters:
            return self.dead_letters.focused_key() or ""
        self.say(f"{verb} a dead letter: focus the Dead letters pane (Tab) first")
        return ""

    def _confirm(self, question: str, button: str, on_confirm: Callable[[], None]) -> None:
        """Ask `question` (Cancel focused); `on_confirm` runs after the dialog has closed."""

        def close() -> None:
            self.overlay, self.dialog = None, None
            self._compose()
            self.actions.redraw()

        def confirm() -> None:
            close()
            on_confirm()

        self.dialog = ConfirmDialog(question, button, on_confirm=confirm, on_cancel=close, linear=self.linear)
        self.overlay = "dialog"
        if self.linear:
            verb = button.lower()
            self.announce([f"confirm: {question} Cancel is focused (Enter cancels); Right then Enter {verb}s"])
            self.update()
        self._compose()

    def _ask_replay(self, named: str = "") -> None:
        task_id = self._dead_letter_target(named, "R replays")
        if not task_id:
            return

        def replay() -> None:
            self.say(f"replaying {task_id}…")
            self.actions.replay(task_id)

        self._confirm(
            f"Replay dead-lettered task {task_id}? It runs again as a new task ({task_id}-r).", "Replay", replay
        )

    def _ask_purge(self, named: str = "") -> None:
        task_id = self._dead_letter_target(named, "D purges")
        if not task_id:
            return

        def purge() -> None:
            self.say(f"purging the dead letter of {task_id}…")
            self.actions.purge(task_id)

        question = (
            f"Purge the dead letter of {task_id}? Its record is deleted: the task's events stay, and it "
            "cannot be replayed afterwards."
        )
        self._confirm(question, "Purge", purge)

    def ask_code(self, challenge: StepUpRequired) -> CodePrompt:
        """Open the prompt for a one-time code that `challenge` wants (`tui._stepup.with_step_up`)."""

        def close() -> None:
            if self.code_dialog is dialog:
                self.overlay, self.code_dialog = None, None
                self._compose()
            self.actions.redraw()

        def refused(message: str) -> None:
            if self.linear:
                self.announce([f"the code was not taken: {message}; type another, or Esc to cancel"])
            self.actions.redraw()

        dialog = CodeDialog(challenge.action, challenge.resource, close, refused, linear=self.linear)
        self.code_dialog, self.overlay = dialog, "code"
        self.message = ""
        if self.linear:
            self.announce([f"second factor: {dialog.question} Enter offers it; Esc cancels"])
            self.update()
        self._compose()
        self.actions.redraw()
        return dialog
