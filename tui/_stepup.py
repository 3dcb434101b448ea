"""A second factor in the dashboard: a sensitive action (a dead letter's purge) that meets a step-up
challenge asks for a one-time code in a modal prompt, trades it for a step-up token bound to the
challenge's action and resource, and runs the action once more with it.

The prompt (`CodePrompt`, the screen's `CodeDialog`) stays open on a refused code, the refusal on its
field, until a code is taken or the operator cancels (then nothing is done). The code itself is
never said on the message line, announced or logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from mesh.errors import InvalidArgument, MeshError, StepUpRequired

T = TypeVar("T")
# (action, resource, code) → a step-up token (`Client.step_up`'s).
StepUp = Callable[[str, str, str], Awaitable[str]]


class CodePrompt(Protocol):
    """An open prompt for a code."""

    async def code(self) -> str | None: ...  # the next code typed; None: cancelled
    def refuse(self, message: str) -> None: ...  # the code was not taken: say why on the field, ask again
    def close(self) -> None: ...


# The challenge → the prompt for it (`tui._screen.Screen.ask_code`).
AskCode = Callable[[StepUpRequired], CodePrompt]


def checked_code(typed: str) -> str:
    """`typed` as a one-time code (6 digits, spaces dropped), or InvalidArgument naming ``code``."""
    code = "".join(typed.split())
    if not (code.isdigit() and len(code) == 6):
        raise InvalidArgument("code", "a one-time code is 6 digits")
    return code


async def with_step_up(ask: AskCode, step_up: StepUp, call: Callable[[str], Awaitable[T]]) -> T | None:
    """`call("")`; on a step-up challenge, codes from a prompt until one buys a token, then
    `call(token)` once more. None when the prompt is cancelled: `call` ran only the first time,
    refused, and nothing was done."""
    try:
        return await call("")
    except StepUpRequired as challenge:
        action, resource = challenge.action, challenge.resource
        prompt = ask(challenge)
    try:
        while True:
            typed = await prompt.code()
            if typed is None:
                return None
            try:
                token = await step_up(action, resource, checked_code(typed))
            except MeshError as refused:  # a wrong, used or malformed code: the prompt asks again
                prompt.refuse(refused.message)
                continue
            break
    finally:
        prompt.close()
    return await call(token)
