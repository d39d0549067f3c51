"""`Voc`: the tutorial's word vocabulary, plus an UNK token and a trim that keeps true counts.

Fixes two tutorial bugs: an unknown word raised a KeyError (here it encodes to UNK_token), and
`trim` re-added every kept word with count 1, so the counts were wrong after trimming (here they are kept).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from chatbot.errors import ChatbotError
from chatbot.files import atomic_write_bytes
from chatbot.tokenizers.base import EOS_token, PAD_token, SOS_token, UNK_token

SPECIALS = {PAD_token: "PAD", SOS_token: "SOS", EOS_token: "EOS", UNK_token: "UNK"}
FILENAME = "voc.json"


class Voc:
    """Word <-> index with counts; index 0..3 are PAD, SOS, EOS, UNK, words start at 4."""

    kind = "word"
    pad_id = PAD_token
    sos_id = SOS_token
    eos_id = EOS_token
    unk_id = UNK_token

    def __init__(self, name: str = "voc") -> None:
        self.name = name
        self.trimmed = False
        self.word2index: dict[str, int] = {}
        self.word2count: dict[str, int] = {}
        self.index2word: dict[int, str] = dict(SPECIALS)
        self.num_words = len(SPECIALS)  # the tutorial starts at 3 (no UNK)

    # --- the tutorial's API -------------------------------------------------------------------
    def addSentence(self, sentence: str) -> None:
        """Count every space-separated word of a normalized sentence."""
        for word in sentence.split(" "):
            self.addWord(word)

    def addWord(self, word: str, count: int = 1) -> None:
        """Add `word` (or raise its count by `count`)."""
        if word not in self.word2index:
            self.word2index[word] = self.num_words
            self.word2count[word] = count
            self.index2word[self.num_words] = word
            self.num_words += 1
        else:
            self.word2count[word] += count

    def trim(self, min_count: int) -> list[str]:
        """Keep words seen at least `min_count` times, re-indexed in first-seen order; returns the kept words."""
        if self.trimmed:
            return list(self.word2index)
        self.trimmed = True
        keep_words = [w for w, c in self.word2count.items() if c >= min_count]
        counts = self.word2count
        self.word2index, self.word2count = {}, {}
        self.index2word, self.num_words = dict(SPECIALS), len(SPECIALS)
        for word in keep_words:
            self.addWord(word, counts[word])  # the tutorial called addWord(word): every count became 1
        return keep_words

    # --- the Tokenizer protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        return self.num_words

    def encode(self, text: str) -> list[int]:
        """Normalized text -> word ids; unknown words -> UNK_token (no SOS/EOS added)."""
        return [self.word2index.get(word, UNK_token) for word in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        """Word ids -> text, dropping PAD/SOS/EOS (UNK shows as "UNK"); ids out of range are skipped."""
        words = []
        for i in ids:
            i = int(i)
            if i in (PAD_token, SOS_token, EOS_token) or i not in self.index2word:
                continue
            words.append(self.index2word[i])
        return " ".join(words)

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the words in index order (from 4 on) and their counts."""
        words = [self.index2word[i] for i in range(len(SPECIALS), self.num_words)]
        return {
            "kind": self.kind,
            "name": self.name,
            "trimmed": self.trimmed,
            "words": words,
            "counts": [self.word2count[w] for w in words],
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Voc:
        """Rebuild a `Voc` from `state_dict()`."""
        if not isinstance(state, dict) or state.get("kind") != "word":
            raise ValueError("not a word-vocabulary state (a dict with kind 'word')")
        words, counts = state.get("words"), state.get("counts")
        if not isinstance(words, list) or not isinstance(counts, list) or len(words) != len(counts):
            raise ValueError("not a word-vocabulary state (lists of words and counts of the same length)")
        if not all(isinstance(w, str) and w for w in words) or len(set(words)) != len(words):
            raise ValueError("the vocabulary's words must be distinct non-empty strings")
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ValueError("the vocabulary's counts must be integers >= 0")
        voc = cls(state.get("name", "voc"))
        for word, count in zip(state["words"], state["counts"], strict=True):
            voc.addWord(word, int(count))
        voc.trimmed = bool(state.get("trimmed", False))
        return voc

    def save(self, directory: str | Path) -> None:
        """Write `directory/voc.json` atomically."""
        data = json.dumps(self.state_dict(), ensure_ascii=False).encode("utf-8")
        atomic_write_bytes(Path(directory) / FILENAME, data)

    @classmethod
    def load(cls, directory: str | Path) -> Voc:
        """Read `directory/voc.json`."""
        path = Path(directory) / FILENAME
        try:
            return cls.from_state_dict(json.loads(path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, ValueError) as err:  # json.JSONDecodeError is a ValueError
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ChatbotError(f"{path} is not a readable vocabulary ({reason})") from None

    @classmethod
    def from_sentences(cls, sentences: Iterable[str], name: str = "voc") -> Voc:
        """Count every word of `sentences` (normalized text)."""
        voc = cls(name)
        for sentence in sentences:
            voc.addSentence(sentence)
        return voc
