"""Reading a manifest: YAML or JSON text → a resolved `Manifest`, every problem named by its path.

Resolution layers, each over the one before: the defaults (a bare ``tidemesh up``), `before`
(e.g. the environment's), the preset the document names, the document, `after` (e.g. the flags
given on the command line). Mappings merge key by key; a list or a scalar replaces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mesh.errors import InvalidArgument
from mesh.manifest._fields import Issue, decode, encode, fields_of, merge, prune
from mesh.manifest._model import Manifest
from mesh.manifest._presets import PRESETS


class ManifestError(InvalidArgument):
    """A manifest that cannot be used: each issue names its path (`issues`); `field` is the first's."""

    def __init__(self, source: str, issues: Sequence[Issue]) -> None:
        self.source = source
        self.issues = list(issues)
        first = self.issues[0] if self.issues else Issue("", "invalid")
        super().__init__(first.path, first.message)
        where = f"{source}: " if source else ""
        if len(self.issues) == 1:
            self.message = f"{where}{first}"
        else:
            listed = "\n".join(f"  {issue}" for issue in self.issues)
            self.message = f"{where}{len(self.issues)} problems\n{listed}"
        self.args = (self.message,)


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type information
    """YAML (and so JSON) where a key given twice is an error, not a silent override."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice (line {line})")
        seen[key] = loader.construct_object(value_node, deep=deep)
    return seen


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse(text: str, source: str = "tidemesh.yaml") -> dict[str, Any]:
    """The document in `text` (YAML, or JSON, which is YAML too) as plain data."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ManifestError(source, [Issue("", f"not YAML or JSON: {' '.join(str(exc).split())}")]) from exc
    if not isinstance(data, dict):
        raise ManifestError(source, [Issue("", "expected a mapping (apiVersion, kind, …) at the top")])
    return data


def read(path: Path | str) -> dict[str, Any]:
    """The document in the file at `path`."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ManifestError(str(path), [Issue("", f"cannot read it: {exc.strerror}")]) from exc
    return parse(text, str(path))


def resolve(
    document: Mapping[str, Any],
    source: str = "tidemesh.yaml",
    *,
    before: Sequence[Mapping[str, Any]] = (),
    after: Sequence[Mapping[str, Any]] = (),
) -> Manifest:
    """The manifest `document` describes, over its preset and the defaults (see the module's doc)."""
    issues = [Issue(f.key, "is required") for f in fields_of(Manifest) if f.meta.required and f.key not in document]
    preset = document.get("preset")
    if preset is not None and preset not in PRESETS:
        issues.append(Issue("preset", f"expected one of {', '.join(map(repr, PRESETS))} or null, got {preset!r}"))
    if issues:
        raise ManifestError(source, issues)
    data: Any = encode(Manifest())
    for layer in before:
        data = merge(data, layer)
    if preset is not None:
        data = merge(data, PRESETS[preset].overlay())
    data = merge(data, document)
    for layer in after:
        data = merge(data, layer)
    manifest, problems = decode(Manifest, data)
    if manifest is None:
        raise ManifestError(source, problems)
    return manifest


def base_of(manifest: Manifest) -> dict[str, Any]:
    """What `manifest` overlays: its preset over the defaults, encoded."""
    data: dict[str, Any] = encode(Manifest())
    if manifest.preset is not None:
        data = merge(data, PRESETS[manifest.preset].overlay())
    return data


def document_of(manifest: Manifest, full: bool = False) -> dict[str, Any]:
    """The document for `manifest`: apiVersion, kind and its preset, then only what differs from
    the preset (every field with `full`). `resolve` of it gives `manifest` back."""
    data: dict[str, Any] = encode(manifest)
    if full:
        return data
    head = {key: data[key] for key in ("apiVersion", "kind")}
    if manifest.preset is not None:
        head["preset"] = manifest.preset
    return {**head, **prune(data, base_of(manifest))}


def dump(document: Mapping[str, Any], format: str = "yaml") -> str:
    """`document` as YAML (keys in declaration order) or JSON."""
    if format == "json":
        import json

        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return str(yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True))
