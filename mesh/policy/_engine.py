"""The expression language: CEL, compiled once per text, run over plain data.

Why CEL, and this implementation of it (``common-expression-language``, Rust's cel crate behind
PyO3), measured on this machine over a prod manifest (bench in docs/policies.md):

- **CEL over Cedar** (``cedarpy``): Cedar decides *may principal P do action A on resource R*; a
  manifest is a document to check, not a request to authorize. Its values have no floating point
  (a context holding ``weight: 1.5`` is refused outright) and it cannot iterate a record's keys,
  so "every named tenant has a quota" is not expressible over ``tenants.named``.
- **common-expression-language 0.10.0 over cel-python 0.5.0** (the pure-Python one): compiling
  took 0.2-1.1 ms against 0.4-6.8 ms; an evaluation over a shared context 4 µs; its syntax errors
  name line and column (``1:38: Syntax error: mismatched input '<EOF>'``) where cel-python shows
  a caret only; and ``x == null`` on a number works, where cel-python has no overload for it —
  the manifest is full of nullable fields, so every rule over one would need a ``has()`` dance.
  What it costs: a compiled wheel per platform (manylinux, macOS, Windows are published) and
  ``typer`` beside the rich/pygments/prompt-toolkit the project already has.

`compiled` caches programs by their text, so a rule compiles once per process however often it
is evaluated. A program sees only the variables it names (``Program.variables``); converting
the encoded manifest for CEL is the largest cost of an evaluation, so it is converted once per
`Inputs` (`Scope`) and only for the rules that read it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import cel

# What a rule may read: the manifest (encoded, as written), live figures of the running mesh,
# each kind's step pools, and with `each` the entry and its key.
INPUTS = ("manifest", "live", "routes")
PER_ITEM = ("item", "key")
VARIABLES = (*INPUTS, *PER_ITEM)


_POSITION = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    found = _POSITION.search(text)
    if found:
        line, column, what = found.groups()
        what = what.split(" expecting ", 1)[0]  # the token list is long and says little
        return f"line {line}, column {column}: {what}"
    return " ".join(text.split())[:300]


def _cel() -> Any:
    """The CEL module, imported when a rule is first compiled or run: its package imports its own
    command line (typer, rich, prompt_toolkit), ~0.25 s of start-up that every process importing
    mesh.policy (the scheduler, the gateway, the CLI) paid before it read any rule."""
    import cel

    return cel


@lru_cache(maxsize=2048)
def compiled(text: str) -> cel.Program:
    """The program of `text`; ValueError with the parser's first complaint when it is not CEL."""
    if not text.strip():
        raise ValueError("is empty")
    try:
        program: cel.Program = _cel().compile(text)
        return program
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ValueError(f"is not CEL: {_first_line(exc)}") from None


def problem(text: str, *, each: bool) -> str:
    """What is wrong with `text` as a rule's expression (empty: nothing); `each`: the rule
    iterates, so `item` and `key` exist."""
    try:
        program = compiled(text)
    except ValueError as exc:
        return str(exc)
    named = set(program.variables())
    if not each and named & set(PER_ITEM):
        return f"reads {', '.join(sorted(named & set(PER_ITEM)))}, which only a rule with `each` has"
    return ""


def reads(text: str) -> frozenset[str]:
    """The inputs (`VARIABLES`) the program of `text` names."""
    return frozenset(compiled(text).variables()) & frozenset(VARIABLES)


def explain_error(exc: BaseException) -> str:
    """An evaluation error as one line."""
    if isinstance(exc, KeyError):
        return f"no such key or field {exc.args[0]!r}" if exc.args else "no such key"
    return _first_line(exc)


class Scope:
    """The inputs of one evaluation, converted for CEL at most once each (the shared context),
    and the per-item contexts of rules that iterate."""

    def __init__(self, inputs: Mapping[str, Any]) -> None:
        self._inputs = dict(inputs)
        self._shared: cel.Context = _cel().Context(variables=self._inputs)
        self._contexts: dict[frozenset[str], cel.Context] = {}

    def run(self, text: str, item: Any = None, key: Any = None, *, each: bool = False) -> Any:
        """The value of `text` (raises what CEL raises: KeyError, TypeError, RuntimeError, …)."""
        program = compiled(text)
        if not each:
            return program.execute(self._shared)
        context = self._context(reads(text) & frozenset(INPUTS))
        context.add_variable("item", item)
        context.add_variable("key", key)
        return program.execute(context)

    def _context(self, names: frozenset[str]) -> cel.Context:
        # One context per set of inputs a rule reads: adding its item and key to it costs far less
        # than converting the manifest again for every entry.
        if names not in self._contexts:
            self._contexts[names] = _cel().Context(variables={name: self._inputs[name] for name in names})
        return self._contexts[names]
