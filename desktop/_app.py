"""The Flet app: one `DesktopApp` per window or browser session, over one shared `Client`.

Flet runs every session's handlers on the same asyncio loop as the client's grpc.aio channel,
so handlers are coroutines and the live streams (mesh status, a task's events) are tasks started
with `page.run_task`, cancelled when the session closes. What a view shows comes from
`desktop._model` (plain rows); this module only lays them out. Every control carries a label for
Flutter's semantics tree (a field's `label`, a button's text and `tooltip`, a text's
`semantics_label`), and every state is a word with its symbol.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

import flet as ft

from clients.sdk import Client
from desktop._form import (
    FieldSpec,
    FormErrors,
    InputForm,
    builtin_class,
    check_submit_options,
    field_of_refusal,
    form_for,
    payload_of,
    read_form,
)
from desktop._model import (
    LetterLine,
    Mark,
    letter_line,
    letter_lines,
    overview,
    parse_route,
    replay_question,
    route_for,
    stream_lines,
    stream_outcome,
    task_lines,
)
from desktop._theme import THEME_SLOTS, TONES, Scheme, fonts, scheme, spacing
from mesh.errors import InvalidArgument, MeshError
from mesh.priority import CLASS_NAMES
from mesh.v1 import kind_pb2, task_pb2
from tui._model import DashModel

STATUS_RETRY_S = 2.0
THEME_TITLES = (("auto", "system"), ("light", "light"), ("dark", "dark"), ("high-contrast", "high contrast"))
NAVIGATION = (("overview", "Overview"), ("tasks", "Tasks"), ("submit", "New task"), ("dead letters", "Dead letters"))
ANY_STATE = "any"
STATE_CHOICES = [name.removeprefix("TASK_STATE_").lower() for name in task_pb2.TaskState.keys()[1:]]
FormControl = ft.TextField | ft.Dropdown | ft.Checkbox


def flet_theme(name: str) -> ft.Theme:
    chosen: Scheme = scheme(name)
    return ft.Theme(color_scheme=ft.ColorScheme(**chosen.colors), font_family=fonts()[0])


def apply_theme(page: ft.Page, choice: str) -> None:
    """light/dark/high-contrast pin both of Flet's slots; auto follows the system's brightness."""
    light, dark = THEME_SLOTS.get(choice, THEME_SLOTS["auto"])
    page.theme = flet_theme(light)
    page.dark_theme = flet_theme(dark)
    page.theme_mode = {"auto": ft.ThemeMode.SYSTEM, "light": ft.ThemeMode.LIGHT}.get(choice, ft.ThemeMode.DARK)


def mark_text(mark: Mark, label: str = "") -> ft.Text:
    """A state as word and symbol, coloured by its role (the colour only repeats the word)."""
    return ft.Text(mark.text, color=TONES.get(mark.tone), semantics_label=label or mark.word, weight=ft.FontWeight.BOLD)


def text(value: str, label: str = "", **style: Any) -> ft.Text:
    return ft.Text(value, semantics_label=label or value, **style)


def heading(value: str) -> ft.Text:
    return ft.Text(value, size=20, weight=ft.FontWeight.BOLD, semantics_label=value)


class DesktopApp:
    def __init__(self, page: ft.Page, client: Client, tenant: str, theme: str = "auto", open_route: str = "") -> None:
        self.page = page
        self.client = client
        self.tenant = tenant
        self.theme = theme
        self.open_route = open_route  # where the window opens (`--open`); a browser's URL says it itself
        self.model = DashModel()
        self.view = "overview"
        self.route = ""  # the route shown: a route change to it again is not a navigation
        self.task_id = ""  # the task the detail view shows
        self.connection = text("◷ connecting to the mesh…", "connection: connecting")
        self.body = ft.Column(expand=True, scroll=ft.ScrollMode.AUTO, spacing=spacing("sm"))
        self.nav = ft.Row(wrap=True, spacing=spacing("sm"))
        self._jobs: list[Future[Any]] = []
        self._follow: Future[Any] | None = None
        self._note = text("")
        # The submit form, generated from the chosen kind's input message; it keeps what was typed
        # across view changes (until another kind is chosen).
        self.kinds: list[kind_pb2.KindInfo] = []
        self.kind_choice = ft.Dropdown(label="Kind", width=320, options=[], on_select=self._kind_chosen)
        self.form: InputForm | None = None
        self.inputs: dict[str, FormControl] = {}
        self.form_fields = ft.Column(spacing=spacing("sm"))
        self.priority = ft.Dropdown(
            label="Priority",
            value="standard",
            width=320,
            options=[ft.DropdownOption(key=name, text=name) for name in CLASS_NAMES],
        )
        self.idempotency = ft.TextField(
            label="Idempotency key", hint_text="optional: a repeated submit with this key returns the first task"
        )
        # The tasks view: kind and state are asked of the mesh; the words filter what came back.
        self.kind_filter = ft.TextField(
            label="Kind filter", hint_text="only this kind (empty: any)", width=260, on_submit=self._refresh_tasks
        )
        self.state_filter = ft.Dropdown(
            label="State filter",
            value=ANY_STATE,
            width=220,
            options=[ft.DropdownOption(key=name, text=name) for name in (ANY_STATE, *STATE_CHOICES)],
            on_select=self._refresh_tasks,
        )
        self.filter = ft.TextField(label="Filter tasks", hint_text="words of the id, kind, state or tenant")
        self.filter.on_change = self._filter_changed
        self.task_list = ft.Column(spacing=spacing("xs"))
        self.letter: LetterLine | None = None  # the dead letter its own view shows

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        page = self.page
        page.title = "tidemesh"
        page.padding = spacing("md")
        apply_theme(page, self.theme)
        page.on_close = self._closed
        page.on_disconnect = self._closed
        page.add(
            ft.Column(
                [
                    ft.Row(
                        [heading("tidemesh"), self.connection, self._theme_switch()], spacing=spacing("md"), wrap=True
                    ),
                    self.nav,
                    ft.Divider(),
                    self.body,
                ],
                expand=True,
            )
        )
        self._jobs.append(page.run_task(self._watch_status))
        page.on_route_change = self._route_changed
        # A browser opens the route in its URL (already in its history); the window opens `--open`'s.
        self.route = page.route
        await self.go(page.route if page.route not in ("", "/") else self.open_route or "/")

    async def go(self, route: str) -> None:
        """Show the view at `route` (see `desktop._model.parse_route`); an unknown one says so on the overview."""
        try:
            view, item = parse_route(route)
        except ValueError as exc:
            self._say(f"✖ {exc}")
            view, item = "overview", ""
        if view == "detail":
            await self.open_task(item)
        elif view == "letter":
            await self.open_letter(item)
        else:
            await self.show(view)

    async def _route_changed(self, event: ft.RouteChangeEvent) -> None:
        if event.route != self.route:  # the browser's back or forward, or an edited URL
            await self.go(event.route)

    def _theme_switch(self) -> ft.Control:
        """The colours, switched live: the system's, light, dark or high contrast (all from the tokens)."""

        async def switch(_event: Any) -> None:
            self.theme = choice.value or "auto"
            apply_theme(self.page, self.theme)
            self.page.update()

        choice = ft.Dropdown(
            label="Theme",
            value=self.theme,
            width=200,
            options=[ft.DropdownOption(key=key, text=title) for key, title in THEME_TITLES],
            on_select=switch,
        )
        return ft.Semantics(content=choice, label="Theme")

    async def _closed(self, _event: Any = None) -> None:
        for job in [*self._jobs, *([self._follow] if self._follow else [])]:
            job.cancel()

    def _say(self, message: str) -> None:
        """The note under a view: what the last action did, or why it could not."""
        self._note.value = message
        self._note.semantics_label = message

    # -- navigation ---------------------------------------------------------------------------

    async def show(self, view: str) -> None:
        self.view = view
        item = self.task_id if view == "detail" else self.letter.task_id if view == "letter" and self.letter else ""
        route = route_for(view, item)
        if route != self.route:
            self.route = route
            await self.page.push_route(route)  # the URL (and history) follow; its change event is ours
        self.nav.controls = [
            ft.Button(
                ("▸ " if name == view else "") + title,
                tooltip=f"Show {title.lower()}" + (" (shown)" if name == view else ""),
                on_click=self._goto(name),
            )
            for name, title in NAVIGATION
        ]
        if view == "tasks":
            await self._load_tasks()
        elif view == "dead letters":
            await self._load_letters()
        elif view == "submit" and not self.kinds:
            await self._load_kinds()
        self.render()

    def _goto(self, view: str) -> Callable[[Any], Awaitable[None]]:
        async def go(_event: Any) -> None:
            await self.show(view)

        return go

    def render(self) -> None:
        views: dict[str, Callable[[], list[ft.Control]]] = {
            "overview": self._overview,
            "tasks": self._tasks,
            "detail": self._detail,
            "submit": self._submit_form,
            "dead letters": self._letters,
            "letter": self._letter,
        }
        self.body.controls = views[self.view]()
        self.page.update()

    # -- overview -----------------------------------------------------------------------------

    async def _watch_status(self) -> None:
        while True:
            try:
                async for status in self.client.watch_status():
                    self.model.apply_status(status, time.monotonic())
                    was = self.connection.value
                    self.connection.value = "● connected, live"
                    self.connection.semantics_label = "connection: live"
                    if self.view == "overview":
                        self.render()
                    elif was != self.connection.value:
                        self.page.update()
            except MeshError as exc:
                self.connection.value = f"✖ mesh unavailable: {exc.message} (retrying)"
                self.connection.semantics_label = self.connection.value
                self.page.update()
            await asyncio.sleep(STATUS_RETRY_S)

    def _overview(self) -> list[ft.Control]:
        seen = overview(self.model)
        controls: list[ft.Control] = [
            heading("Overview"),
            self._note,
            text("Queues (pool/class/tenant)", weight="bold"),
        ]
        if not seen.queues:
            controls.append(text("no queue reading yet" if self.model.status is None else "every queue is empty"))
        for queue in seen.queues:
            controls.append(
                text(
                    f"{queue.name}  {queue.pending} pending  {queue.in_flight} in flight  "
                    f"oldest {queue.oldest_age_s:.0f}s",
                    queue.label,
                )
            )
        controls.append(text("Workers", weight="bold"))
        controls += [
            ft.Row([mark_text(w.mark), text(f"{w.worker_id}  pools {w.pools}", w.label)]) for w in seen.workers
        ] or [text("no worker reported")]
        controls.append(text("Inference backends", weight="bold"))
        controls += [
            ft.Row([mark_text(b.mark), text(f"{b.name} {b.detail}".strip(), b.label)]) for b in seen.backends
        ] or [text("no inference backend reported")]
        return controls

    # -- tasks --------------------------------------------------------------------------------

    async def _load_tasks(self) -> None:
        state = self.state_filter.value or ANY_STATE
        for control in (self.kind_filter, self.state_filter):
            _set_error(control, None)
        try:
            tasks, _ = await self.client.list_tasks(
                self.tenant,
                limit=100,
                kind=(self.kind_filter.value or "").strip(),
                states=[] if state == ANY_STATE else [state],
            )
        except MeshError as exc:
            if isinstance(exc, InvalidArgument) and exc.field.startswith(("kind", "states")):
                _set_error(self.kind_filter if exc.field == "kind" else self.state_filter, exc.message)
            self._say(f"✖ could not list tasks: {exc.message}")
            self.model.set_tasks([])
            return
        self.model.set_tasks(tasks)

    async def _filter_changed(self, event: Any) -> None:
        self.model.task_filter = self.filter.value or ""
        self._fill_task_list()
        self.page.update()

    def _fill_task_list(self) -> None:
        lines = task_lines(self.model)
        self.task_list.controls = [
            ft.Row(
                [
                    mark_text(line.mark),
                    text(f"{line.task_id}  {line.kind}  {line.tenant}  {line.updated}", line.label),
                    ft.Button("Open", tooltip=f"Open task {line.task_id}", on_click=self._opener(line.task_id)),
                ],
                wrap=True,
            )
            for line in lines
        ] or [text(self._no_task())]

    def _no_task(self) -> str:
        if self.model.tasks:
            return "no task matches"
        if (self.kind_filter.value or "").strip() or (self.state_filter.value or ANY_STATE) != ANY_STATE:
            return "no task matches the kind and state filters"
        return f"tenant {self.tenant} has no task yet"

    def _tasks(self) -> list[ft.Control]:
        self._fill_task_list()
        return [
            heading(f"Tasks of tenant {self.tenant}"),
            ft.Row(
                [
                    self.kind_filter,
                    ft.Semantics(content=self.state_filter, label="State filter"),
                    ft.Button("Refresh", tooltip="Ask the mesh for the tasks again", on_click=self._refresh_tasks),
                ],
                wrap=True,
            ),
            self.filter,
            self._note,
            self.task_list,
        ]

    async def _refresh_tasks(self, _event: Any) -> None:
        self._say("")
        await self._load_tasks()
        self.render()

    def _opener(self, task_id: str) -> Callable[[Any], Awaitable[None]]:
        async def open_it(_event: Any) -> None:
            await self.open_task(task_id)

        return open_it

    # -- task detail --------------------------------------------------------------------------

    async def open_task(self, task_id: str) -> None:
        """Show `task_id` and follow its events live (the stream resumes by itself after a drop)."""
        if self._follow is not None:
            self._follow.cancel()
        self.task_id = task_id
        self.model.open_task(task_id)
        self._follow = self.page.run_task(self._follow_task, task_id)
        await self.show("detail")

    async def open_letter(self, task_id: str) -> None:
        """Show the dead letter of `task_id` alone, with its replay (a deep link from an alert or runbook)."""
        try:
            self.letter = letter_line(await self.client.dead_letter(task_id))
        except MeshError as exc:
            self.letter = None
            self._say(f"✖ no dead letter {task_id}: {exc.message}")
            await self.show("dead letters")
            return
        await self.show("letter")

    async def _follow_task(self, task_id: str) -> None:
        try:
            async for event in self.client.watch(task_id):
                self.model.add_event(event)
                if self.view == "detail" and self.task_id == task_id:
                    self.render()
        except MeshError as exc:
            self._say(f"✖ the stream of {task_id} ended: {exc.error_class}: {exc.message}")
            if self.view == "detail":
                self.render()

    def _detail(self) -> list[ft.Control]:
        outcome = stream_outcome(self.model, self.task_id)
        lines = stream_lines(self.model, self.task_id)
        if outcome is None:
            status = text(f"▶ streaming: {len(lines)} events so far", f"stream of {self.task_id}: streaming")
        else:
            status = mark_text(outcome, f"stream of {self.task_id}: finished, {outcome.word}")
        rows: list[ft.Control] = [
            ft.Row(
                [
                    text(f"#{line.sequence}", f"sequence {line.sequence}", font_family=fonts("mono")[0]),
                    text(line.time, f"time {line.time}"),
                    mark_text(line.mark),
                    text(
                        f"{line.confidence:.2f}" if line.confidence is not None else "",
                        f"confidence {line.confidence:.2f}" if line.confidence is not None else "no confidence",
                    ),
                    text(line.text, line.label),
                ],
                wrap=True,
            )
            for line in lines
        ]
        return [
            heading(f"Task {self.task_id}"),
            ft.Row(
                [
                    status,
                    ft.Button("Cancel task", tooltip=f"Cancel task {self.task_id}", on_click=self._cancel_task),
                ],
                wrap=True,
            ),
            self._note,
            text("Events: sequence, time, state, confidence, output", weight="bold"),
            ft.Column(rows, spacing=spacing("xs")),
        ]

    async def _cancel_task(self, _event: Any) -> None:
        try:
            await self.client.cancel(self.task_id, reason="cancelled from the desktop app")
            self._say(f"cancel requested for {self.task_id}")
        except MeshError as exc:
            self._say(f"✖ cancel refused: {exc.message}")
        self.render()

    # -- submit -------------------------------------------------------------------------------

    async def _load_kinds(self) -> None:
        try:
            self.kinds = await self.client.kinds()
        except MeshError as exc:
            self._say(f"✖ could not list the kinds: {exc.message}")
            return
        self.kind_choice.options = [
            ft.DropdownOption(key=info.kind.name, text=info.kind.name + ("" if info.kind.builtin else " (user kind)"))
            for info in self.kinds
        ]
        names = [info.kind.name for info in self.kinds]
        if self.kind_choice.value not in names and names:
            self.kind_choice.value = "stream" if "stream" in names else names[0]
        await self._load_form()

    async def _kind_chosen(self, _event: Any) -> None:
        self._say("")
        await self._load_form()
        self.render()

    async def _load_form(self) -> None:
        """The chosen kind's form: its input message from the generated descriptors (a built-in
        kind) or the schema registry (a user kind); one control per field."""
        info = next((k for k in self.kinds if k.kind.name == self.kind_choice.value), None)
        if info is None or (self.form is not None and self.form.kind == info.kind.name):
            return
        self.form, self.inputs = None, {}
        builtin = builtin_class(info.kind.input_type)
        try:
            case, message = builtin if builtin else (None, await self.client.message_class(info.kind.input_type))
        except MeshError as exc:
            self._say(f"✖ no form for {info.kind.name}: {exc.message}")
            return
        self.form = form_for(info.kind, message, case)
        self.inputs = {spec.name: _control_for(spec) for spec in self.form.fields}

    def _submit_form(self) -> list[ft.Control]:
        form = self.form
        fields: list[ft.Control] = []
        if form is not None:
            fields.append(text(f"Input: {form.type_name}", f"input message {form.type_name}", weight="bold"))
            if form.description:
                fields.append(text(form.description))
            for spec in form.fields:
                control = self.inputs[spec.name]
                fields.append(ft.Semantics(content=control, label=spec.label) if spec.control == "choice" else control)
            if not form.fields:
                fields.append(text(f"{form.type_name} has no fields: nothing to fill in"))
        self.form_fields.controls = fields
        return [
            heading(f"Submit a task as tenant {self.tenant}"),
            ft.Semantics(content=self.kind_choice, label="Kind"),
            self.form_fields,
            ft.Semantics(content=self.priority, label="Priority"),
            self.idempotency,
            ft.Button("Submit", tooltip="Check the form, submit the task and follow its events", on_click=self._submit),
            self._note,
        ]

    def _controls(self) -> dict[str, FormControl]:
        """Every control an error can be about, by the field name it fills."""
        return {
            **self.inputs,
            "kind": self.kind_choice,
            "priority": self.priority,
            "idempotency_key": self.idempotency,
        }

    async def _submit(self, _event: Any) -> None:
        controls = self._controls()
        for control in controls.values():
            _set_error(control, None)
        form = self.form
        if form is None:
            self._say("✖ choose a kind first")
            self.render()
            return
        try:
            key = (self.idempotency.value or "").strip()
            check_submit_options(self.priority.value or "", key)
            message = read_form(form, {name: control.value for name, control in self.inputs.items()})
            reply = await self.client.submit(
                form.kind, payload_of(form, message), priority=self.priority.value or "", idempotency_key=key
            )
        except FormErrors as exc:  # checked here: nothing was sent
            for name, said in exc.errors.items():
                _set_error(controls.get(name), said)
            count = len(exc.errors)
            self._say(f"✖ not submitted: {count} field{'s' if count > 1 else ''} to fix — {exc}")
            self.render()
            await _focus(controls.get(next(iter(exc.errors))))
            return
        except MeshError as exc:
            # The mesh's InvalidArgument names a dotted path (spec.payload.stream.chunks): on that field.
            named = field_of_refusal(form, getattr(exc, "field", ""))
            _set_error(controls.get(named), exc.message)
            self._say(f"✖ refused: {exc.message}")
            self.render()
            await _focus(controls.get(named))
            return
        self._say(f"submitted {reply.task_id}")
        await self.open_task(reply.task_id)

    # -- dead letters -------------------------------------------------------------------------

    async def _load_letters(self) -> None:
        try:
            self.model.set_dead_letters(await self.client.dead_letters(self.tenant))
        except MeshError as exc:
            self._say(f"✖ could not list dead letters: {exc.message}")

    def _letters(self) -> list[ft.Control]:
        lines = letter_lines(self.model)
        rows: list[ft.Control] = [
            ft.Row(
                [
                    text(f"☠ {line.task_id}  {line.kind}  {line.reason}", line.label),
                    ft.Button(
                        "Replay" if not line.replayed_as else "Replay again",
                        tooltip=f"Replay dead letter {line.task_id} (asks first)",
                        on_click=self._asker(line),
                    ),
                ],
                wrap=True,
            )
            for line in lines
        ]
        return [
            heading(f"Dead letters of tenant {self.tenant}"),
            ft.Button("Refresh", tooltip="Reload the dead letters", on_click=self._goto("dead letters")),
            self._note,
            *(rows or [text(f"tenant {self.tenant} has no dead letter")]),
        ]

    def _letter(self) -> list[ft.Control]:
        letter = self.letter
        if letter is None:
            return [heading("Dead letter"), self._note]
        done = f"replayed as {letter.replayed_as}" if letter.replayed_as else "not replayed yet"
        return [
            heading(f"Dead letter {letter.task_id}"),
            text(f"☠ {letter.kind}, tenant {letter.tenant}: {letter.reason}", letter.label),
            text(done),
            ft.Row(
                [
                    ft.Button(
                        "Replay" if not letter.replayed_as else "Replay again",
                        tooltip=f"Replay dead letter {letter.task_id} (asks first)",
                        on_click=self._asker(letter),
                    ),
                    ft.Button(
                        "Open task", tooltip=f"Open task {letter.task_id}", on_click=self._opener(letter.task_id)
                    ),
                    ft.Button(
                        "All dead letters", tooltip="Show every dead letter", on_click=self._goto("dead letters")
                    ),
                ],
                wrap=True,
            ),
            self._note,
        ]

    def _asker(self, letter: LetterLine) -> Callable[[Any], Awaitable[None]]:
        async def ask(_event: Any) -> None:
            self.confirm_replay(letter)

        return ask

    def confirm_replay(self, letter: LetterLine) -> None:
        """A modal question whose default (focused) answer is Cancel."""

        async def cancel(_event: Any) -> None:
            self.page.pop_dialog()

        async def replay(_event: Any) -> None:
            self.page.pop_dialog()
            try:
                done = await self.client.replay(letter.task_id)
                again = " (already replayed)" if done.deduplicated else ""
                self._say(f"replayed {letter.task_id} as {done.task_id}{again}")
            except MeshError as exc:
                self._say(f"✖ replay refused: {exc.message}")
            await self.show("dead letters")

        dialog = ft.AlertDialog(
            modal=True,
            title=text("Replay this dead letter?"),
            content=text(replay_question(letter)),
            semantics_label=f"confirm replay of {letter.task_id}",
            actions=[
                ft.Button("Cancel", autofocus=True, tooltip="Keep the dead letter as it is", on_click=cancel),
                ft.Button("Replay", tooltip=f"Replay {letter.task_id} now", on_click=replay),
            ],
        )
        self.page.show_dialog(dialog)


def _control_for(spec: FieldSpec) -> FormControl:
    """One labelled control for one field of the input message (see `desktop._form`)."""
    if spec.control == "bool":
        return ft.Checkbox(label=spec.label, value=spec.default == "true")
    if spec.control == "choice":
        options = [ft.DropdownOption(key=name, text=name) for name in spec.choices]
        return ft.Dropdown(label=spec.label, value=spec.default, options=options, width=320)
    many = spec.control in ("lines", "json")
    return ft.TextField(
        label=spec.label,
        value=spec.default,
        hint_text=spec.hint or None,
        multiline=many,
        min_lines=2 if many else None,
        max_lines=6 if many else None,
    )


def _set_error(control: FormControl | None, message: str | None) -> None:
    """An error shown on (and read out with) its field; None clears it. A check box cannot be wrong."""
    if isinstance(control, ft.TextField):
        control.error = message
    elif isinstance(control, ft.Dropdown):
        control.error_text = message


async def _focus(control: FormControl | None) -> None:
    if isinstance(control, ft.TextField | ft.Dropdown):
        with contextlib.suppress(Exception):  # a control not on the page yet cannot take focus
            await control.focus()  # type: ignore[no-untyped-call]  # Flet's own method is untyped


def session(client: Client, tenant: str, theme: str, open_route: str = "") -> Callable[[ft.Page], Awaitable[None]]:
    """The `main` Flet calls for every new window or browser session."""

    async def main(page: ft.Page) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await DesktopApp(page, client, tenant, theme, open_route).start()

    return main
