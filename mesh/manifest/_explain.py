"""What a field means and what each preset makes of it; how two presets differ."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from mesh.manifest._fields import FieldPath, Issue, diff, encode, expected_type, find_field, walk
from mesh.manifest._load import ManifestError, resolve
from mesh.manifest._model import API_VERSION, KIND, Manifest
from mesh.manifest._presets import PRESETS

BASE = "base"  # no preset: what a bare `tidemesh up` runs


def resolved(preset: str) -> Manifest:
    """A preset's manifest (`BASE`: none)."""
    if preset != BASE and preset not in PRESETS:
        known = ", ".join([BASE, *PRESETS])
        raise ManifestError("", [Issue("preset", f"no preset {preset!r}; the presets are {known}")])
    document: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND}
    if preset != BASE:
        document["preset"] = preset
    return resolve(document, f"preset {preset}")


def _value_at(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


@dataclass(frozen=True)
class PresetValue:
    preset: str
    value: Any
    why: str  # "" where the preset leaves the default


@dataclass(frozen=True)
class Explanation:
    field: FieldPath
    type: str
    presets: tuple[PresetValue, ...]

    def to_json(self) -> dict[str, Any]:
        meta = self.field.meta
        return {
            "field": self.field.path,
            "description": meta.description(),
            "type": self.type,
            "default": self.field.default,
            "enforced": meta.enforced,
            "presets": {p.preset: {"value": p.value, "why": p.why} for p in self.presets},
            "tradeoff": meta.tradeoff,
        }


def explain(path: str) -> Explanation:
    """`path`'s meaning, default, each preset's value and why; ManifestError for no such field
    (with the nearest names)."""
    found = find_field(Manifest, path)
    if found is None:
        paths = [f.path for f in walk(Manifest)]
        close = difflib.get_close_matches(path, paths, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; `tidemesh config schema` lists every field"
        raise ManifestError("", [Issue(path, f"no such manifest field{hint}")])
    values = []
    for name, preset in PRESETS.items():
        choice = preset.choice(found.path)
        if choice is not None:
            value = choice.value
        elif "*" in found.path:  # a field of a named entry (a tenant, a kind): no preset names one
            value = found.default
        else:
            value = _value_at(encode(resolved(name)), found.path)
        values.append(PresetValue(name, value, choice.why if choice else ""))
    return Explanation(found, expected_type(found.type), tuple(values))


@dataclass(frozen=True)
class PresetDifference:
    path: str
    left: Any
    right: Any
    left_why: str
    right_why: str


def diff_presets(left: str, right: str) -> list[PresetDifference]:
    """Every field on which two presets (or `BASE`) resolve differently, with each one's reason."""
    out = []
    for change in diff(encode(resolved(left)), encode(resolved(right))):
        if change.path == "preset":
            continue
        reasons = []
        for name in (left, right):
            choice = PRESETS[name].choice(change.path) if name in PRESETS else None
            reasons.append(choice.why if choice else "")
        out.append(PresetDifference(change.path, change.before, change.after, *reasons))
    return out
