"""`mesh.lifecycle.Lifecycle`: started once, stopped once, nothing half-started left behind."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from mesh.errors import Unavailable
from mesh.fabric import EventLog
from mesh.lifecycle import Lifecycle, State
from mesh.v1 import task_pb2


class Probe(Lifecycle):
    noun = "the probe"

    def __init__(self, fail: bool = False, stop_fails: bool = False) -> None:
        self.fail = fail
        self.stop_fails = stop_fails
        self.calls: list[str] = []
        self.stop_gate = asyncio.Event()
        self.stop_gate.set()

    async def _start(self) -> None:
        self.calls.append("start")
        if self.fail:
            raise OSError("port taken")

    async def _stop(self) -> None:
        self.calls.append("stop")
        await self.stop_gate.wait()
        if self.stop_fails:
            raise OSError("socket already gone")
        self.calls.append("stopped")


async def test_it_runs_between_enter_and_exit_and_stops_once() -> None:
    probe = Probe()
    async with probe as entered:
        assert entered is probe and probe.state is State.RUNNING
        probe.check_running()
    assert probe.state is State.STOPPED
    await probe.close()
    assert probe.calls == ["start", "stop", "stopped"]


async def test_a_second_start_is_refused_naming_the_object_and_its_state() -> None:
    probe = Probe()
    await probe.start()
    with pytest.raises(RuntimeError, match="the probe is running: it starts once"):
        await probe.start()
    await probe.close()
    with pytest.raises(Unavailable, match="the probe is stopped"):
        probe.check_running()


async def test_a_failed_start_releases_what_it_took() -> None:
    probe = Probe(fail=True)
    with pytest.raises(OSError, match="port taken"):
        await probe.start()
    assert probe.calls == ["start", "stop", "stopped"] and probe.state is State.STOPPED


async def test_a_failed_start_reports_its_own_error_even_if_the_cleanup_fails() -> None:
    probe = Probe(fail=True, stop_fails=True)
    with pytest.raises(OSError, match="port taken"):
        await probe.start()
    assert probe.state is State.STOPPED


async def test_concurrent_closes_share_one_stop_that_survives_a_cancelled_caller() -> None:
    probe = Probe()
    await probe.start()
    probe.stop_gate.clear()
    first = asyncio.create_task(probe.close())
    second = asyncio.create_task(probe.close())
    await asyncio.sleep(0)  # both are waiting on the one stop
    assert probe.state is State.STOPPING
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    probe.stop_gate.set()
    await second  # waits for the stop the first caller began, which the cancel did not cut off
    assert probe.calls == ["start", "stop", "stopped"] and probe.state is State.STOPPED


async def test_closing_what_never_started_only_marks_it_stopped() -> None:
    probe = Probe()
    await probe.close()
    assert probe.calls == [] and probe.state is State.STOPPED
    with pytest.raises(RuntimeError, match="starts once"):
        await probe.start()


async def test_the_event_log_is_open_from_construction_and_refuses_writes_once_closed() -> None:
    async with EventLog(None, SimpleNamespace()) as events:  # type: ignore[arg-type]
        assert events.state is State.RUNNING
    assert events.state is State.STOPPED
    with pytest.raises(Unavailable, match="the event log is stopped"):
        await events.append(task_pb2.TaskEvent(task_id="t", sequence=1), 0)
