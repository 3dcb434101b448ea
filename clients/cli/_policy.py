"""``tidemesh config policy``: the policy engine's verdicts on a manifest or on the running mesh.

With ``-f FILE`` the file is evaluated (rules that read live figures are skipped: there is no
mesh). Without, the running mesh of ``--state-dir`` is: the manifest it was started from
(`mesh.manifest.exported`) and its live figures, read over NATS with the operators' credential
(``--no-live`` leaves them out; worker memory is read only by `tidemesh up` itself).

Exit codes: 0 no enforce-mode rule is violated (audit and warn ones are printed), 1 one is (what
`config apply` would refuse), 2 bad input (a manifest that does not load names its field), 4 no
mesh runs at ``--state-dir``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from clients.cli._exit import EXIT_FAILED, EXIT_OK
from clients.cli._output import Output
from mesh.errors import Unavailable
from mesh.manifest import Manifest, exported, read, resolve
from mesh.policy import LiveFigures, Verdicts, evaluate

EXAMPLES = """examples:
  tidemesh config policy -f tidemesh.yaml          # a manifest, before it is applied
  tidemesh config policy                           # the mesh running from ./state, with its live figures
  tidemesh config policy --rules -o json           # every rule, its mode here, and the verdicts
exit codes: 0 nothing blocks, 1 an enforce-mode rule is violated, 2 bad input, 4 no mesh runs there"""

_ROLE = {"enforce": "error", "warn": "warn", "audit": "muted"}


def add_policy_command(
    actions: argparse._SubParsersAction,  # type: ignore[type-arg]
    output_args: Callable[..., None],
    state_dir_default: str,
) -> None:
    p = actions.add_parser(
        "policy",
        help="the policy engine's verdicts: on a manifest (-f) or the running mesh",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-f", "--file", default=None, metavar="MANIFEST", help="a manifest (default: the running mesh's)")
    p.add_argument("--state-dir", default=state_dir_default, help="the running mesh's state dir (without -f)")
    p.add_argument("--no-live", action="store_true", help="leave out the running mesh's live figures")
    p.add_argument("--rules", action="store_true", help="also list every rule with the mode it runs in here")
    output_args(p)


async def policy_command(args: argparse.Namespace, out: Output) -> int:
    if args.file:
        manifest = resolve(read(args.file), args.file)
        verdicts = evaluate(manifest)
        source = args.file
    else:
        manifest, live, source = await _running(Path(args.state_dir), out, live=not args.no_live)
        verdicts = evaluate(manifest, live=live)
    if verdicts.skipped:
        out.note(f"note: not evaluated without a running mesh's live figures: {', '.join(verdicts.skipped)}")
    report = {"source": source, **verdicts.to_json()}
    if args.rules:
        report["rules"] = [{**rule.to_json(), "mode": mode} for rule, mode in verdicts.rules]
    out.data(report, table=lambda: _table(verdicts, source, out, args.rules))
    return EXIT_FAILED if verdicts.blocking else EXIT_OK


async def _running(state: Path, out: Output, *, live: bool) -> tuple[Manifest, Mapping[str, Any] | None, str]:
    from mesh.fabric import connect
    from mesh.supervisor import MeshSecurity, Plan

    plan_file = state / "plan.json"
    if not plan_file.exists():
        raise Unavailable(f"no mesh has run from {state} (no plan.json there); or name a manifest with -f")
    plan = Plan.from_json(json.loads(plan_file.read_text()))
    found = exported(plan)
    for note in found.notes:
        out.detail(f"note: {note}")
    if not live:
        return found.manifest, None, f"the mesh of {state}"
    try:
        if plan.secure:
            nc = await MeshSecurity(state).connect_nats(plan.nats_servers, "cli", "tidemesh-cli-policy")
        else:
            nc = await connect(plan.nats_servers, name="tidemesh-cli-policy")
    except Exception as exc:
        raise Unavailable(f"the mesh of {state} does not answer on NATS ({exc}); --no-live evaluates without") from exc
    try:
        figures = await LiveFigures(nc.jetstream()).read()
    finally:
        await nc.close()
    return found.manifest, figures, f"the mesh of {state}"


def _table(verdicts: Verdicts, source: str, out: Output, rules: bool) -> None:
    style = out.style
    if rules:
        width = max(len(rule.name) for rule, _ in verdicts.rules)
        out.line(f"rules in {verdicts.environment} (mode here · what each asks):")
        for rule, mode in verdicts.rules:
            origin = "" if rule.builtin else " (yours)"
            out.line(f"  {rule.name:<{width}}  {mode:<7}  {rule.summary or rule.expression}{origin}")
        out.line("")
    if not verdicts.violations:
        out.line(f"{source}: no policy is violated ({verdicts.environment}, {len(verdicts.rules)} rules)")
        return
    for v in verdicts.violations:
        word = v.mode.upper() if v.mode == "enforce" else v.mode
        state = style.state(word, _ROLE[v.mode], 10) if style is not None else f"{word:<10}"
        out.line(f"{state} {v.severity:<9} {v.rule}  {v.path or '(the manifest)'}")
        out.line(f"    {v.message}")
        if v.remediation:
            out.line(f"    fix: {v.remediation}")
        out.line(f"    runbook: {v.runbook}")
    counts = verdicts.to_json()["counts"]
    blocking = f"{counts['enforce']} blocking (enforce)" if counts["enforce"] else "none blocking"
    out.line(
        f"{source}: {len(verdicts.violations)} violation(s) in {verdicts.environment} — {blocking}, "
        f"{counts['warn']} warn, {counts['audit']} audit"
    )
