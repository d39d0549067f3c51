"""Which tokenizer a checkpoint or a folder holds: rebuild it from its state, or load it from its file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chatbot.tokenizers.base import Tokenizer
from chatbot.tokenizers.subword import FILENAME as SPM_FILE
from chatbot.tokenizers.subword import SentencePieceTokenizer
from chatbot.tokenizers.word import FILENAME as VOC_FILE
from chatbot.tokenizers.word import Voc


def tokenizer_from_state(state: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from `Tokenizer.state_dict()` (as stored in checkpoints)."""
    kind = state.get("kind")
    if kind == "word":
        return Voc.from_state_dict(state)
    if kind == "sentencepiece":
        return SentencePieceTokenizer.from_state_dict(state)
    raise ValueError(f"unknown tokenizer kind {kind!r}")


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load whichever tokenizer a prepared-dataset folder holds (see `Tokenizer.save`)."""
    directory = Path(directory)
    if (directory / VOC_FILE).exists():
        return Voc.load(directory)
    if (directory / SPM_FILE).exists():
        return SentencePieceTokenizer.load(directory)
    raise FileNotFoundError(f"no tokenizer (voc.json or spm.model) in {directory}")
