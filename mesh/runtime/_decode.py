"""Requests are decoded by the service, not by grpc-core, so bad input is answered at once.

grpc.aio's unary handlers hide two failures behind the generated deserializer: a call that
ends without a complete message (an empty gRPC-Web body, a length prefix longer than the
body) is dropped without a status — the client waits until its own deadline — and a body
that is not the request message comes back UNKNOWN with the Python exception text. The
`StrictDecoding` interceptor re-registers every handler as request-streaming on raw bytes,
reads the one request itself and answers INVALID_ARGUMENT (field ``request``) for both.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from mesh.errors import InvalidArgument
from mesh.rpc import ServerContext as Context
from mesh.rpc import abort_with

__all__ = ["StrictDecoding", "strict_handler"]

Deserializer = Callable[[bytes], Any]


def _message_name(deserialize: Deserializer, method: str) -> str:
    """``GetTaskRequest`` for a generated ``FromString``; else the method's name."""
    owner = getattr(deserialize, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return getattr(descriptor, "name", "") or f"{method.rsplit('/', 1)[-1]} request"


async def _decode(raw: bytes, deserialize: Deserializer, what: str, context: Context) -> Any:
    try:
        return deserialize(raw)
    except Exception:  # whatever the parser raises, the bytes are bad input and its text is internals
        await abort_with(context, InvalidArgument("request", f"not a valid {what}"))


async def _single(requests: AsyncIterator[bytes], deserialize: Deserializer, what: str, context: Context) -> Any:
    try:
        raw = await anext(aiter(requests))
    except StopAsyncIteration:
        # grpc-core ends the message stream both for no message and for a truncated one.
        await abort_with(
            context, InvalidArgument("request", f"no complete {what} in the call (empty or truncated body)")
        )
    return await _decode(raw, deserialize, what, context)


async def _each(
    requests: AsyncIterator[bytes], deserialize: Deserializer, what: str, context: Context
) -> AsyncIterator[Any]:
    async for raw in requests:
        yield await _decode(raw, deserialize, what, context)


def _unary_request(behavior: Callable[..., Any], deserialize: Deserializer, what: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def stream(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[Any]:
            request = await _single(requests, deserialize, what, context)
            async with contextlib.aclosing(behavior(request, context)) as replies:
                async for reply in replies:
                    yield reply

        return stream

    async def call(requests: AsyncIterator[bytes], context: Context) -> Any:
        return await behavior(await _single(requests, deserialize, what, context), context)

    return call


def _streaming_request(behavior: Callable[..., Any], deserialize: Deserializer, what: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def stream(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[Any]:
            async with contextlib.aclosing(behavior(_each(requests, deserialize, what, context), context)) as replies:
                async for reply in replies:
                    yield reply

        return stream

    async def call(requests: AsyncIterator[bytes], context: Context) -> Any:
        return await behavior(_each(requests, deserialize, what, context), context)

    return call


def strict_handler(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """The same behaviour, registered request-streaming on raw bytes and decoded by us."""
    deserialize = handler.request_deserializer
    kinds: tuple[tuple[Any, Callable[..., Any], bool], ...] = (
        (handler.unary_unary, _unary_request, False),
        (handler.unary_stream, _unary_request, True),
        (handler.stream_unary, _streaming_request, False),
        (handler.stream_stream, _streaming_request, True),
    )
    for behavior, wrap, streams_replies in kinds:
        if behavior is None:
            continue
        async_behavior = inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)
        if deserialize is None or not async_behavior:
            return handler  # raw bytes already, or a sync handler grpc runs in a thread: leave it be
        wrapped = wrap(behavior, deserialize, _message_name(deserialize, method))
        make = grpc.stream_stream_rpc_method_handler if streams_replies else grpc.stream_unary_rpc_method_handler
        return make(wrapped, None, handler.response_serializer)
    return handler


class StrictDecoding(grpc.aio.ServerInterceptor):
    """Outermost interceptor of every ServiceHost: see the module docstring."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return strict_handler(handler, handler_call_details.method)  # type: ignore[attr-defined]
