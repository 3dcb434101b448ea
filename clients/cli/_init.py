"""`tidemesh init`: a few questions, then the advanced ones if wanted; the manifest, written and
printed, the equivalent non-interactive commands, and a plan — the processes it starts and a
capacity preview at the declared rate and latency target.

On a terminal it asks (Enter takes the default shown; Ctrl-C or Ctrl-D stops and writes nothing).
Without one it reads an answers file (`--answers FILE`, ``-`` for stdin): every question's key,
unknown keys refused naming the key, missing ones at their defaults (and said). `--print-answers`
writes the answers file that reproduces the session. The questions and what the answers make
are `_wizard`'s; this module asks, reads, writes and reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import yaml

from clients.cli._exit import EXIT_INVALID, EXIT_OK
from clients.cli._output import Output, _isatty, add_output_args
from clients.cli._wizard import (
    BY_KEY,
    QUESTIONS,
    AnswerError,
    Answers,
    Design,
    Question,
    accept,
    asked,
    design,
    value_of,
)
from mesh.errors import InvalidArgument
from mesh.fabric import POOLS
from mesh.manifest import Manifest, ManifestError, diff, document_of, dump, encode, matches, resolve

__all__ = ["add_init_command", "flags_for", "init_command"]

EXIT_ABORTED = 130
# The preview's simulated arrivals at most (its horizon shortened to fit): 200 lie past a p95, and
# the answer comes in well under a second.
PREVIEW_ARRIVALS = 4_000


def add_init_command(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "init",
        help="a few questions, then a manifest (tidemesh.yaml), the command that runs it, and its plan",
        description="Asks about the work (shape, rate, latency target, durability, GPU), then advanced settings "
        "if wanted; writes the manifest and ends with the processes it starts and a capacity preview. Without a "
        "terminal, --answers FILE gives the answers (each question's key; `--print-answers FILE` writes one).",
    )
    p.add_argument(
        "-o",
        "--output",
        dest="manifest_path",
        default="tidemesh.yaml",
        metavar="FILE",
        help="where the manifest goes (default tidemesh.yaml; an existing file only with --force)",
    )
    p.add_argument("--force", action="store_true", help="overwrite the manifest file if it exists")
    p.add_argument(
        "--answers", default=None, metavar="FILE|-", help="answer from this YAML file (- for stdin), asking nothing"
    )
    p.add_argument(
        "--print-answers",
        default=None,
        metavar="FILE|-",
        help="also write the answers that reproduce this session (- for stdout; the report then goes to stderr)",
    )
    add_output_args(p, formats=False)


# -- asking -------------------------------------------------------------------------------------


class Aborted(Exception):
    """Ctrl-C or end of input at a prompt."""


def _prompt_line(question: Question, default: str) -> str:
    if question.key == "advanced":
        return f"{question.key} [{'Y/n' if default == 'yes' else 'y/N'}]: "
    return f"{question.key} [{default}]: "


def ask(answers: Answers, say: Callable[..., None], readline: Callable[[], str]) -> None:
    """Every question that applies, on a terminal: `say` shows, `readline` reads a line (""
    at end of input). A refused answer is said, naming the key and field, and asked again."""
    say("tidemesh init: a few questions, then a manifest. Enter takes the default in [brackets]; Ctrl-C stops.")
    for question in QUESTIONS:
        if not asked(question, answers):
            continue
        if question.key == "priority_class":
            say("\nAdvanced settings (Enter keeps what the answers so far derive).")
        say(f"\n{question.asking(answers)}")
        if question.note:
            say(f"  ({question.note})")
        for index, (name, meaning) in enumerate(question.choices.items(), start=1):
            say(f"  {index}) {name:<12} {meaning}")
        while True:
            default = question.show(value_of(question.key, answers))
            say(_prompt_line(question, default), end="")
            line = readline()
            if line == "":
                raise Aborted("end of input")
            text = line.strip()
            try:
                value = question.read(text) if text else value_of(question.key, answers)
                accept(question, value, answers)
            except AnswerError as exc:
                say(f"  not accepted: {exc}")
                continue
            if text:
                answers[question.key] = value
            break


def read_answers(source: str, stdin: TextIO) -> tuple[Answers, list[str]]:
    """The answers in `source` (a YAML file, - for `stdin`) and what was said about them (the keys
    left at their defaults); InvalidArgument naming the key of the first bad one."""
    where = "stdin" if source == "-" else source
    try:
        text = stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise InvalidArgument("--answers", f"cannot read {source}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument("--answers", f"{where}: not YAML: {' '.join(str(exc).split())}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InvalidArgument("--answers", f"{where}: expected a mapping of answers (key: value) at the top")
    problems = []
    for key in data:
        if key not in BY_KEY:
            close = difflib.get_close_matches(str(key), list(BY_KEY), n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; the keys are {', '.join(BY_KEY)}"
            problems.append(f"{key}: unknown answer{hint}")
    if problems:
        raise InvalidArgument(str(next(iter(k for k in data if k not in BY_KEY))), f"{where}: {'; '.join(problems)}")
    given = set(data)
    if "advanced" not in data and any(BY_KEY[key].advanced for key in data):
        data["advanced"] = True  # advanced answers given: their questions are asked
    answers: Answers = {}
    defaulted = []
    for question in QUESTIONS:
        key = question.key
        if not asked(question, answers):
            if key in data:
                why = (
                    "advanced is no" if question.advanced and not value_of("advanced", answers) else "it does not apply"
                )
                raise InvalidArgument(key, f"{where}: {key} is given but not asked ({why})")
            continue
        try:
            if key in data:
                raw = data[key]
                value = question.read(raw if isinstance(raw, str) else question.show(raw))
            else:
                value = value_of(key, answers)
            accept(question, value, answers)
        except AnswerError as exc:
            raise InvalidArgument(exc.key, f"{where}: {exc}") from None
        if key in data:
            answers[key] = value
        if key not in given:
            defaulted.append(f"{key}={question.show(value)}")
    notes = (
        [f"{where}: {len(defaulted)} answers not given take their defaults: {', '.join(defaulted)}"]
        if defaulted
        else []
    )
    return answers, notes


def answers_document(answers: Answers) -> dict[str, Any]:
    """Every answer of the session, defaults included, as an answers file holds them."""
    out: dict[str, Any] = {}
    for question in QUESTIONS:
        if asked(question, answers):
            value = value_of(question.key, answers)
            out[question.key] = list(value) if isinstance(value, tuple) else value
    return out


# -- what it says -------------------------------------------------------------------------------


def _word(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _flag_words(option: str, manifest: Manifest, changes: dict[str, Any]) -> list[str]:
    """The words that give `changes` (leaf path → value, every one this flag's) to `option`."""
    if option in ("--triton", "--demo", "--insecure"):
        return [option] if any(changes.values()) else []
    if option == "--no-auth":
        return [option] if False in changes.values() else []
    if option == "--join":
        return [option, ",".join(manifest.durability.cluster.hosts)]
    if option == "--model-repository":
        return [word for repo in manifest.inference.triton.model_repositories for word in (option, repo)]
    if option == "--autoscale":
        bounds = {name: pool.autoscale for name, pool in manifest.pools.by_name().items() if pool.autoscale}
        return [option, ",".join(f"{name}={b.min}:{b.max}" for name, b in bounds.items())]
    if option in ("--pool-workers", "--pool-concurrency", "--tenant-weights", "--tenant-concurrency"):
        return [option, ",".join(f"{path.split('.')[-2]}={_word(value)}" for path, value in changes.items())]
    [value] = changes.values()
    return [option, _word(value)]


def flags_for(manifest: Manifest) -> tuple[list[str] | None, list[str]]:
    """``tidemesh up`` with flags alone that runs `manifest` (checked by parsing it back), or None
    and the fields that differ from the defaults where no flag sets some."""
    from clients.cli._config import FLAGS, resolve_args
    from clients.cli._main import _parser

    leaves = {c.path: c.after for c in diff(encode(Manifest()), encode(manifest))}
    grouped: dict[str, dict[str, Any]] = {}
    unflagged: list[str] = []
    for path, value in leaves.items():
        dest = next((d for d, f in FLAGS.items() if any(matches(p, path) for p in f.paths)), None)
        if dest is None:
            unflagged.append(path)
        else:
            grouped.setdefault(dest, {})[path] = value
    if unflagged:
        return None, unflagged
    argv = ["up"]
    for dest, changes in grouped.items():
        argv += _flag_words(FLAGS[dest].option, manifest, changes)
    try:
        parsed = _parser().parse_args(argv)
        back = resolve_args(parsed).manifest
    except (SystemExit, ManifestError, InvalidArgument):
        return None, sorted(leaves)
    same = encode(dataclasses.replace(back, state_dir=manifest.state_dir)) == encode(manifest)
    return (argv, []) if same else (None, sorted(leaves))


def _seconds(value: float) -> str:
    if math.isinf(value):
        return "∞"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _plan_lines(manifest: Manifest, file: str) -> list[str]:
    """The process table (`tidemesh plan -f FILE`), built in a throwaway state dir so that
    nothing is written where the mesh will keep its state."""
    from clients.cli._config import plan_for

    with tempfile.TemporaryDirectory(prefix="tidemesh-init-") as scratch:
        plan = plan_for(dataclasses.replace(manifest, state_dir=scratch))
    lines = [f"plan: the processes `tidemesh up -f {file}` starts (`tidemesh plan -f {file}` shows their commands)"]
    for spec in plan.processes:
        what = spec.command[2] if spec.command[1:2] == ["-m"] else Path(spec.command[0]).name
        if what == "services.worker":
            concurrency = spec.command[len(spec.command) - 1 - spec.command[::-1].index("--concurrency") + 1]
            pools = "every pool" if not spec.pools or set(spec.pools) == set(POOLS) else ", ".join(spec.pools)
            what += f" ({pools}; {concurrency} at once)"
        if spec.memory_cap_mb:
            what += f" ≤ {spec.memory_cap_mb} MiB"
        lines.append(f"  {spec.name:<22} {spec.address:<26} {what}")
    return lines


def _preview_lines(manifest: Manifest, made: Design) -> list[str]:
    from mesh.capacity import Load, preview

    load = Load(made.pool, made.priority_class, made.rate, made.service_samples)
    horizon = min(600.0, PREVIEW_ARRIVALS / made.rate)
    lines = [
        f"capacity preview: {made.rate:g} tasks/s of {made.priority_class} work in the {made.pool} pool, steps of "
        f"{_seconds(made.service_s)} (p95 {_seconds(made.service_p95_s)}), target p95 {_seconds(made.latency_target_s)}"
    ]
    for pool in preview(manifest, [load], horizon_s=horizon):
        state = "stable" if pool.stable else "UNSTABLE: the queue grows without end"
        lines.append(
            f"  {pool.pool}: {pool.slots} slots over {pool.workers:g} workers, {pool.utilization:.0%} busy, {state}"
        )
        lines.append(f"    ({pool.model})")
        for klass in pool.classes:
            if klass.priority_class != made.priority_class:
                continue
            latency = klass.wait_p95_s + made.service_p95_s
            verdict = "met" if pool.stable and latency <= made.latency_target_s else "MISSED"
            lines.append(
                f"    {klass.priority_class}: queue wait p50 {_seconds(klass.wait_p50_s)}, p95 "
                f"{_seconds(klass.wait_p95_s)} ({klass.served} served); wait p95 + a step's p95 = "
                f"{_seconds(latency)} against {_seconds(made.latency_target_s)}: target {verdict}"
            )
    lines += [f"  note: {note}" for note in made.notes]
    return lines


def report(manifest: Manifest, made: Design, file: str, answers_file: str | None) -> list[str]:
    """What `init` prints after the answers: why each derived field, the manifest, the commands,
    the plan and the preview, and what to do next."""
    lines = ["", "derived from your answers:"]
    for item in made.derived:
        why = f"  — {item.why}" if item.why else ""
        lines.append(f"  {item.path} = {dump({'v': item.value}).removeprefix('v:').strip()}{why}")
    lines += [
        "",
        f"# {file}",
        dump(document_of(manifest)).rstrip("\n"),
        f"# (wrote {file})",
        "",
        "equivalent commands:",
    ]
    lines.append(f"  tidemesh up -f {file}")
    argv, unflagged = flags_for(manifest)
    if argv is not None:
        lines.append(f"  tidemesh {' '.join(argv)}")
    else:
        shown = ", ".join(unflagged[:4]) + (f" and {len(unflagged) - 4} more" if len(unflagged) > 4 else "")
        lines.append(f"  (no flags-only form: no flag of `up` sets {shown} — the manifest holds them)")
    again = answers_file if answers_file and answers_file != "-" else "ANSWERS"
    hint = "" if answers_file and answers_file != "-" else "   # --print-answers ANSWERS writes the file"
    lines.append(f"  tidemesh init --answers {again} -o {file} --force{hint}")
    lines += ["", *_plan_lines(manifest, file), "", *_preview_lines(manifest, made), ""]
    lines.append(f"next: tidemesh config plan -f {file}")
    return lines


# -- the command --------------------------------------------------------------------------------


def init_command(args: argparse.Namespace, out: Output) -> int:
    target = Path(args.manifest_path)
    if target.exists() and not args.force:
        raise InvalidArgument("--output", f"{target} exists: pass --force to overwrite it, or -o another file")
    answers: Answers = {}
    if args.answers is not None:
        answers, notes = read_answers(args.answers, out.stdin)
        for note in notes:
            out.note(note)
    elif _isatty(out.stdin):

        def say(text: str, end: str = "\n") -> None:
            print(text, end=end, file=out.err, flush=True)

        try:
            ask(answers, say, out.stdin.readline)
        except (Aborted, KeyboardInterrupt) as exc:
            say(f"\naborted{' (end of input)' if isinstance(exc, Aborted) else ''}: nothing written")
            return EXIT_ABORTED if isinstance(exc, KeyboardInterrupt) else EXIT_INVALID
    else:
        raise InvalidArgument(
            "--answers", "no terminal to ask on: pass --answers FILE (- for stdin); `--print-answers FILE` writes one"
        )
    made = design(answers)
    manifest = resolve(made.document, "the answers")
    document = document_of(manifest)
    resolve(document, str(target))  # what is written loads back as the same manifest
    lines = report(manifest, made, str(target), args.print_answers)
    try:
        with target.open("w" if args.force else "x") as f:
            f.write(dump(document))
    except FileExistsError:
        raise InvalidArgument("--output", f"{target} appeared meanwhile: pass --force to overwrite it") from None
    except OSError as exc:
        raise InvalidArgument("--output", f"cannot write {target}: {exc.strerror}") from None
    speak = out.err if args.print_answers == "-" else out.out
    for line in lines:
        print(line, file=speak, flush=True)
    if args.print_answers:
        text = "# tidemesh init --answers FILE asks nothing and gives this manifest again\n" + dump(
            answers_document(answers)
        )
        if args.print_answers == "-":
            print(text, end="", file=out.out, flush=True)
        else:
            Path(args.print_answers).write_text(text)
            out.note(f"wrote the answers to {args.print_answers}")
    return EXIT_OK
