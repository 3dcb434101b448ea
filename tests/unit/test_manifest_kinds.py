"""The manifest's own kinds (mesh.manifest.kind_declarations; the gateway's ManifestKinds): what
`config apply` and `up -f` register, checked before anything changes — a missing schema names the
kind's field, a kind registered with another declaration is refused, a registered one is kept."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.errors import Conflict, InvalidArgument
from mesh.manifest import API_VERSION, KIND, kind_declarations, resolve
from mesh.tasks import TaskKind
from services.gateway._config_api import ManifestKinds

RESIZE = {
    "inputType": "acme.v1.ResizeRequest",
    "outputType": "acme.v1.ResizeReply",
    "steps": [{"name": "fetch"}, {"name": "resize", "timeoutSeconds": 20, "maxAttempts": 5}],
    "labels": {"gpu": "yes"},
    "maxAttempts": 4,
    "stepTimeoutSeconds": 60,
}


def manifest(**kinds: Any) -> Any:
    return resolve({"apiVersion": API_VERSION, "kind": KIND, "kinds": kinds}, "t")


def test_a_kind_of_the_manifest_is_declared_as_register_kind_takes_it() -> None:
    (declaration,) = kind_declarations(manifest(**{"acme.resize": RESIZE}))
    assert (declaration.name, declaration.input_type, declaration.output_type) == (
        "acme.resize",
        "acme.v1.ResizeRequest",
        "acme.v1.ResizeReply",
    )
    assert [s.name for s in declaration.steps] == ["fetch", "resize"]
    assert declaration.steps[1].timeout.ToSeconds() == 20 and declaration.steps[1].max_attempts == 5
    assert not declaration.steps[0].HasField("timeout") and declaration.steps[0].max_attempts == 0
    assert dict(declaration.required_labels) == {"gpu": "yes"} and declaration.max_attempts == 4
    assert declaration.step_timeout.ToSeconds() == 60
    TaskKind.from_declaration(declaration)  # a declaration the registry takes


class Schemas:
    """Kinds.register's check: the kind's types must be registered schemas."""

    def __init__(self, registered: set[str]) -> None:
        self.registered = registered

    async def register(self, declaration: Any) -> TaskKind:
        kind = TaskKind.from_declaration(declaration)
        if kind.input_type not in self.registered:
            raise InvalidArgument("kind.input_type", f"{kind.input_type!r} is not a registered schema")
        return kind


class Store:
    def __init__(self) -> None:
        self.kinds: dict[str, TaskKind] = {}

    async def ensure(self, name: str) -> TaskKind | None:
        return self.kinds.get(name)

    async def register(self, kind: TaskKind) -> bool:
        if kind.name in self.kinds:
            return False
        self.kinds[kind.name] = kind
        return True


async def test_kinds_are_checked_first_then_registered_once() -> None:
    store = Store()
    kinds = ManifestKinds(Schemas({"acme.v1.ResizeRequest"}), store)
    found = await kinds.check(manifest(**{"acme.resize": RESIZE}))
    assert store.kinds == {}  # checking registers nothing
    assert await kinds.register(found) == ["acme.resize"]
    assert await kinds.register(await kinds.check(manifest(**{"acme.resize": RESIZE}))) == []  # kept as it is


async def test_a_missing_schema_names_the_kinds_field() -> None:
    kinds = ManifestKinds(Schemas(set()), Store())
    with pytest.raises(InvalidArgument) as refused:
        await kinds.check(manifest(**{"acme.resize": RESIZE}))
    assert refused.value.field == "kinds.acme.resize.inputType"


async def test_a_kind_registered_with_another_declaration_is_refused() -> None:
    store = Store()
    kinds = ManifestKinds(Schemas({"acme.v1.ResizeRequest"}), store)
    await kinds.register(await kinds.check(manifest(**{"acme.resize": RESIZE})))
    with pytest.raises(Conflict, match=r"kinds\.acme\.resize: registered with another declaration"):
        await kinds.check(manifest(**{"acme.resize": {**RESIZE, "maxAttempts": 9}}))
