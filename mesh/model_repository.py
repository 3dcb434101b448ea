"""Triton model repositories on disk: their models, and what each model's config says it needs.

A model is a folder with a ``config.pbtxt`` (or numbered version folders); under
``--model-config-name=NAME`` Triton reads ``configs/NAME.pbtxt`` instead where there is one, and
so does `needs`. The config is parsed with Triton's own schema (`model_config_pb2` from
tritonclient). What tidemesh reads from it, before the model is ever loaded:

- where its instances must run (``instance_group`` kind: KIND_GPU needs a GPU, KIND_CPU and
  KIND_MODEL run on CPU, KIND_AUTO — Triton's default — runs on either) and how many;
- ``parameters { key: "memory_mb" … }``: what it counts against a backend's memory budget;
- ``parameters { key: "load_at_start" … }``: "false" leaves it for on-demand loading;
- ``family`` / ``min_cosine`` / ``precision``: a variant of another model (see the router).

The supervisor uses it to choose what Triton loads at start, the inference service to place a
model that is not loaded yet on a backend whose devices can run it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_NAME_ENV = "TIDEMESH_TRITON_CONFIG"
# The project's own repository (all-MiniLM-L6-v2, its chunk stream and its FP16 variant).
MODEL_REPOSITORY = Path(__file__).resolve().parents[1] / "services" / "inference" / "model_repository"
MIB = 1024 * 1024


def config_name(given: str | None = None) -> str:
    """The custom config Triton is told to prefer (``--model-config-name``): `given`, else
    $TIDEMESH_TRITON_CONFIG (``gpu`` runs the project's models on NVIDIA GPUs), else none."""
    return os.environ.get(CONFIG_NAME_ENV, "") if given is None else given


def repository_models(repository: Path) -> list[str]:
    """The models of a Triton model repository: its folders that hold a config or a version."""
    return sorted(
        entry.name
        for entry in repository.iterdir()
        if entry.is_dir()
        and ((entry / "config.pbtxt").is_file() or any(v.is_dir() and v.name.isdigit() for v in entry.iterdir()))
    )


@dataclass(frozen=True)
class ModelNeeds:
    """What a model's config asks of the backend that loads it."""

    device_kind: str = ""  # "gpu", "cpu", or "" (either: KIND_AUTO, or no config to read)
    instances: int = 0  # 0: not said (Triton's default, one per device)
    memory_bytes: int = 0  # 0: not declared (the router's default estimate)
    load_at_start: bool = True
    family: str = ""
    min_cosine: float = 0.0
    precision: str = ""

    def runs_on(self, kinds: frozenset[str]) -> bool:
        """Whether a backend with devices of `kinds` can load it."""
        return not self.device_kind or self.device_kind in kinds


def needs(model_dir: Path, config: str = "") -> ModelNeeds:
    """What the config Triton will use for `model_dir` says (`config`: the custom config name).
    A model without a config, or whose config does not parse, needs nothing tidemesh can see —
    Triton reports what is wrong when it loads it."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    chosen = model_dir / "configs" / f"{config}.pbtxt"
    path = chosen if config and chosen.is_file() else model_dir / "config.pbtxt"
    if not path.is_file():
        return ModelNeeds()
    try:
        parsed = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig(), allow_unknown_field=True)
    except text_format.ParseError:
        return ModelNeeds()
    return needs_of(parsed)


def loaded_needs(config: dict[str, Any]) -> ModelNeeds:
    """`needs_of` the config Triton returns for a loaded model (JSON; KIND_AUTO resolved, a
    KIND_GPU group's GPUs listed)."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2

    return needs_of(json_format.ParseDict(config, model_config_pb2.ModelConfig(), ignore_unknown_fields=True))


def needs_of(config: Any) -> ModelNeeds:
    """What a parsed `ModelConfig` asks for. Instances: `count` per group, on each GPU it lists."""
    from tritonclient.grpc import model_config_pb2

    group = model_config_pb2.ModelInstanceGroup
    kinds = {g.kind for g in config.instance_group}
    kind = "gpu" if group.KIND_GPU in kinds else "cpu" if kinds and group.KIND_AUTO not in kinds else ""
    parameters = {key: value.string_value.strip() for key, value in config.parameters.items()}

    def number(key: str) -> float:
        try:
            return float(parameters.get(key) or 0)
        except ValueError:
            return 0.0

    return ModelNeeds(
        device_kind=kind,
        instances=sum((g.count or 1) * max(len(g.gpus), 1) for g in config.instance_group),
        memory_bytes=int(number("memory_mb") * MIB),
        load_at_start=parameters.get("load_at_start", "").lower() != "false",
        family=parameters.get("family", ""),
        min_cosine=number("min_cosine"),
        precision=parameters.get("precision", ""),
    )


def repository_needs(repositories: list[Path], config: str = "") -> dict[str, ModelNeeds]:
    """`needs` of every model in `repositories`, by name (the first repository that has it)."""
    out: dict[str, ModelNeeds] = {}
    for repository in repositories:
        if repository.is_dir():
            for name in repository_models(repository):
                out.setdefault(name, needs(repository / name, config))
    return out
