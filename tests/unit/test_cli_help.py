"""Every command's help ends with examples, and every example is a command line the CLI accepts."""

from __future__ import annotations

import shlex

import pytest

from clients.cli._help import EXAMPLES, commands
from clients.cli._main import _parser

PARSER = _parser()
COMMANDS = dict(commands(PARSER))


def _command_line(example: str) -> list[str] | None:
    """The tidemesh invocation an example shows (its comment and any pipe left off)."""
    line = example.split("  #", 1)[0]
    for joint in (" | ", " && ", " > "):
        line = line.split(joint, 1)[0]
    words = shlex.split(line)
    return words[1:] if words and words[0] == "tidemesh" else None


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_the_help_of_every_command_has_examples(path: str) -> None:
    assert EXAMPLES.get(path), f"`tidemesh {path} --help` has no examples: add them to clients/cli/_help.py"
    assert "examples:\n  " in COMMANDS[path].format_help()


@pytest.mark.parametrize(
    ("path", "example"), [(path, example) for path in sorted(COMMANDS) for example in EXAMPLES.get(path, ())]
)
def test_every_example_parses(path: str, example: str) -> None:
    argv = _command_line(example)
    if argv is None:  # a shell line around the command (eval "$(tidemesh completion bash)")
        inner = example.split("$(", 1)[1].split(")", 1)[0]
        argv = shlex.split(inner)[1:]
    assert " ".join(argv).startswith(path.split(" ", 1)[0]), example
    PARSER.parse_args(argv)  # SystemExit (argparse's error) fails the test


def test_no_example_is_for_a_command_that_does_not_exist() -> None:
    assert set(EXAMPLES) <= set(COMMANDS)
