"""The reply function every front end uses: text in, tidy text out.

`Chatbot` holds a model with the tokenizer and normalization it was trained with (both read from the
checkpoint), guards the input's length, decodes with `chatbot.decode`, and tidies the detokenized
reply (contractions, spacing before punctuation, capitals). It never raises on any input text; the
tutorial's `evaluateInput` crashed with a KeyError on an unknown word and printed "Error" instead.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import torch

from chatbot.decode import DecodeSettings, decode, decode_fields, generate_tokens
from chatbot.errors import ChatbotError
from chatbot.normalize import normalize_string
from chatbot.tokenizer import EOS_token, Tokenizer

__all__ = ["Chatbot", "DecodeSettings", "add_decode_arguments", "settings_from_args", "tidy"]

# Only the last this-many characters are read (the query keeps its last tokens), so pasting a book costs nothing.
MAX_INPUT_CHARS = 2000


class Chatbot:
    """A model, its tokenizer and normalization, ready to reply. Build it with `from_checkpoint`."""

    def __init__(
        self,
        model,
        tokenizer: Tokenizer,
        normalize: str = "tutorial",
        max_length: int = 10,
        description: str = "",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.normalize = normalize
        self.max_length = max_length  # the tutorial's MAX_LENGTH: default reply length and input guard
        # Queries longer than this many tokens keep their last ones (the question is usually at the end);
        # training saw queries shorter than max_length, so twice that is already far out of distribution.
        self.max_input_tokens = 2 * max_length
        self.description = description or f"{tokenizer.kind} tokenizer, {len(tokenizer)} tokens"

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str | torch.device = "cpu") -> Chatbot:
        """Load a checkpoint (default: the shipped model, chatbot/pretrained/model.pt)."""
        from chatbot.checkpoint import DEFAULT_CHECKPOINT, load_model

        if path is None and not DEFAULT_CHECKPOINT.exists():
            raise ChatbotError(
                f"no shipped model at {DEFAULT_CHECKPOINT}; train one with `chatbot train` and pass --checkpoint PATH"
            )
        model, tokenizer, state = load_model(path, device)
        path = Path(DEFAULT_CHECKPOINT if path is None else path)
        c = model.config
        where = "shipped model" if path.resolve() == DEFAULT_CHECKPOINT.resolve() else str(path)
        step = f", step {state['step']}" if "step" in state else ""
        description = (
            f"{where}{step}: {tokenizer.kind} tokenizer ({len(tokenizer):,} tokens), hidden {c.hidden_size}, "
            f"{c.encoder_n_layers}+{c.decoder_n_layers} GRU layers, {c.attn_model} attention, "
            f"normalize {state.get('normalize', 'tutorial')}"
        )
        return cls(model, tokenizer, state.get("normalize", "tutorial"), int(state.get("max_length", 10)), description)

    def query_ids(self, text: str) -> list[int]:
        """Raw text -> source ids ending in EOS, as in training (normalized, tokenized, length-guarded)."""
        text = "" if text is None else str(text)
        # Lone surrogates (from broken clipboards or JSON) cannot be encoded to UTF-8; replace them.
        text = text[-MAX_INPUT_CHARS:].encode("utf-8", "replace").decode("utf-8")
        ids = self.tokenizer.encode(normalize_string(text, self.normalize))
        return ids[-(self.max_input_tokens - 1) :] + [EOS_token]

    def reply_ids(self, text: str, settings: DecodeSettings | None = None) -> list[int]:
        """The reply's ids (EOS included if produced)."""
        settings = settings or DecodeSettings()
        return decode(self.model, self.query_ids(text), settings.max_length or self.max_length, settings)

    def reply(self, text: str, settings: DecodeSettings | None = None) -> str:
        """Reply to `text` (any string); never raises on the text."""
        return tidy(self.tokenizer.decode(self.reply_ids(text, settings)), self.normalize)

    def reply_stream(self, text: str, settings: DecodeSettings | None = None) -> Iterator[str]:
        """Yield the reply as it grows; the last item equals `reply(text, settings)`.

        Greedy and sampling yield after every token. Beam search only knows its best reply at the
        end, so it yields that reply word by word.
        """
        settings = settings or DecodeSettings()
        max_length = settings.max_length or self.max_length
        shown = ""
        if settings.strategy == "beam":
            words = self.reply(text, settings).split(" ")
            for i in range(len(words)):
                yield " ".join(words[: i + 1])
            return
        ids: list[int] = []
        for token in generate_tokens(self.model, self.query_ids(text), max_length, settings):
            ids.append(token)
            partial = tidy(self.tokenizer.decode(ids), self.normalize)
            if partial != shown:
                shown = partial
                yield partial


# The tutorial's normalization turns "don't" into "don t"; these tails are what is left of contractions.
_CONTRACTION = re.compile(r"\b(\w+) (s|t|m|re|ve|ll|d)\b")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:%)\]}。，！？、；：])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[{])\s+")
_APOSTROPHE_SPACES = re.compile(r"(\w) ' (\w)")
_SENTENCE_START = re.compile(r"(^|[.!?。！？]\s+)(\w)")
_LONE_I = re.compile(r"\bi\b")


def tidy(text: str, normalize: str = "tutorial") -> str:
    """Detokenized, normalized text -> a readable reply: "i don t know ." -> "I don't know."."""
    text = " ".join(text.split())
    if normalize == "tutorial":
        text = _CONTRACTION.sub(r"\1'\2", text)
    text = _APOSTROPHE_SPACES.sub(r"\1'\2", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _SPACE_AFTER_OPEN.sub(r"\1", text)
    text = _LONE_I.sub("I", text)
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def add_decode_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """Add one --flag per `DecodeSettings` field (but `exclude`), defaulted and documented by the dataclass."""
    group = parser.add_argument_group("decoding")
    for f in decode_fields():
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = {"strategy": str, "temperature": float, "top_p": float, "length_penalty": float}.get(f.name, int)
        kwargs = {"choices": ["greedy", "beam", "sample"]} if f.name == "strategy" else {}
        group.add_argument(flag, type=kind, default=f.default, help=f.metadata["help"], **kwargs)


def settings_from_args(args: argparse.Namespace) -> DecodeSettings:
    """The `DecodeSettings` given by the flags of `add_decode_arguments` (dataclass defaults for excluded ones)."""
    return DecodeSettings(**{f.name: getattr(args, f.name) for f in decode_fields() if hasattr(args, f.name)})
