"""The manifest a running mesh was started from, kept beside its plan, and read back for export.

`tidemesh up` writes ``<stateDir>/manifest.json``: the document it resolved (flags included) and a
digest of the process table it built, so a record left by an earlier mesh in the same state dir is
never taken for the current one. `exported` starts from that record (it holds what no process
shows: the preset, declared-only fields, an asked-for port 0) and lays over it every field the
process table shows (`observe`): what the mesh runs wins, and each disagreement is said.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.manifest._compile import observe
from mesh.manifest._fields import diff, encode, merge
from mesh.manifest._load import ManifestError, document_of, resolve
from mesh.manifest._model import API_VERSION, KIND, Manifest

RECORD_NAME = "manifest.json"


def plan_digest(plan_json: dict[str, Any]) -> str:
    """A digest of a plan's process table (`Plan.to_json()` or plan.json, parsed)."""
    canonical = json.dumps(plan_json.get("processes", []), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def record(plan: Any, manifest: Manifest) -> Path:
    """Keep `manifest` beside `plan` (a `mesh.supervisor.Plan`) in its state dir."""
    path = Path(plan.state_dir) / RECORD_NAME
    body = {"planDigest": plan_digest(plan.to_json()), "manifest": document_of(manifest)}
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    return path


@dataclass(frozen=True)
class Export:
    manifest: Manifest
    notes: tuple[str, ...]  # what the reader should know: disagreements, settings no field holds


def exported(plan: Any) -> Export:
    """The manifest of the mesh running `plan` (see the module's doc)."""
    observed = observe(plan)
    notes = [f"the running mesh has a setting no manifest field holds: {flag}" for flag in observed.unheld]
    recorded = _recorded(plan)
    if recorded is None:
        notes.append(
            "no manifest was recorded for this mesh (it was not started by `tidemesh up`): every field is read "
            "from its process table; the ones no process shows are at their defaults"
        )
        document = {"apiVersion": API_VERSION, "kind": KIND, **observed.document}
        return Export(resolve(document, "the running mesh"), tuple(notes))
    base = encode(recorded)
    shown = dict(observed.document)
    if recorded.endpoints.public.port == 0:  # free ports were asked for: keep asking
        shown = merge(shown, {"endpoints": {"public": {"port": 0}}})
    running = merge(base, shown)
    for change in diff(base, running):
        notes.append(f"{change.path}: the recorded manifest says {change.before!r}, the mesh runs {change.after!r}")
    return Export(resolve(running, "the running mesh"), tuple(notes))


def _recorded(plan: Any) -> Manifest | None:
    path = Path(plan.state_dir) / RECORD_NAME
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("planDigest") != plan_digest(plan.to_json()):
        return None  # left by another mesh in this state dir
    try:
        return resolve(body.get("manifest") or {}, str(path))
    except ManifestError:
        return None
