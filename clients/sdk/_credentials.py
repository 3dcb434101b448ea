"""Credentials on every call of a Client: an interceptor that adds the current one (and the surface
the client declares, ``x-tidemesh-surface``, for the audit) — and, at
DEBUG on the ``tidemesh.sdk.calls`` logger (the CLI's ``-vv``), a line per call when it ends:
the method, its status code and how long it took (never its metadata: the credential stays out)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc.aio

calls_log = logging.getLogger("tidemesh.sdk.calls")
SURFACE_HEADER = "x-tidemesh-surface"  # cli, console, dash, desktop: where an audited call came from


def authorization_header(credential: str) -> str:
    """``ApiKey tmk_…`` for an API key, ``Bearer …`` for anything else (a JWT)."""
    return f"ApiKey {credential}" if credential.startswith("tmk_") else f"Bearer {credential}"


class _WithCredential:
    """Reads the credential at each call, so a refresh applies to every later call."""

    def __init__(self, current: Callable[[], str], surface: str = "") -> None:
        self._current = current
        self._surface = surface

    _tracing: set[asyncio.Task[None]] = set()  # the loggers of calls in flight (kept from the GC)

    @classmethod
    def _traced(cls, details: Any, call: Any) -> Any:
        """`call`, logged when it ends (at DEBUG only)."""
        if calls_log.isEnabledFor(logging.DEBUG):
            method = details.method.decode() if isinstance(details.method, bytes) else details.method
            task = asyncio.ensure_future(_log_when_done(method, call, time.perf_counter()))
            cls._tracing.add(task)
            task.add_done_callback(cls._tracing.discard)
        return call

    def _details(self, details: Any) -> Any:
        credential = self._current()
        if not credential and not self._surface:
            return details
        metadata = [(k, v) for k, v in (details.metadata or ()) if k not in ("authorization", SURFACE_HEADER)]
        if credential:
            metadata.append(("authorization", authorization_header(credential)))
        if self._surface:
            metadata.append((SURFACE_HEADER, self._surface))
        return details._replace(metadata=tuple(metadata))


class _Unary(_WithCredential, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._traced(details, await continuation(self._details(details), request))


class _Streaming(_WithCredential, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._traced(details, await continuation(self._details(details), request))


class _Bidi(_WithCredential, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return self._traced(details, await continuation(self._details(details), request_iterator))


async def _log_when_done(method: str, call: Any, started: float) -> None:
    code = await call.code()  # resolves once the call has ended, whatever its outcome
    calls_log.debug("%s → %s in %.1f ms", method, code.name, (time.perf_counter() - started) * 1000)


def credential_interceptors(current: Callable[[], str], surface: str = "") -> list[Any]:
    # One object per call type: grpc.aio files an interceptor under the first type it matches.
    return [_Unary(current, surface), _Streaming(current, surface), _Bidi(current, surface)]
