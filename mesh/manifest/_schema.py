"""The manifest's JSON Schema, generated from the model; `docs/manifest.schema.json` is its
published copy (``python -m mesh.manifest check`` fails when the two differ)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mesh.manifest._fields import json_schema
from mesh.manifest._model import Manifest

SCHEMA_ID = "https://tidemesh.dev/schemas/manifest/v1alpha1.json"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "manifest.schema.json"


def schema() -> dict[str, Any]:
    return json_schema(Manifest, schema_id=SCHEMA_ID, title="tidemesh manifest (tidemesh.yaml), v1alpha1")


def schema_text() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"
