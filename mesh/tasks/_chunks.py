"""How a long document is cut into chunks: the same rule for the worker pipeline, the
inference service's stream and the Triton chunk model, so their partial results line up."""

from __future__ import annotations

DEFAULT_CHUNK_WORDS = 128


def split_words(text: str, size: int = 0) -> list[str]:
    """Consecutive pieces of at most `size` whitespace-separated words (0: the default)."""
    size = size or DEFAULT_CHUNK_WORDS
    words = text.split()
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
