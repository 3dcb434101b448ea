"""What tidemesh reads from Triton model configs: which models Triton loads when it starts (the
rest load on demand), and where a loaded model's instances run."""

from __future__ import annotations

from pathlib import Path

from mesh.model_repository import MODEL_REPOSITORY, ModelNeeds, loaded_needs, needs, repository_needs
from mesh.supervisor._triton import triton_launch


def loads_at_start(model_dir: Path, config: str = "") -> bool:
    return needs(model_dir, config).load_at_start


_MODEL = """name: "{name}"
backend: "python"
{extra}
instance_group [ {{ kind: {kind}, count: 1 }} ]
"""
_ON_DEMAND = 'parameters { key: "load_at_start", value: { string_value: "false" } }'


def _model(repository: Path, name: str, extra: str = "", kind: str = "KIND_CPU") -> Path:
    folder = repository / name
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(_MODEL.format(name=name, extra=extra, kind=kind))
    return folder


def test_models_that_say_so_are_left_for_on_demand_loading(tmp_path: Path) -> None:
    """Every model loads at start but those whose config says `load_at_start: "false"`; the config
    read is the one Triton will use (``configs/<name>.pbtxt`` under --model-config-name); a config
    that does not parse is loaded, so Triton says what is wrong with it."""
    user = tmp_path / "repo"
    _model(user, "eager")
    _model(user, "lazy", _ON_DEMAND)
    gpu_only_lazy = _model(user, "gpu-lazy")
    (gpu_only_lazy / "configs").mkdir()
    (gpu_only_lazy / "configs" / "gpu.pbtxt").write_text(
        _MODEL.format(name="gpu-lazy", extra=_ON_DEMAND, kind="KIND_GPU")
    )
    broken = _model(user, "broken")
    (broken / "config.pbtxt").write_text("name: 'broken' instance_group [ { kind: NOT_A_KIND } ]")

    assert [loads_at_start(user / n) for n in ("eager", "lazy", "gpu-lazy", "broken")] == [True, False, True, True]
    assert not loads_at_start(gpu_only_lazy, "gpu")  # its GPU config is on demand, its CPU one is not
    assert not loads_at_start(user / "lazy", "gpu")  # no configs/gpu.pbtxt: config.pbtxt decides

    command = triton_launch(tmp_path / "state", 1, 2, 3, model_repositories=[user], config_name="").command
    loaded = [arg.removeprefix("--load-model=") for arg in command if arg.startswith("--load-model")]
    # the project's FP32 models at start, its FP16 variant on demand; the user's eager ones
    assert loaded == ["all-minilm-l6-v2", "all-minilm-l6-v2-chunks", "broken", "eager", "gpu-lazy"]
    assert f"--model-repository={MODEL_REPOSITORY}" in command and f"--model-repository={user}" in command
    assert "--model-control-mode=explicit" in command and "--load-model=*" not in command


def test_where_a_loaded_model_runs_and_how_many_instances() -> None:
    """From the config Triton returns for a loaded model (JSON; KIND_AUTO resolved, a KIND_GPU
    group's GPUs listed): the device kind and the instance count over every group."""

    def placed(config: dict[str, object]) -> tuple[str, int]:
        found = loaded_needs(config)
        return found.device_kind, found.instances

    assert placed({"instance_group": [{"kind": "KIND_CPU", "count": 2}]}) == ("cpu", 2)
    assert placed({"instance_group": [{"kind": "KIND_GPU", "count": 1, "gpus": [0, 1]}]}) == ("gpu", 2)
    mixed = {"instance_group": [{"kind": "KIND_GPU", "count": 2, "gpus": [0]}, {"kind": "KIND_CPU", "count": 1}]}
    assert placed(mixed) == ("gpu", 3)
    assert placed({"instance_group": [{"kind": "KIND_MODEL"}]}) == ("cpu", 1)
    assert placed({"name": "x", "someFieldTritonAdds": 1}) == ("", 0)
    memory = {"parameters": {"memory_mb": {"string_value": "2"}, "family": {"string_value": "m"}}}
    assert (loaded_needs(memory).memory_bytes, loaded_needs(memory).family) == (2 * 1024 * 1024, "m")


def test_what_a_model_needs_is_read_before_it_is_loaded(tmp_path: Path) -> None:
    """Device kind, instances, memory and family from the config Triton would use — the
    project's FP16 variant among them (a GPU under the ``gpu`` config, CPU otherwise)."""
    user = tmp_path / "repo"
    _model(user, "detector", 'parameters { key: "memory_mb", value: { string_value: "1.5" } }', kind="KIND_GPU")
    _model(user, "anywhere", kind="KIND_AUTO")
    (user / "bare" / "1").mkdir(parents=True)  # no config: Triton's to complete
    found = repository_needs([MODEL_REPOSITORY, user])
    assert found["detector"] == ModelNeeds("gpu", 1, int(1.5 * 1024 * 1024))
    assert found["anywhere"].device_kind == "" and found["bare"] == ModelNeeds()
    fp16 = found["all-minilm-l6-v2-fp16"]
    assert (fp16.device_kind, fp16.load_at_start, fp16.family, fp16.precision) == (
        "cpu",
        False,
        "all-minilm-l6-v2",
        "fp16",
    )
    assert fp16.min_cosine == 0.999
    assert repository_needs([MODEL_REPOSITORY], "gpu")["all-minilm-l6-v2-fp16"].device_kind == "gpu"
    gpu_only = frozenset({"gpu"})
    assert found["detector"].runs_on(frozenset({"cpu", "gpu"})) and not found["detector"].runs_on(frozenset({"cpu"}))
    assert found["anywhere"].runs_on(frozenset({"cpu"})) and not found["all-minilm-l6-v2"].runs_on(gpu_only)
