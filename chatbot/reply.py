"""The reply function every front end uses: text in, tidy text out.

`Chatbot` holds a model with the tokenizer and normalization it was trained with (both read from the
checkpoint), guards the input's length, decodes with `chatbot.decode`, and tidies the detokenized
reply (contractions, spacing before punctuation, capitals). It never raises on any input text; the
tutorial's `evaluateInput` crashed with a KeyError on an unknown word and printed "Error" instead.
"""

from __future__ import annotations

import argparse
import functools
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from chatbot.cli import add_dataclass_flags, float_in, int_in, int_or_none
from chatbot.decode import (
    STRATEGIES,
    WHOLE_REPLY,
    DecodeSettings,
    decode,
    decode_fields,
    decode_stream,
    rerank,
    source_tensors,
)
from chatbot.errors import ChatbotError
from chatbot.model.protocol import DecodingModel
from chatbot.normalize import normalize_string
from chatbot.overlap import Overlap
from chatbot.tokenizers import EOS_token, Tokenizer, UNK_token

if TYPE_CHECKING:  # chatbot.retrieval imports chatbot.checkpoint, which exported bots never load
    from chatbot.retrieval import ReplyIndex

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
        backward: Chatbot | None = None,
        relevance: tuple | None = None,
        overlap: Overlap | None = None,
        index: ReplyIndex | None = None,
    ) -> None:
        self.model = model
        self.backward = backward  # a reply -> query model for rerank's log p(S|T), or None
        # (DualEncoder or RelevanceEnsemble, its tokenizer, its normalization) for rerank's relevance score, or None
        self.relevance = relevance
        self.overlap = overlap  # rerank's tf-idf word overlap (chatbot.overlap, from the relevance checkpoint), or None
        # rerank's retrieved candidates (chatbot.retrieval, from the relevance checkpoint): only the replies this
        # model's tokenizer spells without UNK, each as ids ending in EOS
        self.index, self.index_ids = None, []
        if index is not None:
            ids = [tokenizer.encode(t) for t in index.texts]
            keep = [i for i, r in enumerate(ids) if r and UNK_token not in r]
            self.index = index.subset(keep)
            self.index_ids = [ids[i] + [EOS_token] for i in keep]
        self.tokenizer = tokenizer
        self.normalize = normalize
        self.max_length = max_length  # the tutorial's MAX_LENGTH: default reply length and input guard
        # Queries longer than this many tokens keep their last ones (the question is usually at the end);
        # training saw queries shorter than max_length, so twice that is already far out of distribution.
        self.max_input_tokens = 2 * max_length
        self.description = description or f"{tokenizer.kind} tokenizer, {len(tokenizer)} tokens"
        self._fast = None  # the InferenceSeq2Seq of `runner`, once built

    @property
    def runner(self) -> DecodingModel:
        """What decoding runs on: a trained nn.Module through its faster `InferenceSeq2Seq` (same replies),
        exported programs as they are. The fast form is built on first use (so a backward model that only
        scores never copies its weights) and rebuilt whenever the model's weights have changed since."""
        if not isinstance(self.model, torch.nn.Module):
            return self.model
        from chatbot.model.fast import InferenceSeq2Seq  # here: a bot on exported programs never needs it

        if self._fast is None or self._fast.is_stale():
            self._fast = InferenceSeq2Seq(self.model)
        return self._fast

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | None = None,
        device: str | torch.device = "cpu",
        backward: str | Path | None = None,
        relevance: str | Path | None = None,
    ) -> Chatbot:
        """Load a checkpoint (default: the shipped model, chatbot/pretrained/model.pt) and, for rerank, a
        backward model and a relevance model (defaults with the shipped model: chatbot/pretrained/backward.pt
        and relevance.pt, when present)."""
        from chatbot.checkpoint import DEFAULT_BACKWARD, DEFAULT_CHECKPOINT, DEFAULT_RELEVANCE, load_model
        from chatbot.relevance import load_overlap, load_relevance
        from chatbot.retrieval import load_index
        from chatbot.tokenizers import tokenizer_from_state

        if path is None and not DEFAULT_CHECKPOINT.exists():
            raise ChatbotError(
                f"no shipped model at {DEFAULT_CHECKPOINT}; train one with `chatbot train` and pass --checkpoint PATH"
            )
        model, tokenizer, state = load_model(path, device)
        path = Path(DEFAULT_CHECKPOINT if path is None else path)
        c = model.config
        where = "shipped model" if path.resolve() == DEFAULT_CHECKPOINT.resolve() else str(path)
        step = f", step {state['step']}" if "step" in state else ""
        rank = f"output layer at rank {c.output_rank}, " if c.output_rank else ""
        description = (
            f"{where}{step}: {tokenizer.kind} tokenizer ({len(tokenizer):,} tokens), hidden {c.hidden_size}, "
            f"{c.encoder_n_layers}+{c.decoder_n_layers} GRU layers, {c.attn_model} attention, {rank}"
            f"normalize {state.get('normalize', 'tutorial')}"
        )
        shipped = path.resolve() == DEFAULT_CHECKPOINT.resolve()
        if backward is None and shipped and DEFAULT_BACKWARD.exists():
            backward = DEFAULT_BACKWARD
        if relevance is None and shipped and DEFAULT_RELEVANCE.exists():
            relevance = DEFAULT_RELEVANCE
        rel, overlap, index = None, None, None
        if relevance is not None:
            r_model, r_state = load_relevance(relevance)
            rel = (r_model.to(device), tokenizer_from_state(r_state["tokenizer"]), r_state.get("normalize", "tutorial"))
            overlap, index = load_overlap(r_state, relevance), load_index(r_state, relevance)
        back = None
        if backward is not None:
            b_model, b_tokenizer, b_state = load_model(backward, device)
            back = cls(b_model, b_tokenizer, b_state.get("normalize", "tutorial"), int(b_state.get("max_length", 10)))
        normalize, max_length = state.get("normalize", "tutorial"), int(state.get("max_length", 10))
        return cls(model, tokenizer, normalize, max_length, description, back, rel, overlap, index)

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
        src = self.query_ids(text)
        return decode(
            self.runner,
            src,
            settings.max_length or self.max_length,
            settings,
            functools.partial(self.score, text, settings),
            self.retrieved(text, settings),
        )

    def target_ids(self, text: str) -> list[int]:
        """Normalized reply text -> target ids ending in EOS (as training's targets)."""
        return self.tokenizer.encode(normalize_string(text, self.normalize)) + [EOS_token]

    def score(
        self,
        query: str,
        settings: DecodeSettings,
        replies: list[list[int]],
        known: list[float | None],
        encoded: tuple | None = None,
    ) -> list[float]:
        """rerank's score (a `decode.Scorer` once `query` and `settings` are bound) of candidate replies (ids):
        MMI-bidi plus relevance, see `chatbot.scoring`. `known`: each reply's log p(reply | query) where
        sampling already has it; None (a reply cut at max_length, without EOS yet, or a retrieved one) is
        computed here, EOS added, as the teacher-forced scorer scores every reply, from `encoded` (the
        query's encoding, as rerank has it) or from an encoding made here."""
        from chatbot.scoring import mmi_scores, sequence_log_probs, with_eos

        missing = [i for i, lp in enumerate(known) if lp is None]
        forward = torch.tensor([0.0 if lp is None else lp for lp in known], dtype=torch.float64)
        if missing:
            src = self.query_ids(query)
            if encoded is None:
                with torch.inference_mode():  # the query encoded once, on the fast path, for all its replies
                    encoded = self.runner.encode(*source_tensors(src, self.model.device))
            targets = [with_eos(replies[i]) for i in missing]
            forward[missing] = sequence_log_probs(self.model, [src] * len(missing), targets, encoded=encoded)
        texts = [self.tokenizer.decode(r) for r in replies]
        backward = None
        if self.backward is not None and settings.mmi_lambda:
            b = self.backward
            query_as_target = b.target_ids(query)
            backward = sequence_log_probs(b.model, [b.query_ids(t) for t in texts], [query_as_target] * len(texts))
        lengths = torch.tensor([len(t.split()) for t in texts])
        relevance = None
        if self.relevance is not None and settings.relevance_weight:
            relevance = self.relevance_scores([query] * len(texts), texts)
        overlap = None
        if self.overlap is not None and settings.overlap_weight:
            overlap = self.overlap_scores([query] * len(texts), texts)
        scores = mmi_scores(
            forward,
            backward,
            lengths,
            settings.mmi_lambda,
            settings.length_bonus,
            relevance,
            settings.relevance_weight,
            overlap,
            settings.overlap_weight,
        )
        return scores.tolist()

    def relevance_scores(self, queries: list[str], replies: list[str]) -> torch.Tensor:
        """The relevance model's score of each (query, reply) text pair -> (N,) float64."""
        from chatbot.relevance import relevance_scores

        model, tokenizer, normalize = self.relevance
        q = [self.relevance_query_ids(t) for t in queries]
        r = [tokenizer.encode(normalize_string(t, normalize)) + [EOS_token] for t in replies]
        return relevance_scores(model, q, r)

    def relevance_query_ids(self, text: str) -> list[int]:
        """A query as the relevance model reads it: its tokenizer's ids, the last ones kept, EOS added."""
        _, tokenizer, normalize = self.relevance
        return tokenizer.encode(normalize_string(text, normalize))[-(self.max_input_tokens - 1) :] + [EOS_token]

    def require_index(self) -> None:
        """Raise the one-line error for `retrieve` without a reply index (front ends call it before any work)."""
        if self.index is None or self.relevance is None:
            raise ChatbotError(
                "retrieve needs a relevance model with a reply index (scripts/ship_relevance.py --index); use --retrieve 0"
            )

    def retrieved(self, text: str, settings: DecodeSettings) -> list[list[int]]:
        """rerank's candidates besides its samples: the `settings.retrieve` indexed replies nearest to `text`
        by the relevance model (ids ending in EOS); none for other strategies or retrieve 0."""
        if settings.strategy != "rerank" or settings.retrieve == 0:
            return []
        self.require_index()
        from chatbot.relevance import ensemble_members

        encoder = ensemble_members(self.relevance[0])[self.index.member]
        nearest = self.index.nearest(encoder, self.relevance_query_ids(text), settings.retrieve)
        return [self.index_ids[i] for i in nearest]

    def overlap_scores(self, queries: list[str], replies: list[str]) -> torch.Tensor:
        """The tf-idf word overlap of each (query, reply) text pair, both normalized as the relevance model's
        text -> (N,) float64."""
        normalize = self.relevance[2] if self.relevance is not None else self.normalize
        return self.overlap.scores(
            [normalize_string(t[-MAX_INPUT_CHARS:], normalize) for t in queries],
            [normalize_string(t, normalize) for t in replies],
        )

    def rerank(self, text: str, settings: DecodeSettings) -> list[tuple[list[int], float]]:
        """Sample `settings.candidates` replies (and retrieve `settings.retrieve`), score each, best first: [(ids, score)]."""
        src = self.query_ids(text)
        max_length = settings.max_length or self.max_length
        scorer = functools.partial(self.score, text, settings)
        return rerank(self.runner, src, max_length, settings, scorer, self.retrieved(text, settings))

    def reply(self, text: str, settings: DecodeSettings | None = None) -> str:
        """Reply to `text` (any string); never raises on the text."""
        return tidy(self.tokenizer.decode(self.reply_ids(text, settings)), self.normalize)

    def reply_stream(self, text: str, settings: DecodeSettings | None = None) -> Iterator[str]:
        """Yield the reply as it grows; the last item equals `reply(text, settings)`.

        Greedy and sampling yield after every token. Beam search and rerank only know their best reply
        at the end, so they yield that reply word by word.
        """
        settings = settings or DecodeSettings()
        src = self.query_ids(text)
        max_length = settings.max_length or self.max_length
        shown = ""
        scorer = functools.partial(self.score, text, settings)
        for ids in decode_stream(self.runner, src, max_length, settings, scorer, self.retrieved(text, settings)):
            partial = tidy(self.tokenizer.decode(ids), self.normalize)
            if settings.strategy in WHOLE_REPLY:  # the whole reply at once: show it word by word
                words = partial.split(" ")
                yield from (" ".join(words[: i + 1]) for i in range(len(words)))
                return
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


# What each decoding flag accepts (checked by argparse; `DecodeSettings` checks the same for API callers).
DECODE_FLAG_TYPES = {
    "strategy": str,
    "beam_width": int_in(1, 1000),
    "temperature": float_in(0, low_open=True, allow_inf=True),
    "top_k": int_in(0),
    "top_p": float_in(0, 1, low_open=True),
    "length_penalty": float_in(-math.inf),
    "min_length": int_in(0),
    "no_repeat_ngram_size": int_in(0),
    "max_length": int_in(1, 10_000),
    "seed": int_or_none,
    "candidates": int_in(1, 1000),
    "retrieve": int_in(0, 1000),
    "mmi_lambda": float_in(-math.inf),
    "length_bonus": float_in(-math.inf),
    "relevance_weight": float_in(-math.inf),
    "overlap_weight": float_in(-math.inf),
}


def add_decode_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """Add one --flag per `DecodeSettings` field (but `exclude`), defaulted and documented by the dataclass."""
    helps = {f.name: f.metadata["help"] for f in decode_fields() if f.name not in exclude}
    add_dataclass_flags(parser, DecodeSettings, helps, DECODE_FLAG_TYPES, "decoding", {"strategy": STRATEGIES})


def settings_from_args(args: argparse.Namespace) -> DecodeSettings:
    """The `DecodeSettings` given by the flags of `add_decode_arguments` (dataclass defaults for excluded ones)."""
    return DecodeSettings(**{f.name: getattr(args, f.name) for f in decode_fields() if hasattr(args, f.name)})
