"""The dashboard's `:` command palette: lines read by the CLI's own parser, the palette's verbs,
Tab completion, clear errors for bad lines, and what each command does on the screen."""

from __future__ import annotations

import pytest

from clients.cli._main import _parser
from tests.unit.test_tui_render import SIZE, Recorder, model, text
from tui import Screen
from tui._commands import Command, CommandError, complete, parse

CLI = _parser()


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("submit echo --text hi", Command("submit", (), "echo", {"text": "hi"})),
        (
            'submit embed --payload \'{"text": "a b"}\' --priority batch',
            Command("submit", (), "embed", {"text": "a b"}, "batch"),
        ),
        (
            'submit echo --payload \'{"text": "x", "n": 2}\' --text y',
            Command("submit", (), "echo", {"text": "y", "n": 2}),
        ),
        ("cancel t-1 t-2", Command("cancel", ("t-1", "t-2"))),
        ("watch t-1", Command("watch", ("t-1",))),
        ("get t-1", Command("get", ("t-1",))),
        ("replay t-1", Command("replay", ("t-1",))),
        ("dlq replay t-1", Command("replay", ("t-1",))),
        ("dlq show t-1", Command("show", ("t-1",))),
        ("dlq purge t-1", Command("purge", ("t-1",))),
        ("filter echo  running", Command("filter", ("echo  running",))),
        ("theme high-contrast", Command("theme", ("high-contrast",))),
        ("help", Command("help")),
        ("quit", Command("quit")),
    ],
)
def test_lines_read_as_the_cli_reads_them(line: str, command: Command) -> None:
    """The CLI's verbs and flags, parsed by the CLI's parser; the palette's own verbs beside them."""
    assert parse(line, CLI) == command


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("", "type a command"),
        ("frob", "unknown command 'frob'"),
        ("submit", "submit: the following arguments are required: kind"),
        ("submit echo --bogus", "submit: unrecognized arguments: --bogus"),
        ("submit echo --priority urgent", "submit: argument --priority: invalid choice: 'urgent'"),
        ("submit echo --payload '[1]'", "--payload must be a JSON object"),
        ("submit echo --payload '{'", "--payload is not JSON"),
        ("submit echo --text 'unclosed", "No closing quotation"),
        ("submit -h", "usage: tidemesh submit"),
        ("watch", "watch: the following arguments are required: task_id"),
        ("cancel", "cancel takes task ids here"),
        ("dlq purge --tenant acme", "the palette replays, shows or purges one dead letter"),
        ("theme pink", "theme takes one of dark, light, high-contrast"),
        ("quit now", "quit takes nothing after it"),
    ],
)
def test_a_bad_line_says_what_is_wrong(line: str, said: str) -> None:
    """Every refusal is a CommandError with the parser's own complaint; nothing exits or prints."""
    with pytest.raises(CommandError) as refused:
        parse(line, CLI)
    assert said in str(refused.value)


def test_tab_completes_verbs_and_theme_names() -> None:
    """A unique prefix completes (with a space after a verb); an ambiguous one lists the candidates."""
    assert complete("su") == ("submit ", ("submit",))
    assert complete("") == (
        "",
        ("cancel", "dlq", "filter", "get", "help", "quit", "replay", "submit", "theme", "watch"),
    )
    assert complete("theme hi") == ("theme high-contrast", ("high-contrast",))
    assert complete("zz") == ("zz", ())


def typed(screen: Screen, line: str, end: str = "enter") -> None:
    screen.keypress(SIZE, ":")
    for char in line:
        screen.keypress(SIZE, char)
    screen.keypress(SIZE, end)
    screen.update()


def test_the_palette_runs_commands_on_the_screen() -> None:
    """`:` opens a prompt at the bottom; Tab completes; each verb reaches the mesh or a view."""
    actions = Recorder()
    screen = Screen(model(), actions, cli=CLI)
    screen.keypress(SIZE, ":")
    for char in "su":
        screen.keypress(SIZE, char)
    screen.keypress(SIZE, "tab")
    assert text(screen).splitlines()[-1].startswith(":submit ")
    for char in "echo --text hi":
        screen.keypress(SIZE, char)
    screen.keypress(SIZE, "enter")
    assert ("submit", "echo", {"text": "hi"}, "standard") in actions.calls
    assert text(screen).splitlines()[-1].startswith("submitting echo")

    typed(screen, "cancel t-beta")
    assert ("cancel", ("t-beta",)) in actions.calls
    typed(screen, "theme light")
    assert ("set_theme", "light") in actions.calls
    typed(screen, "filter echo")
    assert "Tasks · filter: 'echo' (1 of 2)" in text(screen) and "> Tasks" in text(screen)
    typed(screen, "watch t-alpha")
    assert ("watch_task", "t-alpha") in actions.calls and "Stream t-alpha" in text(screen)
    typed(screen, "get t-alpha")
    assert "Task t-alpha" in text(screen)
    typed(screen, "replay t-dead")
    assert "Replay dead-lettered task t-dead?" in text(screen) and "> [ Cancel ]" in text(screen)
    screen.keypress(SIZE, "esc")
    typed(screen, "help")
    assert "Commands after :" in text(screen) and "submit KIND --text T" in text(screen)
    screen.keypress(SIZE, "esc")
    typed(screen, "quit")
    assert ("quit",) in actions.calls


def test_a_bad_command_is_an_error_line_not_a_crash() -> None:
    """The refusal on the message line (and, in the linear mode, announced); Esc abandons a line."""
    actions = Recorder()
    screen = Screen(model(), actions, cli=CLI, linear=True)
    typed(screen, "submit echo --bogus")
    assert "error: submit: unrecognized arguments: --bogus" in text(screen).splitlines()[-1]
    assert any("refused: submit: unrecognized arguments" in line for line in screen.changes)
    typed(screen, "quit", end="esc")
    assert ("quit",) not in actions.calls and not screen.prompting
    assert not [call for call in actions.calls if call[0] in ("submit", "cancel")]
