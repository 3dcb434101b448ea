"""How the CLI speaks: formats on stdout, notes by verbosity on stderr, clocks, confirmations, and
progress that is append-only when nobody watches a terminal (or in accessible mode)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
from datetime import UTC, datetime

import pytest
import yaml

from clients.cli._output import SHOWN_IDS, Declined, Output, accessible_from, add_output_args


class Tty(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _output(**kwargs: object) -> tuple[Output, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Output(out=out, err=err, **kwargs), out, err  # type: ignore[arg-type]


def _parse(*argv: str, **kinds: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_output_args(parser, **kinds)
    return parser.parse_args(argv)


def test_flags_every_data_command_takes() -> None:
    assert _parse().output == "table"
    assert _parse("--json").output == "json" and _parse("-o", "yaml").output == "yaml"
    args = _parse("-q")
    assert Output.from_args(args, env={}).verbosity == -1
    assert Output.from_args(_parse("-vv"), env={}).verbosity == 2
    assert Output.from_args(_parse("--timestamps", "utc", streams=True), env={}).timestamps == "utc"
    assert Output.from_args(_parse("-y", destructive=True), env={}).yes
    with pytest.raises(SystemExit):
        _parse("-o", "xml")
    with pytest.raises(SystemExit):  # only a destructive command takes --yes
        _parse("--yes")


def test_accessible_mode_from_the_environment_or_the_flag() -> None:
    assert accessible_from({"TIDEMESH_ACCESSIBLE": "1"}) and accessible_from({"ACCESSIBLE": "yes"})
    assert not accessible_from({}) and not accessible_from({"ACCESSIBLE": "0", "TIDEMESH_ACCESSIBLE": ""})
    assert Output.from_args(_parse(), env={"ACCESSIBLE": "1"}).accessible
    assert Output.from_args(_parse("--accessible"), env={}).accessible


@pytest.mark.parametrize("fmt", ["json", "jsonl", "yaml"])
def test_data_in_each_format_reads_back(fmt: str) -> None:
    rows = [{"task_id": "a", "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}, {"task_id": "b", "n": (1, 2)}]
    output, out, err = _output(format=fmt)
    output.data(rows, table=lambda: pytest.fail("a table only for -o table"))
    text = out.getvalue()
    if fmt == "json":
        back = json.loads(text)
    elif fmt == "jsonl":
        back = [json.loads(line) for line in text.splitlines()]
    else:
        back = yaml.safe_load(text)
    assert back == [{"task_id": "a", "when": "2026-01-02T03:04:05+00:00"}, {"task_id": "b", "n": [1, 2]}]
    assert err.getvalue() == ""


def test_a_table_is_drawn_for_people_and_a_record_without_one_reads_as_yaml() -> None:
    output, out, _ = _output()
    output.data({"x": 1}, table=lambda: output.line("x is 1"))
    output.data({"y": 2})
    assert out.getvalue() == "x is 1\ny: 2\n"


@pytest.mark.parametrize(("fmt", "expected"), [("table", "line 1\n"), ("jsonl", '{"n":1}\n'), ("json", '{"n":1}\n')])
def test_a_stream_record_per_format(fmt: str, expected: str) -> None:
    output, out, _ = _output(format=fmt)
    output.record({"n": 1}, "line 1")
    assert out.getvalue() == expected


def test_a_yaml_stream_is_a_sequence_of_documents() -> None:
    output, out, _ = _output(format="yaml")
    output.record({"n": 1}, "")
    output.record({"n": 2}, "")
    assert list(yaml.safe_load_all(out.getvalue())) == [{"n": 1}, {"n": 2}]


def test_clocks() -> None:
    when = datetime(2026, 12, 3, 16, 19, 58, 965000)  # naive: UTC, as protobuf timestamps convert
    assert _output(timestamps="utc")[0].stamp(when) == "16:19:58.965Z"
    assert _output(timestamps="none")[0].stamp(when) == ""
    local = when.replace(tzinfo=UTC).astimezone().strftime("%H:%M:%S.965")
    assert _output(timestamps="local")[0].stamp(when) == local


def test_notes_go_to_stderr_by_verbosity() -> None:
    output, out, err = _output()
    output.note("task 1")
    output.detail("endpoint: x")
    output.detail("debug", level=2)
    assert (out.getvalue(), err.getvalue()) == ("", "task 1\n")
    quiet, _, err = _output(verbosity=-1)
    quiet.note("task 1")
    assert err.getvalue() == ""
    loud, _, err = _output(verbosity=2)
    loud.detail("endpoint: x")
    loud.detail("debug", level=2)
    assert err.getvalue() == "endpoint: x\ndebug\n"


def test_confirm_without_a_terminal_refuses_unless_yes() -> None:
    output, _, _ = _output(stdin=io.StringIO("y\n"))  # piped input is no answer
    with pytest.raises(Declined, match="pass --yes"):
        output.confirm("purge 3 dead letters", ["a", "b", "c"])
    _output(yes=True, stdin=io.StringIO(""))[0].confirm("purge 3 dead letters", ["a", "b", "c"])


@pytest.mark.parametrize(("answer", "proceeds"), [("y\n", True), ("yes\n", True), ("n\n", False), ("\n", False)])
def test_confirm_on_a_terminal_shows_the_count_and_the_first_ids(answer: str, proceeds: bool) -> None:
    ids = [f"task-{i:02}" for i in range(SHOWN_IDS + 5)]
    output, out, err = _output(stdin=Tty(answer))
    if proceeds:
        output.confirm("cancel 15 tasks", ids)
    else:
        with pytest.raises(Declined, match="not confirmed"):
            output.confirm("cancel 15 tasks", ids)
    said = err.getvalue()
    assert "This will cancel 15 tasks: 15 in all." in said and "Proceed? [y/N]" in said
    assert all(f"  {task_id}\n" in said for task_id in ids[:SHOWN_IDS])
    assert ids[SHOWN_IDS] not in said and "… and 5 more" in said
    assert out.getvalue() == ""


async def test_progress_without_a_terminal_is_timestamped_lines() -> None:
    output, out, err = _output(timestamps="utc")
    async with output.progress("replaying", total=2) as progress:
        progress.advance("a → a-r")
        progress.advance("b → b-r")
    lines = err.getvalue().splitlines()
    stamp = r"\d\d:\d\d:\d\d\.\d{3}Z  "
    assert [re.sub(stamp, "", line) for line in lines] == [
        "replaying …",
        "replaying: a → a-r (1/2)",
        "replaying: b → b-r (2/2)",
    ]
    assert all(re.match(stamp, line) for line in lines) and "\x1b" not in err.getvalue()
    assert out.getvalue() == ""


async def test_a_long_wait_says_still_working() -> None:
    said_it = asyncio.Event()

    class Watched(Tty):
        def write(self, text: str) -> int:
            if "still working" in text:
                said_it.set()
            return super().write(text)

    err = Watched()
    output = Output(out=io.StringIO(), err=err, accessible=True, still_working_s=0.05)  # accessible: even on a tty
    async with output.progress("waiting for the queue", announce=False):
        await asyncio.wait_for(said_it.wait(), 5)
    said = err.getvalue()
    assert "still working: waiting for the queue (0 s)" in said and "\x1b" not in said
    assert not said.startswith("waiting for the queue …")  # not announced


async def test_on_a_terminal_progress_redraws_and_leaves_nothing_behind() -> None:
    err = Tty()
    output = Output(out=io.StringIO(), err=err)
    assert output.live
    async with output.progress("booting", total=3) as progress:
        progress.advance("nats")
    assert "\x1b[?25l" in err.getvalue()  # rich hides the cursor while it draws …
    assert err.getvalue().endswith("\x1b[?25h") or "\x1b[?25h" in err.getvalue()  # … and shows it again
    assert not Output(err=Tty(), accessible=True).live and not Output(err=Tty(), verbosity=-1).live
    assert not Output(err=io.StringIO()).live


async def test_quiet_progress_says_nothing() -> None:
    output, _, err = _output(verbosity=-1)
    async with output.progress("booting", total=1) as progress:
        progress.advance("nats")
    assert err.getvalue() == ""


async def test_the_bar_takes_the_theme_and_honours_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    from clients.cli._style import Style

    async def drawn(**env: str) -> str:
        for name in ("NO_COLOR", "FORCE_COLOR", "CLICOLOR", "CLICOLOR_FORCE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        err = Tty()
        output = Output(out=io.StringIO(), err=err, style=Style("high-contrast", colour=True))
        async with output.progress("booting", total=2) as progress:
            progress.advance("nats")
        return err.getvalue()

    coloured = await drawn(TERM="xterm-256color", COLORTERM="truecolor")
    accent = Style("high-contrast", colour=True).palette["accent"].lstrip("#")
    rgb = ";".join(str(int(accent[i : i + 2], 16)) for i in (0, 2, 4))
    assert f"38;2;{rgb}m" in coloured, "the spinner and bar are drawn in the theme's accent"
    plain = await drawn(NO_COLOR="1", TERM="xterm-256color")
    assert "\x1b[?25l" in plain and not re.search(r"\x1b\[[0-9;]*m", plain), repr(plain)  # redraws, no colour


async def test_bulk_calls_run_bounded_keep_order_and_stop_at_a_failure() -> None:
    from clients.cli._tasks import BULK_CONCURRENCY, for_each

    in_flight, most, started = 0, 0, []
    release = asyncio.Event()

    async def call(item: int) -> int:
        nonlocal in_flight, most
        started.append(item)
        in_flight += 1
        most = max(most, in_flight)
        if len(started) == BULK_CONCURRENCY:
            release.set()
        await release.wait()
        in_flight -= 1
        return item * 10

    output, _, err = _output(timestamps="none")
    items = list(range(BULK_CONCURRENCY * 2))
    async with output.progress("calling", total=len(items)) as progress:
        results = await for_each(items, call, progress, lambda item, result: f"{item}={result}")
    assert results == [item * 10 for item in items] and most == BULK_CONCURRENCY
    assert err.getvalue().count("calling: ") == len(items) and f"({len(items)}/{len(items)})" in err.getvalue()

    never_finished, cancelled = asyncio.Event(), []

    async def failing(item: int) -> int:
        if item == 0:
            raise RuntimeError("refused")
        try:
            await never_finished.wait()  # the others wait until cancelled
        except asyncio.CancelledError:
            cancelled.append(item)
            raise
        return item

    async with output.progress("failing", total=4) as progress:
        with pytest.raises(RuntimeError, match="refused"):
            await for_each([0, 1, 2, 3], failing, progress, lambda item, result: "")
    assert sorted(cancelled) == [1, 2, 3]  # stopped, not left running behind the failure
