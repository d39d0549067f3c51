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
from itertools import chain

import torch

from chatbot.tokenizers import EOS_token, PAD_token, SOS_token, Tokenizer

Example = tuple[list[int], list[int]]  # (source ids, target ids), both ending in EOS


@dataclass
class Batch:
    """One padded batch, sorted by source length (longest first). `lengths` stays on the CPU, as
    `pack_padded_sequence` requires."""

    input_seq: torch.Tensor  # (Ts, B) source ids, PAD 0
    lengths: torch.Tensor  # (B,) source lengths, CPU, non-increasing
    decoder_input: torch.Tensor  # (Tt, B) SOS + target[:-1]
    target: torch.Tensor  # (Tt, B) target ids, PAD 0
    mask: torch.Tensor  # (Tt, B) True on real target tokens
    n_tokens: int  # mask.sum(): target tokens the loss is averaged over
    # (N,) flat positions t * B + b of mask's True entries, found on the CPU: gathering with them
    # (instead of indexing with `mask`) never makes a GPU wait for the host to learn N.
    token_index: torch.Tensor
    pairs: torch.Tensor | None = None  # (B,) CPU: which of the gathered pairs each column holds

    def to(self, device: str | torch.device) -> Batch:
        """Move the tensors (not `lengths`) to `device`; to a GPU from pinned memory, without waiting."""
        cuda = torch.device(device).type == "cuda"

        def move(t: torch.Tensor) -> torch.Tensor:
            # A copy from pinned memory runs in the background; from pageable memory the host would wait.
            return t.pin_memory().to(device, non_blocking=True) if cuda else t.to(device)

        return Batch(
            move(self.input_seq),
            self.lengths,
            move(self.decoder_input),
            move(self.target),
            move(self.mask),
            self.n_tokens,
            move(self.token_index),
            self.pairs,
        )


@dataclass
class PairTensors:
    """Every pair padded once, so that building a batch is indexing, not a Python loop over pairs.

    A Python loop over a big batch's pairs takes longer than a GPU training step of that size should.
    """

    source: torch.Tensor  # (N, Ls) source ids, PAD 0
    source_lengths: torch.Tensor  # (N,)
    target: torch.Tensor  # (N, Lt) target ids, PAD 0
    target_lengths: torch.Tensor  # (N,)

    def __len__(self) -> int:
        return self.source.size(0)


def encode_pairs(pairs: Sequence[tuple[str, str]], tokenizer: Tokenizer) -> list[Example]:
    """Normalized (query, response) pairs -> (ids(query) + [EOS], ids(response) + [EOS])."""
    return [(tokenizer.encode(q) + [EOS_token], tokenizer.encode(r) + [EOS_token]) for q, r in pairs]


def pad(seqs: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists of ids -> (N, L) tensor padded with PAD 0 (the tutorial's zeroPadding, batch-major), lengths (N,)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), PAD_token, dtype=torch.long)
    # Boolean-mask assignment fills row by row, in the order of the flattened sequences.
    out[torch.arange(out.size(1)) < lengths.unsqueeze(1)] = torch.tensor(
        list(chain.from_iterable(seqs)), dtype=torch.long
    )
    return out, lengths


def tensorize(examples: Sequence[Example]) -> PairTensors:
    """(source ids, target ids) pairs -> `PairTensors`."""
    source, source_lengths = pad([src for src, _ in examples])
    target, target_lengths = pad([tgt for _, tgt in examples])
    return PairTensors(source, source_lengths, target, target_lengths)


def gather_batch(pairs: PairTensors, index: torch.Tensor) -> Batch:
    """Pairs `index` (B,) -> a `Batch`, sorted longest source first (as the tutorial's batch2TrainData),
    which lets the encoder pack it without a sort on the device."""
    index = index[torch.argsort(pairs.source_lengths[index], descending=True, stable=True)]
    lengths = pairs.source_lengths[index]  # (B,)
    target_lengths = pairs.target_lengths[index]  # (B,)
    input_seq = pairs.source[index, : int(lengths[0])].T.contiguous()  # (Ts, B)
    target = pairs.target[index, : int(target_lengths.max())].T.contiguous()  # (Tt, B)
    decoder_input = torch.cat([torch.full((1, target.size(1)), SOS_token, dtype=torch.long), target[:-1]])
    mask = torch.arange(target.size(0)).unsqueeze(1) < target_lengths  # (Tt, B)
    token_index = mask.flatten().nonzero().squeeze(1)  # (N,)
    return Batch(input_seq, lengths, decoder_input, target, mask, token_index.numel(), token_index, index)


def make_batch(examples: Sequence[Example]) -> Batch:
    """The tutorial's batch2TrainData: pad, sort by source length, build decoder input and mask."""
    if not examples:
        raise ValueError("cannot make a batch of no examples")
    return gather_batch(tensorize(examples), torch.arange(len(examples)))


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
    examples: PairTensors | Sequence[Example], order: Sequence[int], batch_size: int, start: int = 0
) -> Iterator[Batch]:
    """Batches of `examples` in `order`, from batch index `start` on (for resuming mid-epoch)."""
    pairs = examples if isinstance(examples, PairTensors) else tensorize(examples)
    order = torch.as_tensor(order, dtype=torch.long)
    for i in range(start * batch_size, len(order), batch_size):
        yield gather_batch(pairs, order[i : i + batch_size])


def eval_order(pairs: PairTensors, rank: int = 0, world_size: int = 1) -> list[int]:
    """Indices sorted by (source, target) length (less padding, same loss), this rank's shard: for validation."""
    lengths = list(zip(pairs.source_lengths.tolist(), pairs.target_lengths.tolist(), strict=True))
    order = sorted(range(len(pairs)), key=lengths.__getitem__)
    return order[rank::world_size]


def bucket_order(
    pairs: PairTensors, order: list[int], batch_size: int, bucket: int, epoch: int, seed: int
) -> list[int]:
    """Length bucketing: `order` cut into runs of `bucket` batches, each run sorted by (target, source)
    length and cut into batches, then the full batches shuffled; the one short batch (if any) stays last.

    A batch then holds pairs of similar length, so the decoder pads less, while every pair is still
    seen once per epoch and the order is a function of (epoch, seed) alone (resuming stays exact).
    """
    key = (pairs.target_lengths * (pairs.source_lengths.max() + 1) + pairs.source_lengths).tolist()
    run = batch_size * bucket
    batches = []
    for start in range(0, len(order), run):
        chunk = sorted(order[start : start + run], key=key.__getitem__)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    short = [b for b in batches if len(b) < batch_size]
    full = [b for b in batches if len(b) == batch_size]
    g = torch.Generator().manual_seed(seed * 100_003 + epoch + 7)
    shuffled = [full[i] for i in torch.randperm(len(full), generator=g).tolist()]
    return [i for b in shuffled + short for i in b]
