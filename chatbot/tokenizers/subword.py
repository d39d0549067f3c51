"""SentencePiece subwords with the same special ids as `Voc`: pad 0, bos/SOS 1, eos 2, unk 3.

Trained on already-normalized text with SentencePiece's own normalization switched off ("identity"),
so `decode(encode(text)) == text` exactly; byte fallback spells any unseen character (an emoji, a rare
CJK character) as UTF-8 bytes instead of UNK, so there are no unknown words in practice.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from chatbot.errors import ChatbotError
from chatbot.files import atomic_write_bytes
from chatbot.tokenizers.base import EOS_token, PAD_token, SOS_token, UNK_token

FILENAME = "spm.model"
MODEL_TYPES = ("unigram", "bpe")


class SentencePieceTokenizer:
    """A trained SentencePiece model behind the `Tokenizer` protocol; its state is the model's bytes."""

    kind = "sentencepiece"
    pad_id = PAD_token
    sos_id = SOS_token
    eos_id = EOS_token
    unk_id = UNK_token

    def __init__(self, model_proto: bytes) -> None:
        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        ids = (self.sp.pad_id(), self.sp.bos_id(), self.sp.eos_id(), self.sp.unk_id())
        if ids != (PAD_token, SOS_token, EOS_token, UNK_token):
            raise ValueError(f"SentencePiece model has special ids pad/bos/eos/unk = {ids}, expected (0, 1, 2, 3)")

    @classmethod
    def train(
        cls,
        sentences: Iterable[str],
        vocab_size: int = 8000,
        model_type: str = "bpe",
        character_coverage: float = 0.9995,
        num_threads: int = 2,
        seed_sentences: int = 1_000_000,
    ) -> SentencePieceTokenizer:
        """Train on normalized sentences; `vocab_size` is raised to SentencePiece's floor for a tiny corpus."""
        if model_type not in MODEL_TYPES:
            raise ValueError(f"unknown SentencePiece model type {model_type!r} (choose from {', '.join(MODEL_TYPES)})")
        sentences = [s for s in sentences if s]
        # SentencePiece refuses a vocabulary smaller than its byte pieces + specials + the characters it
        # must keep; raise the size to that floor for a tiny corpus instead of failing.
        floor = 256 + 4 + 1 + len(set("".join(sentences)))
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            vocab_size=max(vocab_size, floor),
            model_type=model_type,
            character_coverage=character_coverage,
            pad_id=PAD_token,
            bos_id=SOS_token,
            eos_id=EOS_token,
            unk_id=UNK_token,
            normalization_rule_name="identity",  # the text is normalized already; keeps round trips exact
            byte_fallback=True,  # unseen characters become byte pieces, not UNK
            hard_vocab_limit=False,  # a small corpus gets a smaller vocabulary instead of an error
            input_sentence_size=seed_sentences,
            shuffle_input_sentence=True,
            num_threads=num_threads,
            minloglevel=2,  # SentencePiece logs to stderr; keep only errors
        )
        return cls(model.getvalue())

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Normalized text -> piece ids (no SOS/EOS added)."""
        return self.sp.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Piece ids -> text, dropping special and out-of-range ids."""
        size = len(self)
        return self.sp.decode(
            [int(i) for i in ids if PAD_token < int(i) < size and int(i) not in (SOS_token, EOS_token)]
        )

    def pieces(self, text: str) -> list[str]:
        """The pieces `encode` would produce, as strings (for display and tests)."""
        return self.sp.encode(text, out_type=str)

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the serialized model proto."""
        return {"kind": self.kind, "model": self.model_proto}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> SentencePieceTokenizer:
        """Rebuild from `state_dict()`."""
        if state.get("kind") != "sentencepiece" or not isinstance(state.get("model"), (bytes, bytearray)):
            raise ValueError("not a SentencePiece state (kind 'sentencepiece' with the model's bytes)")
        return cls(state["model"])

    def save(self, directory: str | Path) -> None:
        """Write `directory/spm.model` atomically."""
        atomic_write_bytes(Path(directory) / FILENAME, self.model_proto)

    @classmethod
    def load(cls, directory: str | Path) -> SentencePieceTokenizer:
        """Read `directory/spm.model`."""
        path = Path(directory) / FILENAME
        try:
            return cls(path.read_bytes())
        except (RuntimeError, ValueError) as err:  # SentencePiece raises RuntimeError on a garbled model
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ChatbotError(f"{path} is not a readable SentencePiece model ({reason})") from None
