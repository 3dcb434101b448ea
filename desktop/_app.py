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
from desktop._model import (
    FormError,
    LetterLine,
    Mark,
    letter_lines,
    overview,
    parse_submission,
    replay_question,
    stream_lines,
    stream_outcome,
    task_lines,
)
from desktop._theme import THEME_SLOTS, TONES, Scheme, fonts, scheme, spacing
from mesh.errors import MeshError
from mesh.priority import CLASS_NAMES
from tui._model import DashModel

STATUS_RETRY_S = 2.0
THEME_TITLES = (("auto", "system"), ("light", "light"), ("dark", "dark"), ("high-contrast", "high contrast"))
NAVIGATION = (("overview", "Overview"), ("tasks", "Tasks"), ("submit", "New task"), ("dead letters", "Dead letters"))


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
    def __init__(self, page: ft.Page, client: Client, tenant: str, theme: str = "auto") -> None:
        self.page = page
        self.client = client
        self.tenant = tenant
        self.theme = theme
        self.model = DashModel()
        self.view = "overview"
        self.task_id = ""  # the task the detail view shows
        self.connection = text("◷ connecting to the mesh…", "connection: connecting")
        self.body = ft.Column(expand=True, scroll=ft.ScrollMode.AUTO, spacing=spacing("sm"))
        self.nav = ft.Row(wrap=True, spacing=spacing("sm"))
        self._jobs: list[Future[Any]] = []
        self._follow: Future[Any] | None = None
        self._note = text("")
        # The submit form keeps what was typed across view changes.
        self.kind = ft.TextField(label="Kind", value="stream", hint_text="stream, echo, embed, … (tidemesh kinds)")
        self.text_field = ft.TextField(label="Text", hint_text="the payload's text field (optional)")
        self.payload = ft.TextField(
            label="Payload JSON",
            hint_text='the kind\'s fields, e.g. {"chunks": 3} (empty: {})',
            multiline=True,
            min_lines=2,
            max_lines=6,
        )
        self.priority = ft.Dropdown(
            label="Priority",
            value="standard",
            options=[ft.DropdownOption(key=name, text=name) for name in CLASS_NAMES],
        )
        self.filter = ft.TextField(label="Filter tasks", hint_text="words of the id, kind, state or tenant")
        self.filter.on_change = self._filter_changed
        self.task_list = ft.Column(spacing=spacing("xs"))

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
        await self.show("overview")

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
        controls: list[ft.Control] = [heading("Overview"), text("Queues (pool/class/tenant)", weight="bold")]
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
        try:
            tasks, _ = await self.client.list_tasks(self.tenant, limit=100)
        except MeshError as exc:
            self._say(f"✖ could not list tasks: {exc.message}")
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
        ] or [text("no task matches" if self.model.tasks else f"tenant {self.tenant} has no task yet")]

    def _tasks(self) -> list[ft.Control]:
        self._fill_task_list()
        return [
            heading(f"Tasks of tenant {self.tenant}"),
            ft.Row([self.filter, ft.Button("Refresh", tooltip="Reload the task list", on_click=self._refresh_tasks)]),
            self._note,
            self.task_list,
        ]

    async def _refresh_tasks(self, _event: Any) -> None:
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

    def _submit_form(self) -> list[ft.Control]:
        return [
            heading("Submit a task"),
            self.kind,
            self.text_field,
            self.payload,
            ft.Semantics(content=self.priority, label="Priority"),
            ft.Button("Submit", tooltip="Submit the task and follow its events", on_click=self._submit),
            self._note,
        ]

    async def _submit(self, _event: Any) -> None:
        # The fields an error can name (the priority is a closed choice).
        fields: dict[str, ft.TextField] = {"kind": self.kind, "text": self.text_field, "payload": self.payload}
        for field in fields.values():
            field.error = None
        try:
            wanted = parse_submission(
                self.kind.value or "", self.text_field.value or "", self.payload.value or "", self.priority.value or ""
            )
            reply = await self.client.submit(wanted.kind, wanted.payload, priority=wanted.priority)
        except (FormError, MeshError) as exc:
            # A FormError names its field; the mesh's InvalidArgument a dotted path (spec.payload.text).
            path = str(getattr(exc, "field", ""))
            named = [name for name in ("kind", "text") if path == name or path.endswith(f".{name}")]
            if path:
                fields[named[0] if named else "payload"].error = exc.message
            self._say(f"✖ {path or 'refused'}: {exc.message}")
            self.render()
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


def session(client: Client, tenant: str, theme: str) -> Callable[[ft.Page], Awaitable[None]]:
    """The `main` Flet calls for every new window or browser session."""

    async def main(page: ft.Page) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await DesktopApp(page, client, tenant, theme).start()

    return main
