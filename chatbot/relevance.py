"""A relevance model for reranking: a dual encoder that scores how well a reply fits a query.

Not in the tutorial. The seq2seq model's own scores rank the true reply of a test query first among 20
only a little more often than chance (the report card's hits@1), because a likelihood favours replies
that fit anything. A dual encoder is trained for exactly that ranking: the query and the reply are
each encoded (bidirectional GRU, max-pooled over time, projected, L2-normalized) and scored by their
cosine, and training pushes each query's own reply above the other replies of its batch (in-batch
negatives, a cross-entropy over the batch in both directions; Henderson et al. 2017, "Efficient
Natural Language Response Suggestion for Smart Reply").

    python scripts/train_relevance.py corpus/prepared/w20 --out runs/relevance --time-budget-minutes 15

The checkpoint is data, like the seq2seq's: {"format", "version", "kind": "relevance", "config",
"model", "tokenizer", "normalize", "step", "metrics"}, and "overlap", the tf-idf table of the training
split's lines (`chatbot.overlap`) that rerank's word-overlap term uses. `scripts/ship_relevance.py` packs
several such runs (the same data and shape, different seeds) into one file, "members" in place of
"model": a `RelevanceEnsemble`, whose score is the members' mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from chatbot.batching import pad
from chatbot.overlap import Overlap
from chatbot.tokenizers import PAD_token


@dataclass
class RelevanceConfig:
    """Shape of the dual encoder."""

    vocab_size: int = 7826
    hidden_size: int = 192
    temperature: float = 0.05  # cosines / temperature are the logits of the in-batch softmax

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RelevanceConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class SentenceEncoder(nn.Module):
    """ids (T, B) + lengths (B,) -> unit vectors (B, H): a bidirectional GRU, max-pooled over real positions."""

    def __init__(self, embedding: nn.Embedding, hidden_size: int):
        super().__init__()
        self.embedding = embedding
        self.gru = nn.GRU(hidden_size, hidden_size, bidirectional=True)
        self.out = nn.Linear(2 * hidden_size, hidden_size)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embedding(ids), lengths.cpu(), enforce_sorted=False)
        outputs, _ = pad_packed_sequence(self.gru(packed)[0], total_length=ids.size(0))  # (T, B, 2H)
        outputs = outputs.masked_fill((ids == PAD_token).unsqueeze(2), float("-inf"))
        return F.normalize(self.out(outputs.max(dim=0).values), dim=-1)  # (B, H)


class DualEncoder(nn.Module):
    """A query encoder and a reply encoder over one shared embedding; score = cosine / temperature."""

    def __init__(self, config: RelevanceConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=PAD_token)
        self.query_encoder = SentenceEncoder(self.embedding, config.hidden_size)
        self.reply_encoder = SentenceEncoder(self.embedding, config.hidden_size)

    def forward(
        self, query: torch.Tensor, query_lengths: torch.Tensor, reply: torch.Tensor, reply_lengths: torch.Tensor
    ) -> torch.Tensor:
        """query (Tq, B), reply (Tr, B) -> in-batch logits (B, B): row i scores query i against every reply."""
        q = self.query_encoder(query, query_lengths)  # (B, H)
        r = self.reply_encoder(reply, reply_lengths)  # (B, H)
        return q @ r.T / self.config.temperature


class RelevanceEnsemble(nn.Module):
    """Dual encoders trained alike from different seeds, over one tokenizer: the score is the mean of theirs
    (each one's errors are partly its own, so the mean ranks true replies first more often than any member)."""

    def __init__(self, members: list[DualEncoder]):
        super().__init__()
        self.members = nn.ModuleList(members)


def in_batch_loss(logits: torch.Tensor) -> torch.Tensor:
    """logits (B, B), the true pairs on the diagonal -> mean cross-entropy over rows and columns."""
    labels = torch.arange(logits.size(0), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


@torch.inference_mode()
def relevance_scores(
    model: DualEncoder | RelevanceEnsemble, queries: list[list[int]], replies: list[list[int]], batch_size: int = 512
) -> torch.Tensor:
    """cosine(query_i, reply_i) / temperature for each pair of id lists (an ensemble: the mean over its
    members) -> (N,) float64 on the CPU. Each distinct query and reply is encoded once (rerank scores many
    replies of one query; hits@1 each reply against 20 queries)."""
    members = ensemble_members(model)
    for member in members:
        member.eval()
    q_rows, q_distinct = _distinct(queries)
    r_rows, r_distinct = _distinct(replies)
    out = torch.zeros(len(queries), dtype=torch.float64)
    for member in members:
        q = encode_ids(member.query_encoder, q_distinct, batch_size)[q_rows]  # (N, H)
        r = encode_ids(member.reply_encoder, r_distinct, batch_size)[r_rows]  # (N, H)
        out += ((q * r).sum(dim=1) / member.config.temperature).double()
    return out / len(members)


def _distinct(id_lists: list[list[int]]) -> tuple[torch.Tensor, list[list[int]]]:
    """id lists -> (for each, the row of its first copy among the distinct ones (N,), the distinct lists)."""
    first: dict[tuple[int, ...], int] = {}
    rows = [first.setdefault(tuple(ids), len(first)) for ids in id_lists]
    return torch.tensor(rows, dtype=torch.long), [list(ids) for ids in first]


def encode_ids(encoder: SentenceEncoder, id_lists: list[list[int]], batch_size: int) -> torch.Tensor:
    """id lists (each ending in EOS) -> their unit vectors (N, H) on the CPU, `batch_size` at a time."""
    if not id_lists:
        return torch.zeros(0, encoder.out.out_features)
    device = encoder.embedding.weight.device
    chunks = []
    for start in range(0, len(id_lists), batch_size):
        ids, lengths = pad(id_lists[start : start + batch_size])  # (B, T), (B,)
        chunks.append(encoder(ids.T.to(device), lengths).cpu())  # (B, H), on the CPU like the scores
    return torch.cat(chunks)


def load_overlap(state: dict, path) -> Overlap | None:
    """The tf-idf table a relevance checkpoint carries (`chatbot.overlap`), or None for one written before it."""
    from chatbot.errors import ChatbotError

    if "overlap" not in state:
        return None
    try:
        return Overlap.from_state(state["overlap"], state["tokenizer"]["words"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ChatbotError(f"{path}: its overlap table does not match its tokenizer: {err}") from None


# The one embedding a dual encoder's state lists under three names; shipped as int8 rows (`int8_rows`).
EMBEDDING_NAMES = ("embedding.weight", "query_encoder.embedding.weight", "reply_encoder.embedding.weight")


def dual_encoder_from_state(config: dict, weights: dict) -> DualEncoder:
    """A dual encoder, in eval mode, from a checkpoint's "model_config" and weights (fp16 ones and int8 rows,
    `chatbot.checkpoint.int8_rows`, made fp32)."""
    from chatbot.checkpoint import from_int8_rows

    model = DualEncoder(RelevanceConfig.from_dict(config))

    def fp32(v):
        if isinstance(v, dict):
            return from_int8_rows(v)
        return v.float() if v.is_floating_point() else v

    model.load_state_dict({k: fp32(v) for k, v in weights.items()})
    return model.eval()


def ensemble_members(model: DualEncoder | RelevanceEnsemble) -> list[DualEncoder]:
    """The dual encoders a relevance model averages (one for a single model)."""
    return list(model.members) if isinstance(model, RelevanceEnsemble) else [model]


def load_relevance(path) -> tuple[DualEncoder | RelevanceEnsemble, dict]:
    """A relevance checkpoint -> (model in eval mode, its state). One written by scripts/train_relevance.py
    holds one dual encoder's "model"; one by scripts/ship_relevance.py may hold several of the same
    "model_config" ("members": a list of {"model", "step", "metrics"}), which load as a `RelevanceEnsemble`."""
    from chatbot.checkpoint import load_checkpoint
    from chatbot.errors import ChatbotError

    state = load_checkpoint(path)
    if state.get("kind") != "relevance":
        raise ChatbotError(f"{path} is not a relevance model (scripts/train_relevance.py writes those)")
    try:
        config = state["model_config"]
        if "members" in state:
            return RelevanceEnsemble([dual_encoder_from_state(config, m["model"]) for m in state["members"]]), state
        return dual_encoder_from_state(config, state["model"]), state
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ChatbotError(f"{path} does not match the relevance model code: {str(err).splitlines()[0]}") from None
