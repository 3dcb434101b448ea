"""Shell completion: the hooks for bash, zsh and fish, and completion of commands, flags and
choices from the parser (argcomplete's protocol, in process); a mesh that does not answer still
leaves the built-in kinds to complete, quickly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clients.cli._complete import SHELLS, kinds, shell_hook
from clients.cli._main import _parser

TIDEMESH = str(Path(sys.executable).parent / "tidemesh")


def complete(line: str, tmp: Path, env: dict[str, str] | None = None) -> list[str]:
    """What the shell would offer at the end of `line`: `tidemesh` run as the shell hook runs it."""
    out = tmp / "completions"
    protocol = {
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "COMP_TYPE": "9",
    }
    subprocess.run([TIDEMESH], env={**(env or os.environ), **protocol}, check=True, timeout=30)
    return [c.strip() for c in out.read_text().split("\n") if c.strip()]


@pytest.mark.parametrize("shell", SHELLS)
def test_each_shell_gets_a_hook_for_tidemesh(shell: str) -> None:
    hook = shell_hook(shell)
    assert "tidemesh" in hook and "_ARGCOMPLETE" in hook
    with pytest.raises(ValueError, match="shell must be"):
        shell_hook("tcsh")


def test_commands_flags_and_choices_complete(tmp_path: Path) -> None:
    assert {"submit", "status"} <= set(complete("tidemesh s", tmp_path))
    assert "--priority" in complete("tidemesh submit echo --pri", tmp_path)
    assert complete("tidemesh submit echo --priority int", tmp_path) == ["interactive"]
    assert set(complete("tidemesh status --theme ", tmp_path)) == {"auto", "light", "dark", "high-contrast"}
    assert complete("tidemesh completion f", tmp_path) == ["fish"]


def test_kinds_complete_without_a_mesh_quickly(tmp_path: Path) -> None:
    started = time.monotonic()
    offered = complete("tidemesh submit --endpoint 127.0.0.1:9 --insecure e", tmp_path)
    assert {"echo", "embed"} <= set(offered) and time.monotonic() - started < 10


def test_the_kind_completer_offers_builtin_kinds_when_the_mesh_is_away() -> None:
    parsed = _parser().parse_args(["submit", "x", "--endpoint", "127.0.0.1:9", "--insecure"])
    started = time.monotonic()
    assert {"echo", "embed", "doc_embed"} <= set(kinds("", parsed))
    assert kinds("emb", parsed) == ["embed"]
    assert time.monotonic() - started < 5
