"""A second factor at the terminal: the one-time code, and the retry of a sensitive call after a
step-up challenge.

A sensitive command (``dlq purge``, ``audit export``, ``auth key`` for an admin key, ``auth revoke``
of one) that meets a challenge (StepUpRequired: the action and resource) asks for a code of the
operator's authenticator — on the terminal, hidden; else from ``$TIDEMESH_OTP`` — trades it for a
step-up token bound to that action and resource, and makes the call once more with it. A code is
never taken from the command line (it would sit in the process table and the shell's history).
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import grpc.aio

from clients.cli._output import Output
from mesh.errors import InvalidArgument, StepUpRequired
from mesh.rpc import raise_from_rpc_error
from mesh.v1 import access_pb2, access_pb2_grpc

if TYPE_CHECKING:
    from clients.sdk import Client

T = TypeVar("T")
OTP_ENV = "TIDEMESH_OTP"

# (action, resource, code) → a step-up token (Client.step_up, or the AccessService stub's).
StepUp = Callable[[str, str, str], Awaitable[str]]


def otp_code(prompt: str) -> str:
    """A one-time code: $TIDEMESH_OTP, else asked on the terminal (not echoed)."""
    code = os.environ.get(OTP_ENV, "").strip()
    if code:
        return code
    if not sys.stdin.isatty():
        raise InvalidArgument("code", f"a one-time code is needed: run this on a terminal, or set ${OTP_ENV}")
    return getpass.getpass(prompt).strip()


async def with_step_up(out: Output, step_up: StepUp, call: Callable[[str], Awaitable[T]]) -> T:
    """`call("")`; on a step-up challenge, a code for a token and `call(token)` once more."""
    try:
        return await call("")
    except StepUpRequired as challenge:
        out.note(f"{challenge.action} on {challenge.resource} wants a fresh second factor")
        code = otp_code(f"one-time code for {challenge.action} on {challenge.resource}: ")
        token = await step_up(challenge.action, challenge.resource, code)
        return await call(token)


def step_up_of(client: Client) -> StepUp:
    """The SDK client's step-up, as `with_step_up` takes it."""

    async def step_up(action: str, resource: str, code: str) -> str:
        return (await client.step_up(action, resource, code)).token

    return step_up


def step_up_on(channel: grpc.aio.Channel, timeout_s: float = 30.0) -> StepUp:
    """Step-up over a raw channel to the mesh (AccessService.StepUp), as `with_step_up` takes it."""
    access = access_pb2_grpc.AccessServiceStub(channel)  # type: ignore[no-untyped-call]

    async def step_up(action: str, resource: str, code: str) -> str:
        request = access_pb2.StepUpRequest(action=action, resource=resource, code=code)
        try:
            reply = await access.StepUp(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise_from_rpc_error(exc)
        return str(reply.token)

    return step_up
