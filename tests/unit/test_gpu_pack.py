"""The GPU check's pack (bench/gpu_pack.py): the cut-down model that travels to the lent GPU machine
gives the check's sentences the same vectors as the full model, and is small enough to travel."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.gpu_pack import check_sentences, pack_model, token_ids, unpack_model
from services.inference._minilm import MiniLM, default_model_dir

CARRY_LIMIT = 64 << 20  # what may travel to the device machine, the repository included


def test_the_packed_model_embeds_the_check_sentences_exactly(tmp_path: Path) -> None:
    sentences = check_sentences()
    size = pack_model(default_model_dir(), tmp_path / "packed", sentences)
    assert size < CARRY_LIMIT - (12 << 20), f"{size} bytes leaves too little room for the repository and wheels"
    rebuilt = unpack_model(tmp_path / "packed", tmp_path / "rebuilt")
    full = MiniLM.load(engine="onnx").encode(sentences)
    assert np.array_equal(MiniLM.load(rebuilt, engine="onnx").encode(sentences), full)


def test_a_sentence_outside_the_pack_does_not_embed_alike(tmp_path: Path) -> None:
    """The pack keeps only the rows its sentences use: the check must not be run on other text."""
    pack_model(default_model_dir(), tmp_path / "packed", ["tide pools"])
    rebuilt = unpack_model(tmp_path / "packed", tmp_path / "rebuilt")
    other = ["zebras gallop across the savanna"]
    assert not set(token_ids(rebuilt, other)) <= set(token_ids(rebuilt, ["tide pools"]))
    cosine = float((MiniLM.load(rebuilt, engine="onnx").encode(other) * MiniLM.load(engine="onnx").encode(other)).sum())
    assert cosine < 0.99
