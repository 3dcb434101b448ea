"""The kind registry: one declaration per kind, the built-in kinds declared through it, user
kinds checked field by field, pools derived per step and schema version."""

from __future__ import annotations

import pytest

from mesh.errors import Conflict, InvalidArgument
from mesh.tasks import KINDS, KindRegistry, StepSpec, TaskKind, user_pool
from mesh.v1 import kind_pb2
from services.worker._runner import builtin_handler, check_builtin_handlers


def _declaration(**changes: object) -> kind_pb2.KindDeclaration:
    declaration = kind_pb2.KindDeclaration(name="acme.resize", input_type="acme.v1.In", output_type="acme.v1.Out")
    declaration.steps.add(name="resize")
    for key, value in changes.items():
        setattr(declaration, key, value)
    return declaration


def test_the_built_in_kinds_are_declared_through_the_registry_with_handlers() -> None:
    """echo … infer are registry entries; every one of their steps has a handler."""
    builtin = {name for name, kind in KINDS.items() if kind.builtin}
    assert builtin == {"echo", "embed", "stream", "fan_out", "webhook", "doc_embed", "infer"}
    assert KINDS["doc_embed"].input_type == "mesh.v1.DocEmbedInput"
    assert [step.pool for step in KINDS["doc_embed"].steps] == ["ingestion", "inference", "post-processing"]
    check_builtin_handlers()
    assert all(builtin_handler(KINDS[name], 0) is not None for name in builtin)


def test_a_second_different_declaration_of_a_name_is_refused() -> None:
    """The same declaration again is a no-op; another one under the name (or a built-in name) is a Conflict."""
    registry = KindRegistry()
    kind = TaskKind.from_declaration(_declaration())
    assert registry.register(kind) is True
    assert registry.register(TaskKind.from_declaration(_declaration())) is False
    with pytest.raises(Conflict, match="another declaration"):
        registry.register(TaskKind.from_declaration(_declaration(max_attempts=7)))
    with pytest.raises(Conflict, match="built-in"):
        KINDS.register(TaskKind("echo", "mesh.v1.EchoInput", "mesh.v1.TaskOutput", (StepSpec("echo"),)))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Resize"}, "kind.name"),
        ({"name": "resize"}, "kind.name"),  # one token: not namespaced
        ({"input_type": "In"}, "kind.input_type"),
        ({"output_type": ""}, "kind.output_type"),
        ({"builtin": True}, "kind.builtin"),
        ({"max_attempts": 1000}, "kind.max_attempts"),
    ],
)
def test_a_malformed_declaration_names_the_field(change: dict[str, object], field: str) -> None:
    """Every refusal of a declaration names the field that is wrong."""
    with pytest.raises(InvalidArgument) as refused:
        TaskKind.from_declaration(_declaration(**change))
    assert refused.value.field == field


def test_steps_are_checked_one_by_one() -> None:
    """No steps, a duplicate step, a bad step name, a pool given for a user kind: each named."""
    empty = kind_pb2.KindDeclaration(name="acme.x", input_type="acme.v1.In", output_type="acme.v1.Out")
    with pytest.raises(InvalidArgument, match=r"1\.\.16 steps"):
        TaskKind.from_declaration(empty)
    twice = _declaration()
    twice.steps.add(name="resize")
    with pytest.raises(InvalidArgument) as refused:
        TaskKind.from_declaration(twice)
    assert refused.value.field == "kind.steps[1].name"
    pooled = _declaration()
    pooled.steps[0].pool = "inference"
    with pytest.raises(InvalidArgument) as refused:
        TaskKind.from_declaration(pooled)
    assert refused.value.field == "kind.steps[0].pool"


def test_user_pools_are_derived_per_step_and_version_and_round_trip() -> None:
    """A user kind's work for (step, version) has a pool of its own; the declaration round-trips."""
    declaration = _declaration(max_attempts=5)
    declaration.steps.add(name="upload", max_attempts=2).timeout.FromSeconds(9)
    declaration.required_labels["gpu"] = "nvidia"
    kind = TaskKind.from_declaration(declaration)
    assert kind.pool(0, 2) == user_pool("acme.resize", "resize", 2) == "u-acme_resize-resize-v2"
    assert kind.pool(1, 1) == "u-acme_resize-upload-v1"
    assert kind.attempts(0) == 5 and kind.attempts(1) == 2
    assert kind.timeout_s(0) == 300.0 and kind.timeout_s(1) == 9.0
    assert kind.serves({"gpu": "amd"}) == ["gpu=nvidia"] and kind.serves({"gpu": "nvidia"}) == []
    assert TaskKind.from_declaration(kind.declaration()) == kind
