"""A tiny, learnable prepared dataset for training tests: each response is its query reversed."""

from __future__ import annotations

import json
import random
from pathlib import Path

from chatbot.prepare import PreparedDataset
from chatbot.tokenizers import Voc

WORDS = [f"w{i}" for i in range(12)]


def tiny_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` (query, reversed query) pairs of 1 to 6 words."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(1, 6))
        pairs.append((" ".join(words), " ".join(reversed(words))))
    return pairs


def tiny_dataset(n_train: int = 64, n_valid: int = 16) -> PreparedDataset:
    """An in-memory prepared dataset with a word `Voc`."""
    voc = Voc("tiny")
    for word in WORDS:
        voc.addWord(word)
    stats = {"normalize": "tutorial", "tokenizer": "word", "max_length": 10}
    return PreparedDataset(tiny_pairs(n_train, 0), tiny_pairs(n_valid, 1), tiny_pairs(n_valid, 2), voc, stats)


def write_prepared(directory: Path, n_train: int = 64, n_valid: int = 16) -> Path:
    """The same dataset written as a prepared-dataset folder."""
    data = tiny_dataset(n_train, n_valid)
    directory.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        lines = "".join(f"{q}\t{r}\n" for q, r in getattr(data, split))
        (directory / f"{split}.tsv").write_text(lines, encoding="utf-8")
    data.tokenizer.save(directory)
    (directory / "stats.json").write_text(json.dumps(data.stats), encoding="utf-8")
    return directory
