"""Teacher-forced scores of whole replies: log p(reply | query) for many (query, reply) pairs at once.

One function, `batch_nll`, computes each pair's summed NLL with the training network (`Seq2Seq.forward`,
the teacher-forced fast path). Everything that scores a known reply uses it: training's validation
loss, the report card's perplexity (per token and per word) and hits@1 (`sequence_log_probs`), and the MMI reranking of
`chatbot.decode`: score(T | S) = log p(T|S) + lambda log p(S|T) + gamma |T| (Li et al. 2016, "A
Diversity-Promoting Objective Function for Neural Conversation Models", MMI-bidi), where p(S|T) is a
backward model trained by the same code on the swapped pairs (`chatbot prepare --swap`), plus
kappa rel(S, T) from the relevance model (`chatbot.relevance`) and mu overlap(S, T), the tf-idf cosine of
`chatbot.overlap`, when one is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from chatbot.batching import Batch, gather_batch, tensorize
from chatbot.model.network import select_positions
from chatbot.tokenizers import EOS_token


def batch_nll(model: torch.nn.Module, batch: Batch, encoded: tuple | None = None) -> torch.Tensor:
    """Teacher-forced summed NLL of each pair of a (device) `Batch` -> (B,) float64, in the batch's column
    order. The output layer runs on real target tokens only; padding never counts. `encoded`: the one
    query's encoding when every pair has the same query (`Seq2Seq.forward`)."""
    logits = model(batch.input_seq, batch.lengths, batch.decoder_input, batch.token_index, encoded=encoded)  # (N, V)
    target = select_positions(batch.target, batch.token_index)  # (N,)
    nll = F.cross_entropy(logits.float(), target, reduction="none").double()  # (N,)
    column = batch.token_index % batch.target.size(1)  # (N,): the pair each token belongs to
    return torch.zeros(batch.target.size(1), dtype=torch.float64, device=nll.device).index_add_(0, column, nll)


@torch.inference_mode()
def sequence_log_probs(
    model: torch.nn.Module,
    sources: Sequence[list[int]],
    targets: Sequence[list[int]],
    batch_size: int = 256,
    encoded: tuple | None = None,
) -> torch.Tensor:
    """Summed log p(target | source) per pair: ids lists (each ending in EOS) -> (N,) float64, on the CPU.
    `encoded`: when every source is the same query, its encoding (batch 1; any form's `encode`), used
    for every pair instead of encoding each copy."""
    if len(sources) != len(targets):
        raise ValueError("sources and targets must pair up")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = torch.empty(len(sources), dtype=torch.float64)
    pairs = tensorize(list(zip(sources, targets, strict=True)))
    for start in range(0, len(sources), batch_size):
        batch = gather_batch(pairs, torch.arange(start, min(start + batch_size, len(sources))))
        out[batch.pairs] = -batch_nll(model, batch.to(device), encoded).cpu()
    model.train(was_training)
    return out


def words(text: str) -> int:
    """Word-level events of a reply for perplexity per word: its words plus the end of the reply (EOS)."""
    return len(text.split()) + 1


def with_eos(ids: list[int]) -> list[int]:
    """ids, ending in EOS (added unless already there)."""
    return ids if ids and ids[-1] == EOS_token else ids + [EOS_token]


def mmi_scores(
    forward_log_probs: torch.Tensor,
    backward_log_probs: torch.Tensor | None,
    lengths: torch.Tensor,
    lam: float,
    gamma: float,
    relevance: torch.Tensor | None = None,
    kappa: float = 0.0,
    overlap: torch.Tensor | None = None,
    mu: float = 0.0,
) -> torch.Tensor:
    """MMI-bidi plus relevance: log p(T|S) + lam * log p(S|T) + gamma * |T| + kappa * rel(S, T) + mu * overlap(S, T),
    with |T| in words, rel the relevance model's cosine / temperature and overlap the tf-idf cosine of
    `chatbot.overlap`; a missing model's term is left out."""
    score = forward_log_probs.clone()
    if backward_log_probs is not None and lam:
        score += lam * backward_log_probs
    if relevance is not None and kappa:
        score += kappa * relevance
    if overlap is not None and mu:
        score += mu * overlap
    return score + gamma * lengths.to(score.dtype)
