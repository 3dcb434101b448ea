"""Task kinds: one declaration each, in one registry that every part of the mesh reads.

A kind names its input and output message types and its pipeline of steps, each step with
the pool that runs it, its timeout and its retry budget, and the labels a worker must have
to serve it. The built-in kinds are declared through this registry (`mesh.tasks.builtin`)
exactly as a user kind is; the scheduler validates against it, the gateway maps JSON through
it, workers and worker sessions execute it. User kinds are registered once, mesh-wide
(`KindService.RegisterKind`, stored in NATS), and followed into each process's registry.

User kinds' steps run in pools the mesh derives per (kind, step, input schema version), so a
work item reaches only a worker that serves that step and reads that version: routing is by
subject, never by a pull that has to hand work back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf.message import Message

from mesh.errors import Conflict, InvalidArgument
from mesh.v1 import kind_pb2

# `acme.resize`, `acme.v2.score-transaction`: lower-case dotted tokens.
KIND_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$")
_STEP_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_MESSAGE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
CUSTOM_PAYLOAD = "custom"  # the TaskPayload / TaskOutput case of a user kind's messages
TYPE_URL_PREFIX = "type.googleapis.com/"
MAX_KIND_STEPS = 16
DEFAULT_STEP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class StepSpec:
    """One step of a kind's pipeline: its name, its pool, and its own limits if it has them."""

    name: str
    pool: str = ""  # empty for a user kind: derived per schema version (`TaskKind.pool`)
    timeout_s: float | None = None  # None: the kind's step_timeout_s
    max_attempts: int | None = None  # None: the kind's max_attempts


@dataclass(frozen=True)
class TaskKind:
    """The one declaration of a task kind."""

    name: str
    # Full names of the input and output messages (the schema registry's subjects).
    input_type: str
    output_type: str
    steps: tuple[StepSpec, ...]
    # Labels a worker must advertise, with these values, to serve the kind. Never relaxed.
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Attempts per step before a retryable failure is dead-lettered.
    max_attempts: int = 3
    # A step running longer is abandoned and retried (0: no limit, e.g. a step that waits on
    # children or streams for as long as its input asks).
    step_timeout_s: float = DEFAULT_STEP_TIMEOUT_S
    builtin: bool = False
    # The TaskPayload case the kind takes: the built-in kinds have their own, user kinds `custom`.
    payload_field: str = CUSTOM_PAYLOAD
    description: str = ""

    @property
    def input_type_url(self) -> str:
        return TYPE_URL_PREFIX + self.input_type

    @property
    def output_type_url(self) -> str:
        return TYPE_URL_PREFIX + self.output_type

    def step_index(self, name: str) -> int:
        """The index of step `name`, or -1."""
        return next((i for i, step in enumerate(self.steps) if step.name == name), -1)

    def timeout_s(self, index: int) -> float:
        own = self.steps[index].timeout_s
        return self.step_timeout_s if own is None else own

    def attempts(self, index: int) -> int:
        own = self.steps[index].max_attempts
        return self.max_attempts if own is None else own

    def pool(self, index: int, schema_version: int = 0) -> str:
        """The pool that runs step `index` of a task written with input `schema_version`."""
        step = self.steps[index]
        if self.builtin:
            return step.pool
        return user_pool(self.name, step.name, schema_version)

    def serves(self, labels: Mapping[str, str]) -> list[str]:
        """The required labels that `labels` lacks or has with another value (empty: it may serve)."""
        return [f"{key}={value}" for key, value in sorted(self.labels.items()) if labels.get(key) != value]

    def declaration(self) -> kind_pb2.KindDeclaration:
        declaration = kind_pb2.KindDeclaration(
            name=self.name,
            input_type=self.input_type,
            output_type=self.output_type,
            required_labels=dict(self.labels),
            max_attempts=self.max_attempts,
            builtin=self.builtin,
            description=self.description,
        )
        declaration.step_timeout.FromNanoseconds(int(self.step_timeout_s * 1e9))
        for step in self.steps:
            entry = declaration.steps.add(name=step.name, pool=step.pool, max_attempts=step.max_attempts or 0)
            if step.timeout_s is not None:
                entry.timeout.FromNanoseconds(int(step.timeout_s * 1e9))
        return declaration

    @classmethod
    def from_declaration(cls, declaration: kind_pb2.KindDeclaration, where: str = "kind") -> TaskKind:
        """A user kind from its declaration, checked; every problem names its field."""
        check_kind_name(declaration.name, f"{where}.name")
        for field_name in ("input_type", "output_type"):
            value = getattr(declaration, field_name)
            if not _MESSAGE_NAME_RE.match(value):
                raise InvalidArgument(
                    f"{where}.{field_name}", "must be a full message name, e.g. acme.v1.ResizeRequest"
                )
        if declaration.builtin:
            raise InvalidArgument(f"{where}.builtin", "only the mesh declares built-in kinds")
        if not 1 <= len(declaration.steps) <= MAX_KIND_STEPS:
            raise InvalidArgument(f"{where}.steps", f"must hold 1..{MAX_KIND_STEPS} steps")
        steps: list[StepSpec] = []
        for index, step in enumerate(declaration.steps):
            at = f"{where}.steps[{index}]"
            if not _STEP_RE.match(step.name):
                raise InvalidArgument(f"{at}.name", "must be 1-32 characters of A-Z a-z 0-9 _ -")
            if any(s.name == step.name for s in steps):
                raise InvalidArgument(f"{at}.name", f"step {step.name!r} is declared twice")
            if step.pool:
                raise InvalidArgument(f"{at}.pool", "is derived by the mesh for a user kind: leave it empty")
            timeout = step.timeout.ToNanoseconds() / 1e9 if step.HasField("timeout") else None
            if timeout is not None and timeout < 0:
                raise InvalidArgument(f"{at}.timeout", "must not be negative")
            steps.append(StepSpec(step.name, "", timeout, step.max_attempts or None))
        for key, value in declaration.required_labels.items():
            if not key or len(key) > 63 or len(value) > 256:
                raise InvalidArgument(f"{where}.required_labels", f"label {key[:63]!r} is malformed")
        timeout_s = (
            declaration.step_timeout.ToNanoseconds() / 1e9
            if declaration.HasField("step_timeout")
            else DEFAULT_STEP_TIMEOUT_S
        )
        if timeout_s < 0:
            raise InvalidArgument(f"{where}.step_timeout", "must not be negative")
        if declaration.max_attempts > 100:
            raise InvalidArgument(f"{where}.max_attempts", "must be at most 100")
        return cls(
            name=declaration.name,
            input_type=declaration.input_type,
            output_type=declaration.output_type,
            steps=tuple(steps),
            labels=MappingProxyType(dict(declaration.required_labels)),
            max_attempts=declaration.max_attempts or 3,
            step_timeout_s=timeout_s,
            description=declaration.description,
        )


def builtin_kind(
    name: str,
    input_message: type[Message],
    steps: tuple[StepSpec, ...],
    max_attempts: int = 3,
    step_timeout_s: float = DEFAULT_STEP_TIMEOUT_S,
    description: str = "",
) -> TaskKind:
    """A kind the mesh ships with; its payload case is named like the kind."""
    return TaskKind(
        name=name,
        input_type=input_message.DESCRIPTOR.full_name,
        output_type="mesh.v1.TaskOutput",
        steps=steps,
        max_attempts=max_attempts,
        step_timeout_s=step_timeout_s,
        builtin=True,
        payload_field=name,
        description=description,
    )


def check_kind_name(name: str, field: str = "kind.name") -> str:
    if not name:
        raise InvalidArgument(field, "is required")
    if len(name) > 64 or not KIND_NAME_RE.match(name):
        raise InvalidArgument(
            field, "must be 2+ lower-case dotted tokens of a-z 0-9 _ - (e.g. acme.resize), at most 64 characters"
        )
    return name


def user_pool(kind: str, step: str, schema_version: int) -> str:
    """`u-acme_resize-count-v2`: one subject token (consumer names are built from it)."""
    return f"u-{kind.replace('.', '_')}-{step}-v{schema_version}"


class KindRegistry(Mapping[str, TaskKind]):
    """Kinds by name. `register` refuses a second, different declaration of a name."""

    def __init__(self) -> None:
        self._kinds: dict[str, TaskKind] = {}

    def register(self, kind: TaskKind) -> bool:
        """Add `kind`; False if the same declaration was already there, Conflict if another is."""
        known = self._kinds.get(kind.name)
        if known is not None:
            if known == kind:
                return False
            owner = "a built-in kind" if known.builtin else "registered with another declaration"
            raise Conflict(f"kind {kind.name!r} is {owner}")
        self._kinds[kind.name] = kind
        return True

    def __getitem__(self, name: str) -> TaskKind:
        return self._kinds[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def one_of(self) -> str:
        """The known names, for an error message."""
        return ", ".join(sorted(self._kinds))


# The registry of this process: the built-in kinds (`mesh.tasks.builtin`) and the user kinds
# followed from the mesh's kind store.
KINDS = KindRegistry()
