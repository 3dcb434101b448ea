"""How the CLI speaks: data in a format (``-o table|json|jsonl|yaml``) on stdout, everything else —
notes, progress, diagnostics — on stderr, by verbosity (``-q`` / ``-v`` / ``-vv``), with
timestamps on streamed lines (``--timestamps local|utc|none``), and an accessible mode.

Accessible mode (``--accessible``, ``TIDEMESH_ACCESSIBLE=1`` or ``ACCESSIBLE``) and any output that
is not a terminal get no spinner and no cursor motion: progress is append-only, one timestamped line
per step, and a long wait says "still working" every 30 s. On a terminal, progress is rich's
(a spinner, or a bar when the total is known), on stderr, gone once the work is done.

Destructive commands confirm first (`Output.confirm`): on a terminal they show what they would
touch — the count and the first ten ids — and ask, default no; without a terminal they refuse
unless ``--yes`` was given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml

from clients.cli._style import Style, wants_colour

FORMATS = ("table", "json", "jsonl", "yaml")
TIMESTAMPS = ("local", "utc", "none")
STILL_WORKING_S = 30.0
SHOWN_IDS = 10  # a confirmation lists this many of the ids it would touch


class Declined(Exception):
    """A destructive command not confirmed: declined at the prompt, or no terminal and no --yes."""


def accessible_from(env: Mapping[str, str]) -> bool:
    """``TIDEMESH_ACCESSIBLE`` or ``ACCESSIBLE`` set to anything but empty or 0."""
    return any(env.get(name, "") not in ("", "0") for name in ("TIDEMESH_ACCESSIBLE", "ACCESSIBLE"))


def add_output_args(
    p: argparse.ArgumentParser, *, formats: bool = True, streams: bool = False, destructive: bool = False
) -> None:
    """The flags every command that prints data takes (one declaration, for every command);
    `formats=False` for one that only reports (`up`): verbosity and accessibility only."""
    if formats:
        p.add_argument(
            "-o", "--output", choices=FORMATS, default="table", help="table (for people), json, jsonl or yaml"
        )
        p.add_argument("--json", action="store_const", const="json", dest="output", help="the same as -o json")
    p.add_argument("-q", "--quiet", action="store_true", help="only the data: no notes, no progress")
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v: where it connects and with what credential; -vv: also every call (method, status, time)",
    )
    p.add_argument(
        "--accessible",
        action="store_true",
        default=None,
        help="no spinner or cursor motion, append-only lines, a 'still working' line every 30 s "
        "(default: $TIDEMESH_ACCESSIBLE or $ACCESSIBLE)",
    )
    if streams:
        p.add_argument(
            "--timestamps", choices=TIMESTAMPS, default="local", help="the clock streamed lines are stamped with"
        )
    if destructive:
        p.add_argument("-y", "--yes", action="store_true", help="do it without asking (scripts)")


def _plain(value: Any) -> Any:
    """Data as JSON/YAML can hold it (tuples as lists, datetimes as RFC 3339)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _isatty(stream: TextIO) -> bool:
    with contextlib.suppress(AttributeError, ValueError):
        return stream.isatty()
    return False


@dataclass
class Output:
    """One command's voice. `out` carries the data; `err` everything said about it."""

    format: str = "table"
    verbosity: int = 0  # -1 quiet, 0, 1 (-v), 2 (-vv)
    accessible: bool = False
    timestamps: str = "local"
    yes: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    style: Style | None = None
    still_working_s: float = STILL_WORKING_S
    _drawing: Progress | None = field(default=None, init=False, repr=False)  # the bar on the terminal now

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Output:
        env = os.environ if env is None else env
        accessible = getattr(args, "accessible", None)
        return cls(
            format=getattr(args, "output", None) or "table",
            verbosity=-1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0),
            accessible=accessible_from(env) if accessible is None else accessible,
            timestamps=getattr(args, "timestamps", "local"),
            yes=getattr(args, "yes", False),
            style=Style.for_stream(sys.stdout, getattr(args, "theme", None), env),
        )

    @property
    def table(self) -> bool:
        return self.format == "table"

    # -- data, on stdout ----------------------------------------------------------------------
    def data(self, value: Any, table: Callable[[], None] | None = None) -> None:
        """`value` in the chosen format; for ``table``, `table()` prints it for people (else YAML)."""
        if self.format == "table" and table is not None:
            table()
            return
        value = _plain(value)
        if self.format == "json":
            self._emit(json.dumps(value, indent=2, ensure_ascii=False))
        elif self.format == "jsonl":
            for item in value if isinstance(value, list) else [value]:
                self._emit(json.dumps(item, separators=(",", ":"), ensure_ascii=False))
        else:  # yaml, or a table nobody drew
            self._emit(yaml.safe_dump(value, sort_keys=False, allow_unicode=True).rstrip())

    def record(self, value: Any, line: str) -> None:
        """One item of a stream: a JSON line (json, jsonl), a YAML document, or `line` for people."""
        if self.format == "table":
            self._emit(line)
        elif self.format == "yaml":
            self._emit("---\n" + yaml.safe_dump(_plain(value), sort_keys=False, allow_unicode=True).rstrip())
        else:
            self._emit(json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False))

    def line(self, text: str) -> None:
        """A line of data for people (a table's row); only in table format."""
        self._emit(text)

    def _emit(self, text: str) -> None:
        """Data on stdout; a bar drawn on the same terminal steps aside for it and comes back below."""
        drawing = self._drawing if _isatty(self.out) else None
        if drawing is not None:
            drawing.hide()
        print(text, file=self.out, flush=True)
        if drawing is not None:
            drawing.show()

    def lines(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.line(text)

    # -- what is said about it, on stderr -------------------------------------------------------
    def note(self, text: str) -> None:
        """Said unless -q."""
        if self.verbosity >= 0:
            print(text, file=self.err, flush=True)

    def detail(self, text: str, level: int = 1) -> None:
        """Said at -v (level 1) or -vv (level 2)."""
        if self.verbosity >= level:
            print(text, file=self.err, flush=True)

    def stamp(self, when: datetime) -> str:
        """`when` (UTC) on the chosen clock; "" with ``--timestamps none``."""
        if self.timestamps == "none":
            return ""
        moment = when.replace(tzinfo=UTC) if when.tzinfo is None else when
        if self.timestamps == "utc":
            return moment.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3] + "Z"
        return moment.astimezone().strftime("%H:%M:%S.%f")[:-3]

    @property
    def live(self) -> bool:
        """Whether progress may redraw in place: stderr is a terminal, not accessible, not quiet."""
        return not self.accessible and self.verbosity >= 0 and _isatty(self.err)

    @contextlib.asynccontextmanager
    async def progress(self, label: str, total: int | None = None, *, announce: bool = True) -> AsyncIterator[Progress]:
        """Progress of long work: a spinner or bar on a terminal, else timestamped lines (and a
        "still working" line every `still_working_s` while nothing else is said). Without a
        terminal, `announce=False` says only the "still working" lines — for work the command's
        own output already reports (a task's events: QUEUED, each child's partial result)."""
        progress = Progress(self, label, total, announce)
        async with progress:
            yield progress

    # -- confirmations ----------------------------------------------------------------------------
    def confirm(self, action: str, ids: Iterable[str]) -> None:
        """Ask before `action` ("purge 12 dead letters of tenant acme") touches `ids`; raises
        Declined when declined, or when there is no terminal to ask on and no ``--yes``."""
        shown = list(ids)
        total = len(shown)
        if self.yes:
            return
        if not _isatty(self.stdin):
            raise Declined(f"refusing to {action} without confirmation: pass --yes (no terminal to ask on)")
        print(f"This will {action}: {total} in all.", file=self.err)
        for item in shown[:SHOWN_IDS]:
            print(f"  {item}", file=self.err)
        if total > SHOWN_IDS:
            print(f"  … and {total - SHOWN_IDS} more", file=self.err)
        print("Proceed? [y/N] ", end="", file=self.err, flush=True)
        answer = self.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            raise Declined(f"did not {action}: not confirmed")


class Progress:
    """One piece of long work being reported; `advance` as each part of it is done."""

    def __init__(self, output: Output, label: str, total: int | None, announce: bool = True) -> None:
        self._output = output
        self.label = label
        self.total = total
        self._announce = announce
        self.done = 0
        self._said_at = time.monotonic()
        self._rich: Any = None
        self._task: Any = None
        self._ticker: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Progress:
        output = self._output
        if output.verbosity < 0:
            return self
        if output.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            colour = wants_colour(os.environ, isatty=True)  # stderr is a terminal here: the conventions decide
            palette = (output.style or Style.for_stream(output.err)).palette
            columns: list[Any] = [SpinnerColumn(style=palette["accent"]), TextColumn("{task.description}")]
            if self.total is not None:
                columns += [
                    BarColumn(complete_style=palette["accent"], finished_style=palette["ok"], style=palette["muted"]),
                    MofNCompleteColumn(),
                ]
            columns.append(TimeElapsedColumn())
            console = Console(file=output.err, no_color=not colour, highlight=False)
            self._rich = RichProgress(*columns, console=console, transient=True)
            self._rich.start()
            self._task = self._rich.add_task(self.label, total=self.total)
            output._drawing = self
        else:
            if self._announce:
                self._say(f"{self.label} …")
            self._ticker = asyncio.create_task(self._still_working())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._rich is not None:
            self._output._drawing = None
            self._rich.stop()

    def hide(self) -> None:
        """Take the bar off the terminal (it is transient: nothing stays behind)."""
        if self._rich is not None:
            self._rich.stop()

    def show(self) -> None:
        if self._rich is not None:
            self._rich.start()

    def _say(self, text: str) -> None:
        self._said_at = time.monotonic()
        stamp = self._output.stamp(datetime.now(UTC))
        self._output.note(f"{stamp}  {text}" if stamp else text)

    async def _still_working(self) -> None:
        started = time.monotonic()
        every = self._output.still_working_s
        while True:
            await asyncio.sleep(max(every - (time.monotonic() - self._said_at), 0.0))
            if time.monotonic() - self._said_at >= every:
                counted = f", {self.done}/{self.total}" if self.total is not None else ""
                self._say(f"still working: {self.label} ({time.monotonic() - started:.0f} s{counted})")

    def advance(self, text: str = "") -> None:
        """One more of `total` done (`text` says which)."""
        self.done += 1
        if self._output.verbosity < 0 or (self._rich is None and not self._announce):
            return
        if self._rich is not None:
            self._rich.update(self._task, advance=1, description=f"{self.label}: {text}" if text else self.label)
        else:
            counted = f" ({self.done}/{self.total})" if self.total is not None else ""
            self._say(f"{self.label}: {text}{counted}" if text else f"{self.label}{counted}")
