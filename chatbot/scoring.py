"""Teacher-forced scores of whole replies: log p(reply | query) for many (query, reply) pairs at once.

One function, `sequence_log_probs`, computes a batch of summed log-probabilities with the training
network (`Seq2Seq.forward`, the teacher-forced fast path). Everything that scores a known reply uses
it: perplexity (per token and per word), hits@1 of the report card, and the MMI reranking of
`chatbot.decode`: score(T | S) = log p(T|S) + lambda log p(S|T) + gamma |T| (Li et al. 2016, "A
Diversity-Promoting Objective Function for Neural Conversation Models", MMI-bidi), where p(S|T) is a
backward model trained by the same code on the swapped pairs (`chatbot prepare --swap`), plus
kappa rel(S, T) from the relevance model (`chatbot.relevance`) when one is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from chatbot.batching import pad
from chatbot.tokenizers import EOS_token, PAD_token, SOS_token


@torch.inference_mode()
def sequence_log_probs(
    model: torch.nn.Module, sources: Sequence[list[int]], targets: Sequence[list[int]], batch_size: int = 256
) -> torch.Tensor:
    """Summed log p(target | source) per pair: ids lists (each ending in EOS) -> (N,) float64, on the CPU.

    The pairs are scored in batches padded to their own longest source and target; padding never
    counts (the encoder packs its input, attention masks pad keys, and pad targets are left out).
    """
    if len(sources) != len(targets):
        raise ValueError("sources and targets must pair up")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = torch.empty(len(sources), dtype=torch.float64)
    for start in range(0, len(sources), batch_size):
        src, tgt = sources[start : start + batch_size], targets[start : start + batch_size]
        input_seq, lengths = pad(src)  # (B, Ts), (B,)
        target, _ = pad(tgt)  # (B, Tt)
        input_seq, target = input_seq.T.to(device), target.T.to(device)  # time-major (Ts, B), (Tt, B)
        decoder_input = torch.cat((torch.full_like(target[:1], SOS_token), target[:-1]))  # (Tt, B)
        logits = model(input_seq, lengths, decoder_input)  # (Tt, B, V)
        nll = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=PAD_token, reduction="none")
        out[start : start + len(src)] = -nll.view_as(target).sum(dim=0).double().cpu()  # (B,)
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
) -> torch.Tensor:
    """MMI-bidi plus relevance: log p(T|S) + lam * log p(S|T) + gamma * |T| + kappa * rel(S, T), with |T| in
    words and rel the relevance model's cosine / temperature; a missing model's term is left out."""
    score = forward_log_probs.clone()
    if backward_log_probs is not None and lam:
        score += lam * backward_log_probs
    if relevance is not None and kappa:
        score += kappa * relevance
    return score + gamma * lengths.to(score.dtype)
