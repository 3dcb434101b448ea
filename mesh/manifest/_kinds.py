"""The manifest's own kinds as `KindService.RegisterKind` takes them (`tidemesh config apply` and
`tidemesh up -f` register them; a kind is never unregistered, a changed one is refused)."""

from __future__ import annotations

from mesh.manifest._model import Manifest
from mesh.v1 import kind_pb2


def kind_declarations(manifest: Manifest) -> list[kind_pb2.KindDeclaration]:
    """One declaration per kind of `manifest`, in the manifest's order."""
    found = []
    for name, spec in manifest.kinds.items():
        declaration = kind_pb2.KindDeclaration(
            name=name,
            input_type=spec.input_type,
            output_type=spec.output_type,
            max_attempts=spec.max_attempts,
            required_labels=dict(spec.labels),
        )
        declaration.step_timeout.FromNanoseconds(int(spec.step_timeout_seconds * 1e9))
        for step in spec.steps:
            added = declaration.steps.add(name=step.name, max_attempts=step.max_attempts or 0)
            if step.timeout_seconds is not None:
                added.timeout.FromNanoseconds(int(step.timeout_seconds * 1e9))
        found.append(declaration)
    return found
