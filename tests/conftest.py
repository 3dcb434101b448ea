"""Shared test helpers: polling without sleeps-as-waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 15.0, what: str = "") -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    last_error: Exception | None = None
    while True:
        try:
            value = await probe()
            if value:
                return value
        except Exception as exc:  # the condition is not met yet
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout_s}s: {what} (last error: {last_error!r})")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
