"""One shape for everything long-lived: started once, stopped once, an async context manager.

A subclass implements `_start` and `_stop`; `start` and `close` check and move the state
(NEW → RUNNING → STOPPING → STOPPED). A second `start` is an error; `close` is idempotent,
and closing what never started only marks it stopped. If `_start` fails, `_stop` runs so
nothing half-started is left behind. Concurrent `close` calls share one stop, which runs to its end
even if a caller is cancelled meanwhile. An object usable from construction (a client over a
channel it opens at once) calls `_open_now` in its `__init__`: entering it then only ties its
close to the block.
"""

from __future__ import annotations

import asyncio
import enum
from types import TracebackType
from typing import ClassVar, Self

from mesh.errors import Unavailable
from mesh.telemetry import get_logger

log = get_logger(__name__)


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Lifecycle:
    noun: ClassVar[str] = "it"  # for errors: "the event hub is stopped: it starts once"
    state: State = State.NEW
    _opened_on_init: bool = False
    _stop_task: asyncio.Future[None] | None = None

    async def _start(self) -> None:
        """Acquire what the object holds (subscriptions, tasks)."""

    async def _stop(self) -> None:
        """Release it; called once, also after a failed `_start`."""

    async def start(self) -> None:
        if self.state is not State.NEW:
            raise RuntimeError(f"{self.noun} is {self.state.value}: it starts once")
        self.state = State.RUNNING
        try:
            await self._start()
        except BaseException:
            try:
                await self.close()
            except Exception:  # the start's own error is the one to report
                log.warning("%s: cleanup after a failed start failed", self.noun, exc_info=True)
            raise

    def _open_now(self) -> None:
        self.state, self._opened_on_init = State.RUNNING, True

    def check_running(self) -> None:
        """Unavailable unless started and not yet closing (for calls that need what `_start` holds):
        a call that races a shutdown is retryable elsewhere."""
        if self.state is not State.RUNNING:
            raise Unavailable(f"{self.noun} is {self.state.value}")

    async def close(self) -> None:
        if self.state is State.NEW:
            self.state = State.STOPPED
            return
        if self._stop_task is None:
            if self.state is not State.RUNNING:
                return
            self.state = State.STOPPING
            self._stop_task = asyncio.ensure_future(self._stop_once())
        await asyncio.shield(self._stop_task)

    async def _stop_once(self) -> None:
        try:
            await self._stop()
        finally:
            self.state = State.STOPPED

    async def __aenter__(self) -> Self:
        if self._opened_on_init:
            self.check_running()
        else:
            await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
