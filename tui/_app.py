"""`run_dashboard`: the screen on a terminal, fed by the mesh's streams through the SDK.

Live figures come from WatchMeshStatus; a task's events from WatchTask. The task list and the
dead letters have no stream: they are fetched again when the status stream says the mesh moved,
at most once per `LIST_REFRESH_S`, and on `r`. Redraws go through one `Throttle`. A purge that
meets a step-up challenge asks for a one-time code on the screen and runs again with the token
(`tui._stepup`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Coroutine
from typing import Any

import urwid

from clients.sdk import Client
from mesh.errors import MeshError
from tui._model import ALERT_AGE_S, DashModel
from tui._motion import Motion
from tui._palette import palette
from tui._screen import DEAD_LETTER, STREAM, Screen, View
from tui._stepup import with_step_up
from tui._throttle import Throttle

LIST_REFRESH_S = 2.0
STATUS_INTERVAL_MS = 500
TICK_S = 1.0  # ages (heartbeats, oldest waiting) move without any message


class Dashboard:
    """The screen's `Actions`, over one Client."""

    def __init__(
        self,
        client: Client,
        *,
        tenant: str,
        linear: bool,
        fps: float,
        theme: str | None,
        endpoint: str,
        alert_age_s: float = ALERT_AGE_S,
        cli: argparse.ArgumentParser | None = None,
        reduced_motion: bool = False,
    ) -> None:
        self.client = client
        self.tenant = tenant
        self.theme = theme
        self.model = DashModel(alert_age_s=alert_age_s)
        self._settle: asyncio.TimerHandle | None = None  # the redraw when a transition settles
        self.screen = Screen(
            self.model, self, linear=linear, endpoint=endpoint, cli=cli, motion=Motion(enabled=not reduced_motion)
        )
        self.throttle = Throttle(self._draw, fps)
        self.loop: urwid.MainLoop | None = None
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self._lists: asyncio.Task[None] | None = None
        self._lists_at = 0.0

    # -- Actions ------------------------------------------------------------------------------

    def redraw(self) -> None:
        self.throttle.request()

    def redraw_after(self, delay_s: float) -> None:
        """A redraw `delay_s` from now (when a transition settles); the latest request wins."""
        if self._settle is not None:
            self._settle.cancel()
        self._settle = asyncio.get_running_loop().call_later(delay_s, self.redraw)

    def quit(self) -> None:
        self._done.set()

    def toggle_pause(self) -> None:
        if self.model.paused:
            self._announce([*self.model.resume(), "live updates resumed"])
        else:
            self.model.pause()
            self._announce(["live updates paused (p resumes)"])
        self.redraw()

    def refresh(self) -> None:
        self._spawn(self._refresh())

    def watch_task(self, task_id: str) -> None:
        self.stop_watching()
        self._watch = self._spawn(self._follow(task_id))

    def stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def replay(self, task_id: str) -> None:
        self._spawn(self._replay(task_id))

    def purge(self, task_id: str) -> None:
        self._spawn(self._purge(task_id))

    def submit(self, kind: str, payload: dict[str, Any], priority: str) -> None:
        self._spawn(self._submit(kind, payload, priority))

    def cancel(self, task_ids: tuple[str, ...]) -> None:
        self._spawn(self._cancel(task_ids))

    def set_theme(self, name: str) -> None:
        """Recolour from the tokens' theme `name` (also when started without colour: asked for)."""
        self.theme = name
        if self.loop is not None:
            screen = self.loop.screen
            truecolor = os.environ.get("COLORTERM", "") in ("truecolor", "24bit")
            screen.set_terminal_properties(colors=16_777_216 if truecolor else 256)  # type: ignore[attr-defined]
            screen.register_palette(palette(name))
            screen.clear()
        self.screen.say(f"theme {name}")
        self.redraw()

    # -- commands -----------------------------------------------------------------------------

    async def _submit(self, kind: str, payload: dict[str, Any], priority: str) -> None:
        try:
            submitted = await self.client.submit(kind, payload, priority=priority)
        except MeshError as exc:
            self._trouble(f"submit {kind} refused: {exc.message}")
            return
        self.screen.say(f"submitted {kind} as {submitted.task_id}")
        self._announce([f"submitted {kind} as {submitted.task_id}"])
        await self._fetch_lists()

    async def _cancel(self, task_ids: tuple[str, ...]) -> None:
        for task_id in task_ids:
            try:
                await self.client.cancel(task_id, "cancelled from tidemesh dash")
            except MeshError as exc:
                self._trouble(f"cancel of {task_id} refused: {exc.message}")
                return
        self.screen.say(f"cancelled {', '.join(task_ids)}")
        self._announce([f"cancel asked for {task_id}" for task_id in task_ids])
        await self._fetch_lists()

    # -- feeds --------------------------------------------------------------------------------

    async def _statuses(self) -> None:
        while True:
            try:
                async for status in self.client.watch_status(STATUS_INTERVAL_MS):
                    self._announce(self.model.apply_status(status, time.time()))
                    self._lists_soon()
                    self.redraw()
            except MeshError as exc:
                self._trouble(f"status stream: {exc.message} (retrying)")
            await asyncio.sleep(2.0)

    async def _follow(self, task_id: str) -> None:
        try:
            async for event in self.client.watch(task_id):
                self._announce(self.model.add_event(event))
                self.redraw()
        except MeshError as exc:
            self._trouble(f"task {task_id}: {exc.message}")

    def _lists_soon(self) -> None:
        """Fetch the task page and dead letters again, unless that was done within LIST_REFRESH_S."""
        if self._lists is not None and not self._lists.done():
            return
        wait_s = max(0.0, self._lists_at + LIST_REFRESH_S - time.monotonic())
        self._lists = self._spawn(self._fetch_lists(wait_s))

    async def _fetch_lists(self, wait_s: float = 0.0) -> None:
        await asyncio.sleep(wait_s)
        self._lists_at = time.monotonic()
        try:
            tasks, _ = await self.client.list_tasks(self.tenant, limit=100)
            letters = await self.client.dead_letters(limit=100)
        except MeshError as exc:
            self._trouble(f"listing: {exc.message}")
            return
        self._announce(self.model.set_tasks(tasks) + self.model.set_dead_letters(letters))
        self.redraw()

    async def _refresh(self) -> None:
        try:
            self._announce(self.model.apply_status(await self.client.status(), time.time()))
            self.model.set_kinds(await self.client.kinds())
        except MeshError as exc:
            self._trouble(f"refresh: {exc.message}")
        await self._fetch_lists()
        self.screen.say("refreshed")
        self.redraw()

    async def _replay(self, task_id: str) -> None:
        try:
            replayed = await self.client.replay(task_id)
        except MeshError as exc:
            self._trouble(f"replay of {task_id} refused: {exc.message}")
            return
        again = " (it had been replayed already)" if replayed.deduplicated else ""
        self.screen.say(f"replayed {task_id} as {replayed.task_id}{again}")
        self._announce([f"dead letter {task_id} replayed as {replayed.task_id}"])
        await self._fetch_lists()

    async def _step_up(self, action: str, resource: str, code: str) -> str:
        return (await self.client.step_up(action, resource, code)).token

    async def _purge(self, task_id: str) -> None:
        async def purge(token: str) -> int:
            return await self.client.purge_dead_letters(task_id=task_id, step_up=token)

        try:
            purged = await with_step_up(self.screen.ask_code, self._step_up, purge)
        except MeshError as exc:
            self._trouble(f"purge of {task_id} refused: {exc.message}")
            return
        if purged is None:
            self._trouble(f"purge of {task_id} cancelled: no second factor given, nothing purged")
            return
        done = f"purged the dead letter of {task_id}" if purged else f"no dead letter of {task_id} to purge"
        self.screen.say(done)
        self._announce([done])
        await self._fetch_lists()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.redraw()

    # -- plumbing -----------------------------------------------------------------------------

    def _announce(self, sentences: list[str]) -> None:
        if sentences:
            self.screen.announce(sentences)

    def _trouble(self, message: str) -> None:
        self.screen.say(message)
        self._announce([message])
        self.redraw()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _draw(self) -> None:
        self.screen.update()
        if self.loop is not None:
            self.loop.draw_screen()

    async def run(self, start: View | None = None, pane: str = "") -> None:
        screen = urwid.display.raw.Screen()
        truecolor = os.environ.get("COLORTERM", "") in ("truecolor", "24bit")
        screen.set_terminal_properties(colors=1 if self.theme is None else 16_777_216 if truecolor else 256)
        self.loop = urwid.MainLoop(
            self.screen,
            palette(self.theme),
            screen=screen,
            handle_mouse=False,
            event_loop=urwid.AsyncioEventLoop(loop=asyncio.get_running_loop()),
        )
        if pane:
            self.screen.focus_named(pane)
        if start is not None:
            self.screen.open(start)
        self._spawn(self._statuses())
        self._spawn(self._tick())
        self.refresh()
        try:
            with self.loop.start():
                await self._done.wait()
        finally:
            self.throttle.cancel()
            if self._settle is not None:
                self._settle.cancel()
            running = list(self._tasks)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)


async def run_dashboard(
    client: Client,
    *,
    tenant: str = "default",
    task_id: str = "",
    dead_letter: str = "",
    linear: bool = False,
    fps: float = 10.0,
    theme: str | None = "dark",
    endpoint: str = "",
    pane: str = "",
    alert_age_s: float = ALERT_AGE_S,
    cli: argparse.ArgumentParser | None = None,
    reduced_motion: bool = False,
) -> None:
    """Run the dashboard on this terminal until `q`. `task_id` opens that task's live stream,
    `dead_letter` that dead letter's diagnosis, `pane` focuses that pane (`PANE_NAMES`); `cli`
    (the CLI's parser) reads the `:` palette's commands; `theme` None draws without colour; a
    lane alerts once its oldest item waited `alert_age_s`; `reduced_motion` (or `linear`)
    turns the transitions off."""
    dashboard = Dashboard(
        client,
        tenant=tenant,
        linear=linear,
        fps=fps,
        theme=theme,
        endpoint=endpoint,
        alert_age_s=alert_age_s,
        cli=cli,
        reduced_motion=reduced_motion or linear,
    )
    start = View(STREAM, task_id) if task_id else View(DEAD_LETTER, dead_letter) if dead_letter else None
    await dashboard.run(start, pane)
