"""The manifest (``tidemesh.yaml``): one typed, validated description of a mesh's desired state,
presets that overlay it, and its published JSON Schema.

    document (YAML/JSON) ──parse──► data ──resolve (defaults ← preset ← document ← flags)──► Manifest
    Manifest ──plan_arguments──► build_plan(...)      a running Plan ──observe──► the fields it shows
    Manifest ──document_of──► the shortest document that resolves to it (what `config export` writes)
"""

from mesh.manifest._compile import Observed, autoscale_bounds, observe, plan_arguments
from mesh.manifest._explain import BASE, Explanation, PresetDifference, diff_presets, explain, resolved
from mesh.manifest._fields import (
    Change,
    FieldPath,
    Issue,
    SecretRef,
    diff,
    encode,
    find_field,
    matches,
    merge,
    split_path,
    walk,
)
from mesh.manifest._kinds import kind_declarations
from mesh.manifest._load import ManifestError, base_of, document_of, dump, parse, read, resolve
from mesh.manifest._model import API_VERSION, KIND, Manifest, declared_only
from mesh.manifest._presets import PRESETS, Choice, Preset
from mesh.manifest._record import RECORD_NAME, Export, exported, record
from mesh.manifest._schema import SCHEMA_PATH, schema, schema_text

__all__ = [
    "API_VERSION",
    "BASE",
    "KIND",
    "PRESETS",
    "RECORD_NAME",
    "SCHEMA_PATH",
    "Change",
    "Choice",
    "Explanation",
    "Export",
    "FieldPath",
    "Issue",
    "Manifest",
    "ManifestError",
    "Observed",
    "Preset",
    "PresetDifference",
    "SecretRef",
    "autoscale_bounds",
    "base_of",
    "declared_only",
    "diff",
    "diff_presets",
    "document_of",
    "dump",
    "encode",
    "explain",
    "exported",
    "find_field",
    "kind_declarations",
    "matches",
    "merge",
    "observe",
    "parse",
    "plan_arguments",
    "read",
    "record",
    "resolve",
    "resolved",
    "schema",
    "schema_text",
    "split_path",
    "walk",
]
