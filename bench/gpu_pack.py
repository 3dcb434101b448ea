"""Pack what the GPU check needs on a lent accelerator machine into `.gpu/` (ignored by git).

That machine has an NVIDIA GPU, its own Python 3.12 with numpy, cupy, safetensors, tokenizers,
grpcio and nvidia-ml-py — and no package registry, and what travels to it is at most 64 MiB. So
the check cannot `make venv` there, nor carry tritonserver (a 55 MB wheel) beside the model's
90 MB of weights. What it can carry, and `bench/gpu_check.sh --device` then runs:

- `.gpu/minilm/`: all-MiniLM-L6-v2 with its word-embedding table cut down to the rows the check's
  sentences use (`kept_ids.npy`; every other row is zero when `unpack_model` rebuilds the full
  table there), and the pooler dropped (unused): 44 MB instead of 91. The vectors of the check's
  sentences are bit-identical to the full model's (`tests/unit/test_gpu_pack.py`).
- `.gpu/wheels/`: the pure or abi3 wheels of the mesh's own imports that the machine lacks or has
  at another version (the generated stubs need protobuf 7.36 and grpcio 1.85), for Python 3.12.

    python -m bench.gpu_pack          # then: device run with carry [".gpu"] (see bench/gpu_check.sh)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "minilm_reference.json"
WORD = "embeddings.word_embeddings.weight"
PRUNED = "model.pruned.safetensors"
KEPT = "kept_ids.npy"
# What `import services.inference._minilm, services.inference._devices` needs beyond the machine's own
# packages (KINDS.md lists them): the versions this repository pins.
WHEELS = (
    "protobuf==7.36.2",
    "grpcio==1.85.1",
    "grpcio-health-checking==1.85.1",
    "grpcio-reflection==1.85.1",
    "opentelemetry-api==1.45.2",
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-semantic-conventions==0.66b2",
    "opentelemetry-instrumentation==0.66b2",
    "opentelemetry-instrumentation-grpc==0.66b2",
    "importlib-metadata",
    "zipp",
)
_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def check_sentences() -> list[str]:
    """The sentences the device check embeds: the reference set (vectors from sentence-transformers)."""
    return [str(s) for s in json.loads(REFERENCE.read_text(encoding="utf-8"))["sentences"]]


def token_ids(model_dir: Path, sentences: Iterable[str]) -> npt.NDArray[np.int64]:
    """Every token id the tokenizer gives `sentences` (the special tokens included), sorted."""
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = {i for encoding in tokenizer.encode_batch([s.strip() for s in sentences]) for i in encoding.ids}
    return np.array(sorted(ids), dtype=np.int64)


def pack_model(model_dir: Path, out: Path, sentences: Iterable[str]) -> int:
    """Write the cut-down model to `out`; returns its size in bytes."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("model.safetensors", "*.md", ".git*"))
    weights = load_file(str(model_dir / "model.safetensors"))
    kept = token_ids(model_dir, sentences)
    pruned = {k: v for k, v in weights.items() if not k.startswith("pooler.")}
    pruned[WORD] = np.ascontiguousarray(weights[WORD][kept])
    save_file(pruned, str(out / PRUNED), metadata={"vocab_rows": str(weights[WORD].shape[0])})
    np.save(out / KEPT, kept)
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def unpack_model(packed: Path, out: Path) -> Path:
    """Rebuild a loadable model directory from `packed` (rows not kept are zero)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(packed, out, ignore=shutil.ignore_patterns(PRUNED, KEPT))
    from safetensors import safe_open

    with safe_open(str(packed / PRUNED), framework="numpy") as handle:
        rows = int((handle.metadata() or {})["vocab_rows"])
    weights = load_file(str(packed / PRUNED))
    kept = np.load(packed / KEPT)
    table = np.zeros((rows, weights[WORD].shape[1]), dtype=weights[WORD].dtype)
    table[kept] = weights[WORD]
    weights[WORD] = table
    save_file(weights, str(out / "model.safetensors"))
    return out


def download_wheels(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in _PLATFORMS for arg in ("--platform", p)]
    base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(out)]
    target = ["--python-version", "3.12", "--implementation", "cp", *platforms]
    subprocess.run([*base, *target, *WHEELS], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / ".gpu"))
    parser.add_argument("--no-wheels", action="store_true", help="only the model")
    args = parser.parse_args()
    from services.inference._minilm import default_model_dir

    out = Path(args.out)
    size = pack_model(default_model_dir(), out / "minilm", check_sentences())
    print(f"gpu_pack: model {size / 1e6:.1f} MB in {out / 'minilm'}")
    if not args.no_wheels:
        download_wheels(out / "wheels")
        wheels = sum(p.stat().st_size for p in (out / "wheels").iterdir())
        print(f"gpu_pack: wheels {wheels / 1e6:.1f} MB in {out / 'wheels'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
