"""Services run on uvloop unless TIDEMESH_EVENT_LOOP=asyncio; anything else is refused by name."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from mesh.runtime._main import EVENT_LOOP_ENV, run_loop


def _loop_kind(monkeypatch: pytest.MonkeyPatch, choice: str | None) -> type:
    if choice is None:
        monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    else:
        monkeypatch.setenv(EVENT_LOOP_ENV, choice)
    seen: list[type] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()))

    run_loop(main())
    return seen[0]


def test_the_default_is_uvloop_and_asyncio_can_be_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _loop_kind(monkeypatch, None) is uvloop.Loop
    assert _loop_kind(monkeypatch, "asyncio") is not uvloop.Loop


def test_an_unknown_loop_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "trio")
    main = asyncio.sleep(0)
    with pytest.raises(SystemExit, match="TIDEMESH_EVENT_LOOP: expected uvloop or asyncio, got 'trio'"):
        run_loop(main)
    main.close()
