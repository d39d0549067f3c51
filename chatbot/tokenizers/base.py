"""The one small interface both tokenizers implement (the word `Voc` and SentencePiece subwords), and the special ids.

Special-token ids are shared so a model never depends on which tokenizer made its data:
PAD 0, SOS 1, EOS 2 as in the tutorial, plus UNK 3 (the tutorial has none, so an unknown word
crashed it with a KeyError).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

PAD_token = 0  # used for padding short sentences
SOS_token = 1  # start-of-sentence token
EOS_token = 2  # end-of-sentence token
UNK_token = 3  # unknown word (not in the tutorial)


@runtime_checkable
class Tokenizer(Protocol):
    """Text (already normalized) <-> token ids. Ids never include SOS/EOS unless a caller adds them."""

    kind: str  # "word" or "sentencepiece"
    pad_id: int
    sos_id: int
    eos_id: int
    unk_id: int

    def __len__(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def state_dict(self) -> dict[str, Any]:
        """Plain data only (str, int, float, list, dict, tensors) so checkpoints load with weights_only."""
        ...

    def save(self, directory: str | Path) -> None: ...
