"""Typed manifest fields: one declaration per field gives the loader (every error with its path),
the writer, the JSON Schema and the walk over every field (for `explain` and coverage tests).

A section is a frozen dataclass whose fields are declared with `setting(...)`. The value types a
field may have: ``bool``, ``int``, ``float``, ``str``, a ``Literal`` of those, ``X | None``,
``tuple[X, ...]`` (a list in the document), ``dict[str, X]`` (a mapping whose keys the field's
`key_pattern` checks), another section, or `SecretRef` (a secret, only ever by reference).
Document keys are the attributes' names in camelCase unless a field names its own `key`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

T = TypeVar("T")
_UNSET: Any = dataclasses.MISSING


@dataclass(frozen=True)
class Meta:
    """What a field says about itself beyond its type and default."""

    doc: str
    key: str = ""
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    pattern: str | None = None  # a str value's (or each item's, of a tuple of str)
    key_pattern: str | None = None  # each key's, of a dict field
    # False: declared now so manifests can say it, acted on by a later release (`later` says which).
    enforced: bool = True
    later: str = ""
    required: bool = False  # must be given in a document (apiVersion, kind)
    tradeoff: str = ""  # what choosing a value costs and buys (`tidemesh config explain`)

    def description(self) -> str:
        if self.enforced:
            return self.doc
        return f"{self.doc} Declared only: not enforced yet ({self.later or 'a later release'})."


def setting(default: Any = _UNSET, *, default_factory: Any = _UNSET, doc: str, **meta: Any) -> Any:
    """A manifest field: its default, description and constraints (see `Meta`)."""
    metadata = {"manifest": Meta(doc=doc, **meta)}
    if default_factory is not _UNSET:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class SecretRef:
    """A secret named by where it lives — a file or an environment variable — never its value."""

    from_file: str | None = setting(None, doc="A file holding the secret (read where the mesh runs).")
    from_env: str | None = setting(
        None, doc="An environment variable holding the secret.", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"
    )

    def check(self) -> Iterator[tuple[str, str]]:
        if (self.from_file is None) == (self.from_env is None):
            yield "", "give exactly one of fromFile or fromEnv"


INLINE_SECRET = "an inline secret is refused: give a reference, {fromFile: PATH} or {fromEnv: NAME}"


@dataclass(frozen=True)
class Issue:
    """One thing wrong with a document: where (a dotted path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(document)'}: {self.message}"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


@dataclass(frozen=True)
class Field:
    """One field of a section, as the walk sees it."""

    attr: str
    key: str
    type: Any
    meta: Meta
    default: Any  # the Python default (a section's default instance); dataclasses.MISSING: none

    @property
    def needed(self) -> bool:
        """Whether a document must give it (declared required, or no default to fall back on)."""
        return self.meta.required or self.default is dataclasses.MISSING


@cache
def fields_of(cls: type) -> tuple[Field, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("manifest")
        if not isinstance(meta, Meta):
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with setting()")
        default = f.default
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        out.append(Field(f.name, meta.key or camel(f.name), hints[f.name], meta, default))
    return tuple(out)


def _nullable(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unions other than X | None are not supported: {tp}")
        return args[0], True
    return tp, False


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if "." in key or not key:
        return f'{path}["{key}"]'
    return f"{path}.{key}" if path else key


_PART = re.compile(r'\["([^"]*)"\]|\[(\d+)\]|([^.\[\]]+)')


def split_path(path: str) -> list[str]:
    """A dotted path's parts: ``kinds["acme.resize"].steps[0]`` → kinds, acme.resize, steps, 0."""
    return [key or index or name for key, index, name in _PART.findall(path)]


def path_of(parts: list[str]) -> str:
    """`split_path`'s inverse (indices written as keys)."""
    out = ""
    for part in parts:
        out = join(out, part)
    return out


def matches(pattern: str, path: str) -> bool:
    """Whether `path` is at or under the field `pattern` (whose ``*`` stands for any one key)."""
    wanted, parts = split_path(pattern), split_path(path)
    return len(parts) >= len(wanted) and all(w in ("*", p) for w, p in zip(wanted, parts, strict=False))


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


# -- decoding: a document's data → sections, every issue collected with its path ----------------------


def decode(cls: type[T], data: Any, path: str = "") -> tuple[T | None, list[Issue]]:
    """`data` (parsed YAML/JSON) as a `cls`; None and the issues when it is not one."""
    issues: list[Issue] = []
    value = _decode(cls, data, path, None, issues)
    return (value if not issues else None), issues


def _decode(tp: Any, value: Any, path: str, meta: Meta | None, issues: list[Issue]) -> Any:
    inner, nullable = _nullable(tp)
    if value is None:
        if not nullable:
            issues.append(Issue(path, f"must not be null (expected {expected_type(inner)})"))
        return None
    tp = inner
    if tp is SecretRef and not isinstance(value, Mapping):
        issues.append(Issue(path, INLINE_SECRET))
        return None
    if _is_section(tp):
        return _decode_section(tp, value, path, issues)
    origin = get_origin(tp)
    if origin is tuple:
        if not isinstance(value, list):
            issues.append(Issue(path, f"expected a list, got {_kind_of(value)}"))
            return None
        item_type = get_args(tp)[0]
        return tuple(_decode(item_type, item, join(path, i), meta, issues) for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            issues.append(Issue(path, f"expected a mapping, got {_kind_of(value)}"))
            return None
        value_type = get_args(tp)[1]
        out = {}
        for key, item in value.items():
            where = join(path, str(key))
            if not isinstance(key, str):
                issues.append(Issue(where, f"a key must be a string, got {_kind_of(key)}"))
                continue
            if meta is not None and meta.key_pattern and not re.fullmatch(meta.key_pattern, key):
                issues.append(Issue(where, f"not a valid name (must match {meta.key_pattern})"))
                continue
            out[key] = _decode(value_type, item, where, meta, issues)
        return out
    return _decode_scalar(tp, value, path, meta, issues)


def expected_type(tp: Any) -> str:
    inner, nullable = _nullable(tp)
    text: str
    if get_origin(inner) is Literal:
        text = "one of " + ", ".join(repr(c) for c in get_args(inner))
    elif inner is bool:
        text = "a boolean"
    elif inner is int:
        text = "an integer"
    elif inner is float:
        text = "a number"
    elif inner is str:
        text = "a string"
    elif get_origin(inner) is tuple:
        text = "a list"
    else:
        text = "a mapping"
    return f"{text} or null" if nullable else text


def _decode_scalar(tp: Any, value: Any, path: str, meta: Meta | None, issues: list[Issue]) -> Any:
    # JSON Schema's integers include 3.0 (a number with no fraction): so do the manifest's
    if (tp is int or (get_origin(tp) is Literal and isinstance(get_args(tp)[0], int))) and _integral(value):
        value = int(value)
    if get_origin(tp) is Literal:
        choices = get_args(tp)
        # `True == 1` in Python: a boolean is never a number here
        wrong_type = isinstance(value, bool) != isinstance(choices[0], bool) or not isinstance(value, type(choices[0]))
        if wrong_type or value not in choices:
            issues.append(Issue(path, f"expected {expected_type(tp)}, got {value!r}"))
            return None
        return value
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"unsupported manifest type {tp!r} at {path}")
    if not ok:
        issues.append(Issue(path, f"expected {expected_type(tp)}, got {_kind_of(value)} ({value!r})"))
        return None
    if tp is float:
        value = float(value)
        if not math.isfinite(value):
            issues.append(Issue(path, f"must be a finite number, got {value!r}"))
            return None
    if meta is not None:
        problem = _out_of_range(value, meta)
        if problem:
            issues.append(Issue(path, problem))
            return None
    return value


def _integral(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def _out_of_range(value: Any, meta: Meta) -> str:
    if isinstance(value, str):
        if meta.pattern and not re.fullmatch(meta.pattern, value):
            return f"{value!r} does not match {meta.pattern}"
        return ""
    if isinstance(value, bool):
        return ""
    if meta.minimum is not None and value < meta.minimum:
        return f"must be ≥ {meta.minimum:g}, got {value:g}"
    if meta.exclusive_minimum is not None and value <= meta.exclusive_minimum:
        return f"must be > {meta.exclusive_minimum:g}, got {value:g}"
    if meta.maximum is not None and value > meta.maximum:
        return f"must be ≤ {meta.maximum:g}, got {value:g}"
    return ""


def _decode_section(cls: type, value: Any, path: str, issues: list[Issue]) -> Any:
    if not isinstance(value, Mapping):
        issues.append(Issue(path, f"expected a mapping, got {_kind_of(value)}"))
        return None
    known = {f.key: f for f in fields_of(cls)}
    before = len(issues)
    for key in value:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(known)}"
            issues.append(Issue(join(path, str(key)), f"unknown key{hint}"))
    given = {}
    for key, f in known.items():
        if key in value:
            given[f.attr] = _decode(f.type, value[key], join(path, key), f.meta, issues)
        elif f.needed:
            issues.append(Issue(join(path, key), "is required"))
    if len(issues) > before:
        return None
    section = cls(**given)
    check = getattr(section, "check", None)
    if check is not None:
        # a check names a field below the section by its relative dotted path
        issues.extend(Issue(f"{path}.{sub}" if path and sub else sub or path, message) for sub, message in check())
    return section


# -- encoding: sections → plain data (what YAML/JSON hold), every field ----------------------------


def encode(value: Any) -> Any:
    """Plain data for `value`: sections as mappings in declaration order, tuples as lists."""
    section: type = type(value)
    if _is_section(section):
        return {f.key: encode(getattr(value, f.attr)) for f in fields_of(section)}
    if isinstance(value, tuple):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {k: encode(v) for k, v in value.items()}
    return value


def merge(base: Any, overlay: Any) -> Any:
    """`overlay` over `base`: mappings merge key by key, anything else (lists, null) replaces."""
    if isinstance(base, Mapping) and isinstance(overlay, Mapping):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return overlay


def prune(data: Any, base: Any) -> Any:
    """What `data` says beyond `base` (so that ``merge(base, prune(data, base)) == data``)."""
    if isinstance(data, Mapping) and isinstance(base, Mapping):
        out = {}
        for key, value in data.items():
            if key not in base:
                out[key] = value
            elif value != base[key]:
                out[key] = prune(value, base[key])
        return out
    return data


@dataclass(frozen=True)
class Change:
    """One field that differs between two documents (None: absent on that side)."""

    path: str
    before: Any
    after: Any


def diff(before: Any, after: Any, path: str = "") -> list[Change]:
    """Field-by-field differences between two encoded documents, in document order; an entry
    only one side has (a new tenant, autoscale bounds where there were none) shows field by field."""
    if isinstance(before, Mapping) and after is None:
        after = {}
    if isinstance(after, Mapping) and before is None:
        before = {}
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        changes = []
        for key in [*before, *(k for k in after if k not in before)]:
            changes += diff(before.get(key), after.get(key), join(path, key))
        return changes
    return [] if before == after else [Change(path, before, after)]


# -- the walk: every field's path, with its type and meta ---------------------------------------------


@dataclass(frozen=True)
class FieldPath:
    """A field anywhere in the manifest; a mapping's keys show as ``*`` (``tenants.named.*.weight``)."""

    path: str
    type: Any
    meta: Meta
    default: Any  # encoded; None where the field has no default


def walk(cls: type, path: str = "") -> Iterator[FieldPath]:
    for f in fields_of(cls):
        where = join(path, f.key)
        yield FieldPath(where, f.type, f.meta, None if f.default is dataclasses.MISSING else encode(f.default))
        inner, _ = _nullable(f.type)
        if get_origin(inner) is dict:
            inner = get_args(inner)[1]
            where = join(where, "*")
        if _is_section(inner) and inner is not SecretRef:
            yield from walk(inner, where)


def find_field(cls: type, path: str) -> FieldPath | None:
    """The field at `path`; a mapping's key in `path` (``tenants.named.acme.weight``) matches ``*``."""
    for candidate in walk(cls):
        if len(split_path(candidate.path)) == len(split_path(path)) and matches(candidate.path, path):
            return candidate
    return None


# -- the JSON Schema --------------------------------------------------------------------------------


def json_schema(cls: type, *, schema_id: str, title: str) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for documents of `cls`, one ``$defs`` entry per section."""
    defs: dict[str, Any] = {}
    root = _section_schema(cls, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        "title": title,
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def _section_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    properties = {}
    for f in fields_of(cls):
        prop = _type_schema(f.type, f.meta, defs)
        described: dict[str, Any] = {"description": f.meta.description()}
        if not f.needed:
            described["default"] = encode(f.default)
        properties[f.key] = {**described, **prop} if "$ref" not in prop else {"allOf": [prop], **described}
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    required = [f.key for f in fields_of(cls) if f.needed]
    if required:
        schema["required"] = required
    if cls.__doc__:
        schema = {"description": " ".join(cls.__doc__.split()), **schema}
    if cls is SecretRef:
        schema["oneOf"] = [{"required": ["fromFile"]}, {"required": ["fromEnv"]}]
    return schema


def _type_schema(tp: Any, meta: Meta, defs: dict[str, Any]) -> dict[str, Any]:
    inner, nullable = _nullable(tp)
    schema = _inner_schema(inner, meta, defs)
    if not nullable:
        return schema
    if "type" in schema and "enum" not in schema:
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _inner_schema(tp: Any, meta: Meta, defs: dict[str, Any]) -> dict[str, Any]:
    if _is_section(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # a placeholder first: a section may refer to itself
            defs[name] = _section_schema(tp, defs)
        return {"$ref": f"#/$defs/{name}"}
    origin = get_origin(tp)
    if origin is tuple:
        return {"type": "array", "items": _inner_schema(get_args(tp)[0], meta, defs)}
    if origin is dict:
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": _inner_schema(get_args(tp)[1], meta, defs),
        }
        if meta.key_pattern:
            schema["propertyNames"] = {"pattern": meta.key_pattern}
        return schema
    if origin is Literal:
        choices = list(get_args(tp))
        kind = "string" if isinstance(choices[0], str) else "integer"
        return {"type": kind, "enum": choices}
    kind = {bool: "boolean", int: "integer", float: "number", str: "string"}[tp]
    schema = {"type": kind}
    if tp is str and meta.pattern:
        schema["pattern"] = meta.pattern
    if tp in (int, float):
        for name, bound in (
            ("minimum", meta.minimum),
            ("maximum", meta.maximum),
            ("exclusiveMinimum", meta.exclusive_minimum),
        ):
            if bound is not None:
                schema[name] = int(bound) if tp is int else bound
    return schema
