"""The dashboard's widgets: rows that show focus without colour, panes of rows, the help overlay,
the confirmation dialog and the prompt for a one-time code. They draw `tui._views` lines and hold
no mesh state.

Focus never rests on colour alone: the focused row is drawn in reverse video behind a ``>``
marker, the focused pane's title is ``> Title <``, and the terminal's cursor sits at the start of
the focused row (screen readers and BRLTTY follow it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import urwid

from tui._commands import USAGE
from tui._motion import Motion
from tui._views import Line

# Keys a pane understands itself: vim's beside the arrows.
VIM_KEYS = {"j": "down", "k": "up", "g": "home", "G": "end", "ctrl d": "page down", "ctrl u": "page up"}
Size = tuple[()] | tuple[int] | tuple[int, int]  # what urwid passes a widget
MOVES = {"up", "down", "home", "end", "page up", "page down", "left", "right"}


class Row(urwid.Widget):
    """One line; selectable when it names something (a key). Focused: ``> `` and reverse video,
    with the cursor on its first column."""

    _sizing = frozenset([urwid.Sizing.FLOW])

    def __init__(self, line: Line, lit: bool = False) -> None:
        super().__init__()
        self.line = line
        self.lit = lit  # just appeared: drawn highlighted for a moment (see `tui._motion`)

    def selectable(self) -> bool:
        return self.line.key is not None

    def keypress(self, size: Size, key: str) -> str | None:
        return key

    def rows(self, size: Size, focus: bool = False) -> int:
        return 1

    def render(self, size: Size, focus: bool = False) -> urwid.Canvas:
        maxcol = size[0] if size else 0
        if focus and self.selectable():
            text = urwid.Text([("focus", ("> " + self.line.text).ljust(maxcol))], wrap="clip")
            canvas = urwid.CompositeCanvas(text.render((maxcol,)))
            canvas.cursor = (0, 0)
            return canvas
        if self.lit:
            return urwid.Text([("changed", ("  " + self.line.text).ljust(maxcol))], wrap="clip").render((maxcol,))
        return urwid.Text(["  ", *self.line.markup], wrap="clip").render((maxcol,))

    def get_cursor_coords(self, size: Size) -> tuple[int, int]:
        return (0, 0)


class Pane(urwid.WidgetWrap[urwid.Widget]):
    """A titled list of rows that keeps its focused row (by key) across updates. Arrows and vim
    keys move inside it and never out of it (Tab and Shift-Tab move between panes)."""

    def __init__(self, title: str, linear: bool = False, motion: Motion | None = None) -> None:
        self.title = title
        self.linear = linear
        self.motion = motion or Motion(enabled=False)
        self.focused = False
        self._keys: set[str] | None = None  # the rows' keys at the last show (None: never shown)
        self.walker: urwid.SimpleFocusListWalker[urwid.Widget] = urwid.SimpleFocusListWalker([])
        self.listbox = urwid.ListBox(self.walker)  # type: ignore[arg-type]  # urwid types its walker narrowly
        self.heading = urwid.Text(("heading", title), wrap="clip")
        if linear:  # no box drawing: a heading line, then the rows
            frame: urwid.Widget = urwid.Frame(self.listbox, header=self.heading)
        else:
            frame = urwid.AttrMap(urwid.LineBox(self.listbox, title=title, title_align="left"), "body")
        self.box = frame
        super().__init__(frame)

    def set_title(self, title: str) -> None:
        self.title = title
        self.mark_focus(self.focused)

    def mark_focus(self, focused: bool) -> None:
        if focused and not self.focused:
            self.motion.flash(f"pane/{id(self)}", self.motion.pane_s)
        self.focused = focused
        title = f"> {self.title} <" if focused else self.title
        if self.linear:
            self.heading.set_text(("heading", title))
        else:
            border = ("flash" if self.motion.lit(f"pane/{id(self)}") else "border") if focused else "body"
            self.box.original_widget.set_title(title)  # type: ignore[attr-defined]
            self.box.set_attr_map({None: border})  # type: ignore[attr-defined]

    def show(self, lines: list[Line]) -> None:
        kept = self.focused_key()
        keys = {line.key for line in lines if line.key is not None}
        for key in keys - (self._keys if self._keys is not None else keys):
            self.motion.flash(f"row/{id(self)}/{key}", self.motion.fast_s)
        self._keys = keys
        self.walker[:] = [
            Row(line, line.key is not None and self.motion.lit(f"row/{id(self)}/{line.key}")) for line in lines
        ]
        self.mark_focus(self.focused)  # the border settles once its flash is over
        selectable = [i for i, line in enumerate(lines) if line.key is not None]
        if not selectable:
            return
        if not self.focused:  # at rest: from the top, so its heading and newest rows stay in view
            self.walker.set_focus(selectable[0])
            self._scroll_to(selectable[0])
            return
        self.walker.set_focus(next((i for i in selectable if lines[i].key == kept), selectable[0]))

    def follow_last(self) -> None:
        """Focus the last row, the rows above it filling the pane (a log that follows its end)."""
        if self.walker:
            self.walker.set_focus(len(self.walker) - 1)
            self._scroll_to(len(self.walker) - 1)

    def _scroll_to(self, rows_above: int) -> None:
        # urwid keeps the focused row where it was on screen; this puts it `rows_above` down
        # (urwid clamps it to the pane when it draws).
        self.listbox.offset_rows = rows_above
        self.listbox.inset_fraction = (0, 1)

    def focused_key(self) -> str | None:
        if not self.walker:
            return None
        widget, _ = self.walker.get_focus()
        return widget.line.key if isinstance(widget, Row) else None

    def keypress(self, size: Size, key: str) -> str | None:
        key = VIM_KEYS.get(key, key)
        unhandled = super().keypress(size, key)
        return None if unhandled in MOVES else unhandled


HELP = (
    ("Tab / Shift-Tab", "next / previous pane"),
    ("↑ ↓  j k", "move inside a pane (g G: first, last; PgUp PgDn)"),
    ("Enter", "open: a task's detail, a dead letter's diagnosis, an alert's view"),
    ("f", "follow the focused task's live stream (partial outputs)"),
    ("R", "replay the focused dead letter (asks first; Cancel is the default)"),
    ("D", "purge the focused dead letter (asks first; then a one-time code where the mesh wants one)"),
    ("Esc", "back (closes this help, a dialog, the filter)"),
    ("/", "filter the task list (Enter keeps it, Esc clears it)"),
    (":", "a command, as typed at the CLI (below)"),
    ("p", "pause / resume live updates"),
    ("r", "refresh everything now"),
    ("?", "this help"),
    ("q", "quit"),
)


def help_overlay(under: urwid.Widget, linear: bool = False) -> urwid.Widget:
    """Every key, over `under` in a box; `linear`: the keys alone, as lines from the top."""
    width = max(len(k) for k, _ in HELP) + 2
    lines: list[urwid.Widget] = [urwid.Text(("heading", "Keys"))]
    lines += [urwid.Columns([(width, urwid.Text(("accent", keys))), urwid.Text(what)]) for keys, what in HELP]
    lines.append(urwid.Text(("heading", "Commands after :  (Tab completes the verb)")))
    lines += [urwid.Text(f"  {usage}") for usage in USAGE]
    lines.append(urwid.Text(("muted", "Esc or ? closes this help")))
    if linear:
        return urwid.AttrMap(urwid.Filler(urwid.Pile(lines), valign="top"), "body")
    box = urwid.AttrMap(urwid.LineBox(urwid.Pile(lines), title="Help"), "body")
    return urwid.Overlay(box, under, "center", ("relative", 70), "middle", "pack")


class Choice(urwid.Widget):
    """A dialog button: ``[ Label ]``; focused: ``> [ Label ]`` in reverse video, the cursor on it."""

    _sizing = frozenset([urwid.Sizing.FLOW])

    def __init__(self, label: str, on_press: Callable[[], None]) -> None:
        super().__init__()
        self.label = label
        self.on_press = on_press

    def selectable(self) -> bool:
        return True

    def rows(self, size: Size, focus: bool = False) -> int:
        return 1

    def keypress(self, size: Size, key: str) -> str | None:
        if key in ("enter", " "):
            self.on_press()
            return None
        return key

    def render(self, size: Size, focus: bool = False) -> urwid.Canvas:
        maxcol = size[0] if size else 0
        if focus:
            canvas = urwid.CompositeCanvas(
                urwid.Text([("focus", f"> [ {self.label} ]".ljust(maxcol))], wrap="clip").render((maxcol,))
            )
            canvas.cursor = (0, 0)
            return canvas
        return urwid.Text(f"  [ {self.label} ]", wrap="clip").render((maxcol,))

    def get_cursor_coords(self, size: Size) -> tuple[int, int]:
        return (0, 0)


class ConfirmDialog(urwid.WidgetWrap[urwid.Widget]):
    """A question with Cancel (focused first: Enter alone never confirms) and a confirming button.
    `linear` (accessible mode): no box, a prompt of plain lines for the bottom of the screen."""

    def __init__(
        self,
        question: str,
        confirm: str,
        on_confirm: Callable[[], None],
        on_cancel: Callable[[], None],
        *,
        linear: bool = False,
    ):
        self.on_cancel = on_cancel
        self.linear = linear
        self.buttons = urwid.Columns([Choice("Cancel", on_cancel), Choice(confirm, on_confirm)], dividechars=2)
        self.buttons.focus_position = 0
        hint = urwid.Text(("muted", "←/→ or Tab choose · Enter: do it · Esc: cancel"))
        if linear:
            prompt = urwid.Pile([urwid.Text([("heading", "Confirm: "), question]), self.buttons, hint])
            prompt.focus_position = 1
            super().__init__(urwid.AttrMap(prompt, "body"))
            return
        body = urwid.Pile([urwid.Text(question), urwid.Divider(), self.buttons])
        body.focus_position = 2
        super().__init__(urwid.AttrMap(urwid.LineBox(urwid.Pile([body, hint]), title="Confirm"), "body"))

    def keypress(self, size: Size, key: str) -> str | None:
        if key == "esc":
            self.on_cancel()
            return None
        if key in ("tab", "shift tab"):
            self.buttons.focus_position = 1 - self.buttons.focus_position
            return None
        unhandled = super().keypress(size, key)
        return None if unhandled in MOVES else unhandled

    def over(self, under: urwid.Widget) -> urwid.Overlay[urwid.Widget, urwid.Widget]:
        return urwid.Overlay(self, under, "center", ("relative", 60), "middle", "pack")


class CodeDialog(urwid.WidgetWrap[urwid.Widget]):
    """The prompt for a one-time code after a step-up challenge (a `tui._stepup.CodePrompt`): what
    the code approves, a labelled field with the cursor in it, the refusal of a code under it,
    Cancel and Step up. Enter on the field (or Step up) offers the code, Esc or Cancel gives up;
    Tab and Shift-Tab go round the field, Cancel and Step up and never leave the dialog. `linear`:
    plain lines for the bottom of the screen, as the confirmation's."""

    def __init__(
        self,
        action: str,
        resource: str,
        on_close: Callable[[], None],
        on_refused: Callable[[str], None] = lambda message: None,
        *,
        linear: bool = False,
    ) -> None:
        self.action, self.resource = action, resource
        self.on_close = on_close
        self.on_refused = on_refused
        self.linear = linear
        self.closed = False
        self.checking = False  # a code offered, its answer not in: keys but Esc wait
        self._answers: asyncio.Queue[str | None] = asyncio.Queue()
        self.field = urwid.Edit(("accent", "One-time code: "))
        self.error = urwid.Text("")
        self.buttons = urwid.Columns(
            [Choice("Cancel", lambda: self._answer(None)), Choice("Step up", self._offer)], dividechars=2
        )
        self.question = (
            f"{action} on {resource} wants a fresh second factor: "
            "type a one-time code from your authenticator (6 digits)."
        )
        hint = urwid.Text(("muted", "Enter: step up · Tab: the buttons · Esc: cancel"))
        heading: list[urwid.Widget] = (
            [urwid.Text([("heading", "Second factor: "), self.question])]
            if linear
            else [urwid.Text(self.question), urwid.Divider()]
        )
        self.body = urwid.Pile([*heading, self.field, self.error, self.buttons, hint])
        self._stops = [len(heading), len(heading) + 2]  # the field, the buttons: where Tab goes
        self.body.focus_position = self._stops[0]
        if linear:
            super().__init__(urwid.AttrMap(self.body, "body"))
        else:
            super().__init__(urwid.AttrMap(urwid.LineBox(self.body, title="Second factor"), "body"))

    # -- CodePrompt ---------------------------------------------------------------------------

    async def code(self) -> str | None:
        return await self._answers.get()

    def refuse(self, message: str) -> None:
        self.checking = False
        self.error.set_text(("error", f"error: {message}"))
        self.field.set_edit_text("")
        self._focus(0)
        self.on_refused(message)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.on_close()

    # -- keys ---------------------------------------------------------------------------------

    def _focus(self, stop: int, button: int = 0) -> None:
        """Stop 0: the field; stop 1: the buttons, at `button` (0 Cancel, 1 Step up)."""
        self.body.focus_position = self._stops[stop]
        if stop == 1:
            self.buttons.focus_position = button

    def _answer(self, code: str | None) -> None:
        self._answers.put_nowait(code)

    def _offer(self) -> None:
        self.checking = True
        self.error.set_text("checking the code…")
        self._answer(self.field.edit_text)

    def keypress(self, size: Size, key: str) -> str | None:
        if key == "esc":
            self._answer(None)
            return None
        if self.checking:
            return None
        on_field = self.body.focus_position == self._stops[0]
        if key in ("tab", "shift tab"):  # round the field, Cancel and Step up, never out of the dialog
            forward = key == "tab"
            if on_field:
                self._focus(1, 0 if forward else 1)
            elif forward == (self.buttons.focus_position == 1):
                self._focus(0)  # past Step up, or back before Cancel: the field
            else:
                self._focus(1, 1 - self.buttons.focus_position)
            return None
        if key == "enter" and on_field:
            self._offer()
            return None
        unhandled = super().keypress(size, key)
        return None if unhandled in MOVES else unhandled

    def over(self, under: urwid.Widget) -> urwid.Overlay[urwid.Widget, urwid.Widget]:
        return urwid.Overlay(self, under, "center", ("relative", 60), "middle", "pack")
