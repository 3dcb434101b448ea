"""The `:` command palette's language: the CLI's verbs as typed at the CLI (`submit echo --text hi`,
`cancel ID`, `watch ID`, `get ID`, `replay ID` or `dlq replay|show|purge ID`), read by the CLI's own
argparse parser, and the palette's own (`filter TEXT`, `theme NAME`, `help`, `quit`). A bad line
is a `CommandError` saying what to type instead; nothing here exits or prints.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from clients.design import THEMES

CLI_VERBS = ("submit", "cancel", "watch", "get", "replay", "dlq")
LOCAL_VERBS = ("filter", "theme", "help", "quit")
VERBS = tuple(sorted(CLI_VERBS + LOCAL_VERBS))
USAGE = (
    "submit KIND --text T | --payload JSON [--priority P]",
    "cancel ID [ID …]",
    "watch ID",
    "get ID",
    "replay ID",
    "dlq show ID",
    "dlq purge ID",
    "filter TEXT",
    "theme " + "|".join(THEMES),
    "help",
    "quit",
)


class CommandError(ValueError):
    """A line the palette cannot run; the message says what to type instead."""


@dataclass(frozen=True)
class Command:
    verb: str  # submit, cancel, watch, get, replay, show or purge (a dead letter), filter, theme, help, quit
    targets: tuple[str, ...] = ()  # task ids, the filter's text, the theme's name
    kind: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    priority: str = "standard"


def parse(line: str, parser: argparse.ArgumentParser) -> Command:
    """One palette line as a `Command`; the CLI's verbs go through `parser` (the CLI's own)."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise CommandError(f"{exc} (quote a value with spaces once: --text 'a b')") from exc
    if not words:
        raise CommandError("type a command: " + ", ".join(VERBS))
    verb, rest = words[0], words[1:]
    if verb == "filter":
        return Command("filter", (line.strip().removeprefix("filter").strip(),))
    if verb == "theme":
        if len(rest) != 1 or rest[0] not in THEMES:
            raise CommandError(f"theme takes one of {', '.join(THEMES)}")
        return Command("theme", (rest[0],))
    if verb in ("help", "quit"):
        if rest:
            raise CommandError(f"{verb} takes nothing after it")
        return Command(verb)
    if verb not in CLI_VERBS:
        close = [v for v in VERBS if v.startswith(verb[:1])]
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise CommandError(f"unknown command {verb!r}{hint}; the commands: {', '.join(VERBS)}")
    args = _cli_parse(parser, ["dlq", "replay", *rest] if verb == "replay" else words)
    if args.command == "submit":
        return Command("submit", (), args.kind, _payload(args.payload, args.text), args.priority)
    if args.command == "cancel":
        if args.tenant or not args.task_ids:
            raise CommandError("cancel takes task ids here (cancelling a whole tenant: the CLI's cancel --tenant)")
        return Command("cancel", tuple(args.task_ids))
    if args.command == "dlq":
        if args.action not in ("replay", "show", "purge") or not args.task_id or args.tenant:
            raise CommandError(
                "the palette replays, shows or purges one dead letter: replay ID, dlq show ID, dlq purge ID"
            )
        return Command(args.action, (args.task_id,))
    return Command(args.command, (args.task_id,))  # watch, get


def complete(text: str) -> tuple[str, tuple[str, ...]]:
    """Tab on `text`: the line completed as far as it is unambiguous, and the candidates."""
    if " " not in text:
        found = tuple(v for v in VERBS if v.startswith(text))
        return (found[0] + " " if len(found) == 1 else _common_prefix(found) or text), found
    verb, _, partial = text.partition(" ")
    if verb == "theme":
        found = tuple(t for t in THEMES if t.startswith(partial.strip()))
        return (f"theme {found[0]}" if len(found) == 1 else text), found
    return text, ()


def _common_prefix(words: tuple[str, ...]) -> str:
    prefix = words[0] if words else ""
    for word in words:
        while not word.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


def _cli_parse(parser: argparse.ArgumentParser, words: list[str]) -> argparse.Namespace:
    """`parser.parse_args(words)`, its complaints (it prints and exits) turned into a CommandError."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            return parser.parse_args(words)
    except SystemExit as exc:
        lines = [line for line in said.getvalue().splitlines() if line.strip()]
        if exc.code == 0:  # -h: the usage, not the whole help page
            raise CommandError(" ".join(lines[0].split()) if lines else "help lists the commands") from None
        message = lines[-1].split(": error: ", 1)[-1] if lines else "not understood"
        raise CommandError(f"{words[0]}: {message}") from None


def _payload(payload: str, text: str | None) -> dict[str, Any]:
    """--payload JSON with --text over its text field, as the CLI's submit reads them."""
    try:
        fields = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--payload is not JSON: {exc.msg}") from exc
    if not isinstance(fields, dict):
        raise CommandError("--payload must be a JSON object")
    if text is not None:
        fields["text"] = text
    return fields
