"""all-MiniLM-L6-v2's encoder as an onnxruntime graph built from the shipped weights.

No exported model is shipped or downloaded: `graph` writes the ONNX graph from ``model.safetensors``
at load time (~0.3 s), using onnxruntime's fused CPU kernels for BERT (``com.microsoft`` Attention,
SkipLayerNormalization, BiasGelu) — the graph its own transformer optimizer produces from a torch
export. Inputs are the padded token ids, their positions and the attention mask; the output is the
mean-pooled, L2-normalised embedding, as sentence-transformers computes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["OnnxEncoder", "available", "graph"]

F32 = npt.NDArray[np.float32]


def available() -> bool:
    """Whether onnxruntime and onnx import (the numpy encoder is used otherwise)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def graph(model_dir: Path) -> bytes:
    """The serialized ONNX model for the BERT encoder + pooling under `model_dir`."""
    from onnx import TensorProto, helper
    from safetensors.numpy import load_file

    cfg: dict[str, Any] = json.loads((model_dir / "config.json").read_text())
    w = load_file(str(model_dir / "model.safetensors"))
    heads, dim, eps = int(cfg["num_attention_heads"]), int(cfg["hidden_size"]), float(cfg["layer_norm_eps"])
    initializers: list[tuple[str, Any]] = []
    nodes: list[Any] = []

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        initializers.append((name, np.ascontiguousarray(value, dtype=dtype)))
        return name

    def op(kind: str, *inputs: str, out: str | None = None, ms: bool = False, **attrs: Any) -> str:
        name = out or f"{kind}_{len(nodes)}"
        domain = "com.microsoft" if ms else ""
        nodes.append(helper.make_node(kind, list(inputs), [name], domain=domain, **attrs))
        return name

    def weight(key: str) -> Any:  # torch Linear stores (out, in)
        return w[key + ".weight"].T

    def bias(key: str) -> Any:
        return w[key + ".bias"]

    def layer_norm(x: str, key: str) -> str:
        return op(
            "LayerNormalization",
            x,
            const(key + ".w", w[key + ".weight"]),
            const(key + ".b", bias(key)),
            axis=-1,
            epsilon=eps,
        )

    def skip_norm(x: str, residual: str, norm: str, linear: str) -> str:
        """LayerNorm(x + linear's bias + residual), one fused kernel."""
        return op(
            "SkipLayerNormalization",
            x,
            residual,
            const(norm + ".w", w[norm + ".weight"]),
            const(norm + ".b", bias(norm)),
            const(linear + ".b", bias(linear)),
            ms=True,
            epsilon=eps,
        )

    x = op(
        "Add",
        op("Gather", const("word", w["embeddings.word_embeddings.weight"]), "input_ids"),
        op("Gather", const("position", w["embeddings.position_embeddings.weight"]), "positions"),
    )
    # Single-segment inputs: token_type_ids are all 0, so only row 0 is ever used.
    x = layer_norm(
        op("Add", x, const("type0", w["embeddings.token_type_embeddings.weight"][0])), "embeddings.LayerNorm"
    )
    keep = op("Cast", "attention_mask", to=TensorProto.INT32)
    for i in range(int(cfg["num_hidden_layers"])):
        p = f"encoder.layer.{i}."
        a = p + "attention.self."
        qkv_w = np.concatenate([weight(a + "query"), weight(a + "key"), weight(a + "value")], axis=1)
        qkv_b = np.concatenate([bias(a + "query"), bias(a + "key"), bias(a + "value")])
        ctx = op("Attention", x, const(a + "qkv.w", qkv_w), const(a + "qkv.b", qkv_b), keep, ms=True, num_heads=heads)
        out = p + "attention.output.dense"
        x = skip_norm(op("MatMul", ctx, const(out + ".w", weight(out))), x, p + "attention.output.LayerNorm", out)
        up, down = p + "intermediate.dense", p + "output.dense"
        hidden = op("BiasGelu", op("MatMul", x, const(up + ".w", weight(up))), const(up + ".b", bias(up)), ms=True)
        x = skip_norm(op("MatMul", hidden, const(down + ".w", weight(down))), x, p + "output.LayerNorm", down)
    # sentence-transformers Pooling: sum over real tokens / clamp(count, 1e-9); Normalize: eps 1e-12.
    mask3 = op("Unsqueeze", "attention_mask", const("axis2", [2], np.int64))
    axis1 = const("axis1", [1], np.int64)
    summed = op("ReduceSum", op("Mul", x, mask3), axis1, keepdims=0)
    count = op("Max", op("ReduceSum", "attention_mask", axis1, keepdims=1), const("eps9", 1e-9))
    pooled = op("Div", summed, count)
    norm = op("Max", op("ReduceL2", pooled, axis1, keepdims=1), const("eps12", 1e-12))
    op("Div", pooled, norm, out="embedding")

    model = helper.make_model(
        helper.make_graph(
            nodes,
            "all-minilm-l6-v2",
            [
                helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
                helper.make_tensor_value_info("positions", TensorProto.INT64, ["tokens"]),
                helper.make_tensor_value_info("attention_mask", TensorProto.FLOAT, ["batch", "tokens"]),
            ],
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        ),
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)],
    )
    # The weights go straight into the model's own graph: make_graph and make_model copy every
    # tensor they are given (~90 MB each time), which was most of this function's time.
    for name, value in initializers:
        tensor = model.graph.initializer.add()
        tensor.name = name
        tensor.data_type = helper.np_dtype_to_tensor_dtype(value.dtype)
        tensor.dims.extend(value.shape)
        tensor.raw_data = value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes()  # ONNX: little endian
    model.ir_version = 9  # what onnxruntime 1.17+ reads; onnx's newest default may be ahead of it
    data: bytes = model.SerializeToString()
    return data


class OnnxEncoder:
    """One onnxruntime session over `graph`; `threads` intra-op threads; safe to call from threads."""

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: onnxruntime's default, one per core
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: onnxruntime writes its own log lines to stderr
        self._session = ort.InferenceSession(graph(model_dir), options, providers=["CPUExecutionProvider"])

    def __call__(self, ids: npt.NDArray[np.int64], mask: F32) -> F32:
        positions = np.arange(ids.shape[1], dtype=np.int64)
        out: F32 = self._session.run(None, {"input_ids": ids, "positions": positions, "attention_mask": mask})[0]
        return out
