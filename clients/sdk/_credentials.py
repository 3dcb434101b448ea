"""Credentials on every call of a Client: an interceptor that adds the current one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc.aio


def authorization_header(credential: str) -> str:
    """``ApiKey tmk_…`` for an API key, ``Bearer …`` for anything else (a JWT)."""
    return f"ApiKey {credential}" if credential.startswith("tmk_") else f"Bearer {credential}"


class _WithCredential:
    """Reads the credential at each call, so a refresh applies to every later call."""

    def __init__(self, current: Callable[[], str]) -> None:
        self._current = current

    def _details(self, details: Any) -> Any:
        credential = self._current()
        if not credential:
            return details
        metadata = [(k, v) for k, v in (details.metadata or ()) if k != "authorization"]
        metadata.append(("authorization", authorization_header(credential)))
        return details._replace(metadata=tuple(metadata))


class _Unary(_WithCredential, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _Streaming(_WithCredential, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _Bidi(_WithCredential, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(self._details(details), request_iterator)


def credential_interceptors(current: Callable[[], str]) -> list[Any]:
    # One object per call type: grpc.aio files an interceptor under the first type it matches.
    return [_Unary(current), _Streaming(current), _Bidi(current)]
