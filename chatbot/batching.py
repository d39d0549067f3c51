"""Pairs -> padded, time-major batches; shuffled epochs; one shard per DDP rank.

Sequences follow the tutorial's `indexesFromSentence`: source = ids(query) + [EOS],
target = ids(response) + [EOS]; the decoder reads SOS + target[:-1]. T = time, B = batch.
Unlike the tutorial, which builds all 4,000 batches up front with `random.choice` (sampling with
replacement), an epoch here is one shuffled pass over the pairs, so every pair is seen once per
epoch and a run can resume from (epoch, batch index) alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from chatbot.tokenizer import EOS_token, PAD_token, SOS_token, Tokenizer

Example = tuple[list[int], list[int]]  # (source ids, target ids), both ending in EOS


@dataclass
class Batch:
    """One padded batch. `lengths` stays on the CPU, as `pack_padded_sequence` requires."""

    input_seq: torch.Tensor  # (Ts, B) source ids, PAD 0
    lengths: torch.Tensor  # (B,) source lengths, CPU
    decoder_input: torch.Tensor  # (Tt, B) SOS + target[:-1]
    target: torch.Tensor  # (Tt, B) target ids, PAD 0
    mask: torch.Tensor  # (Tt, B) True on real target tokens
    n_tokens: int  # mask.sum(): target tokens the loss is averaged over

    def to(self, device: str | torch.device) -> Batch:
        """Move the tensors (not `lengths`) to `device`."""
        nb = torch.device(device).type == "cuda"  # pinned-free async copies are safe for CUDA only
        return Batch(
            self.input_seq.to(device, non_blocking=nb),
            self.lengths,
            self.decoder_input.to(device, non_blocking=nb),
            self.target.to(device, non_blocking=nb),
            self.mask.to(device, non_blocking=nb),
            self.n_tokens,
        )


def encode_pairs(pairs: Sequence[tuple[str, str]], tokenizer: Tokenizer) -> list[Example]:
    """Normalized (query, response) pairs -> (ids(query) + [EOS], ids(response) + [EOS])."""
    return [(tokenizer.encode(q) + [EOS_token], tokenizer.encode(r) + [EOS_token]) for q, r in pairs]


def pad(seqs: Sequence[list[int]]) -> torch.Tensor:
    """Lists of ids -> (T, B) tensor padded with PAD 0 (the tutorial's zeroPadding, without zip_longest)."""
    out = torch.full((max(len(s) for s in seqs), len(seqs)), PAD_token, dtype=torch.long)
    for b, s in enumerate(seqs):
        out[: len(s), b] = torch.tensor(s, dtype=torch.long)
    return out


def make_batch(examples: Sequence[Example]) -> Batch:
    """The tutorial's batch2TrainData, minus its sort by length (the encoder packs unsorted batches)."""
    input_seq = pad([src for src, _ in examples])  # (Ts, B)
    lengths = torch.tensor([len(src) for src, _ in examples], dtype=torch.long)
    target = pad([tgt for _, tgt in examples])  # (Tt, B)
    decoder_input = torch.cat([torch.full((1, target.size(1)), SOS_token, dtype=torch.long), target[:-1]])
    mask = target != PAD_token
    return Batch(input_seq, lengths, decoder_input, target, mask, int(mask.sum()))


def epoch_order(n: int, epoch: int, seed: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """This rank's shard of epoch `epoch`'s shuffle of range(n); the same on every run with `seed`.

    Every rank draws the same permutation and takes every world_size-th index, so the shards are
    disjoint, equal in size (the tail that does not divide evenly is dropped), and batch i of all
    ranks together is batch i of one process with world_size times the batch size.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    order = order[: n - n % world_size]
    return order[rank::world_size]


def num_batches(n_examples: int, batch_size: int, world_size: int = 1) -> int:
    """Batches per epoch for each rank (the last one may be short)."""
    per_rank = n_examples // world_size
    return -(-per_rank // batch_size)


def iterate_batches(
    examples: Sequence[Example], order: Sequence[int], batch_size: int, start: int = 0
) -> Iterator[Batch]:
    """Batches of `examples` in `order`, from batch index `start` on (for resuming mid-epoch)."""
    for i in range(start * batch_size, len(order), batch_size):
        yield make_batch([examples[j] for j in order[i : i + batch_size]])


def eval_order(examples: Sequence[Example], rank: int = 0, world_size: int = 1) -> list[int]:
    """Indices sorted by length (less padding, same loss), this rank's shard: for validation."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i][0]), len(examples[i][1])))
    return order[rank::world_size]
