"""What tidemesh reads from Triton model configs: which models Triton loads when it starts (the
rest load on demand), and where a loaded model's instances run."""

from __future__ import annotations

from pathlib import Path

from mesh.supervisor._triton import MODEL_REPOSITORY, loads_at_start, triton_launch
from services.inference._triton import _placement

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
    """From the config Triton returns for a loaded model (KIND_AUTO resolved, a KIND_GPU group's
    GPUs listed): the device kind and the instance count over every group."""
    assert _placement({"instance_group": [{"kind": "KIND_CPU", "count": 2}]}) == ("cpu", 2)
    assert _placement({"instance_group": [{"kind": "KIND_GPU", "count": 1, "gpus": [0, 1]}]}) == ("gpu", 2)
    mixed = {"instance_group": [{"kind": "KIND_GPU", "count": 2, "gpus": [0]}, {"kind": "KIND_CPU", "count": 1}]}
    assert _placement(mixed) == ("gpu", 3)
    assert _placement({"instance_group": [{"kind": "KIND_MODEL"}]}) == ("cpu", 1)
    assert _placement({}) == ("", 0)
