"""Padded time-major batches, shuffled epochs and per-rank shards."""

import torch

from chatbot.batching import (
    bucket_order,
    encode_pairs,
    epoch_order,
    eval_order,
    gather_batch,
    iterate_batches,
    make_batch,
    num_batches,
    tensorize,
)
from chatbot.tokenizers import EOS_token, PAD_token, SOS_token
from tests.chatbot.tiny_data import tiny_dataset


def test_make_batch_shapes_padding_and_decoder_input():
    examples = [([5, 6, EOS_token], [7, EOS_token]), ([8, EOS_token], [9, 10, 11, EOS_token])]
    batch = make_batch(examples)
    assert batch.input_seq.shape == (3, 2) and batch.target.shape == (4, 2)
    assert batch.input_seq[:, 1].tolist() == [8, EOS_token, PAD_token]
    assert batch.lengths.tolist() == [3, 2] and batch.lengths.device.type == "cpu"
    assert batch.target[:, 0].tolist() == [7, EOS_token, PAD_token, PAD_token]
    # decoder input = SOS + target[:-1] (teacher forcing shifts the target right by one)
    assert batch.decoder_input[:, 1].tolist() == [SOS_token, 9, 10, 11]
    assert batch.mask[:, 0].tolist() == [True, True, False, False]
    assert batch.n_tokens == 2 + 4


def random_examples(n: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 10, (n, 2), generator=g).tolist()
    return [
        (
            torch.randint(4, 50, (a,), generator=g).tolist() + [EOS_token],
            torch.randint(4, 50, (b,), generator=g).tolist() + [EOS_token],
        )
        for a, b in lengths
    ]


def test_make_batch_sorts_by_source_length_and_keeps_pairs_together():
    examples = random_examples(40)
    batch = make_batch(examples)
    lengths = batch.lengths.tolist()
    assert lengths == sorted(lengths, reverse=True)  # the tutorial's order: longest source first
    columns = []
    for b in range(batch.input_seq.size(1)):
        src = batch.input_seq[: lengths[b], b].tolist()
        tgt = batch.target[batch.mask[:, b], b].tolist()
        assert (batch.input_seq[lengths[b] :, b] == PAD_token).all() and (
            batch.target[~batch.mask[:, b], b] == PAD_token
        ).all()
        columns.append((src, tgt))
    assert sorted(columns) == sorted(examples)  # every pair once, source and target still matched


def test_token_index_lists_the_real_target_positions_in_mask_order():
    batch = make_batch(random_examples(33, seed=1))
    Tt, B = batch.target.shape
    assert batch.token_index.dtype == torch.long and batch.n_tokens == int(batch.mask.sum()) == len(batch.token_index)
    assert batch.token_index.tolist() == [t * B + b for t in range(Tt) for b in range(B) if batch.mask[t, b]]
    assert (batch.target.flatten()[batch.token_index] == batch.target[batch.mask]).all()


def test_batches_sliced_from_pair_tensors_equal_batches_built_from_lists():
    examples = random_examples(50, seed=2)
    pairs = tensorize(examples)
    assert len(pairs) == 50 and pairs.source.shape == (50, max(len(s) for s, _ in examples))
    order = epoch_order(50, 0, seed=3)
    batches = zip(iterate_batches(pairs, order, 16), iterate_batches(examples, order, 16), strict=True)
    for i, (sliced, listed) in enumerate(batches):
        direct = make_batch([examples[j] for j in order[i * 16 : (i + 1) * 16]])
        for got in (sliced, listed, gather_batch(pairs, torch.tensor(order[i * 16 : (i + 1) * 16]))):
            for name in ("input_seq", "lengths", "decoder_input", "target", "mask", "token_index"):
                assert torch.equal(getattr(got, name), getattr(direct, name)), name
            assert got.n_tokens == direct.n_tokens


def test_encode_pairs_appends_eos():
    data = tiny_dataset(4, 1)
    (src, tgt), *_ = encode_pairs(data.train, data.tokenizer)
    q, r = data.train[0]
    assert src == data.tokenizer.encode(q) + [EOS_token]
    assert tgt == data.tokenizer.encode(r) + [EOS_token]


def test_epoch_order_is_a_seeded_shuffle():
    a, b = epoch_order(100, 0, seed=1), epoch_order(100, 0, seed=1)
    assert a == b and sorted(a) == list(range(100)) and a != list(range(100))
    assert epoch_order(100, 1, seed=1) != a  # a new shuffle each epoch
    assert epoch_order(100, 0, seed=2) != a


def test_shards_are_disjoint_and_batches_combine_to_one_process_batch():
    n, world, bs = 103, 2, 8
    shards = [epoch_order(n, 3, seed=0, rank=r, world_size=world) for r in range(world)]
    assert set(shards[0]).isdisjoint(shards[1])
    assert len(shards[0]) == len(shards[1]) == n // world
    one = epoch_order(n, 3, seed=0)[: n - n % world]
    # batch i of all ranks together == batch i of one process with world x the batch size
    for i in range(num_batches(n, bs, world)):
        together = shards[0][i * bs : (i + 1) * bs] + shards[1][i * bs : (i + 1) * bs]
        assert sorted(together) == sorted(one[i * world * bs : (i + 1) * world * bs])


def test_iterate_batches_covers_every_pair_once_and_resumes_mid_epoch():
    examples = [([i + 4, EOS_token], [i + 4, EOS_token]) for i in range(23)]
    order = epoch_order(len(examples), 0, seed=0)
    batches = list(iterate_batches(examples, order, 5))
    assert len(batches) == num_batches(23, 5) == 5
    seen = torch.cat([b.input_seq[0] for b in batches]).tolist()
    assert sorted(seen) == [i + 4 for i in range(23)]
    resumed = list(iterate_batches(examples, order, 5, start=3))
    assert [b.input_seq.tolist() for b in resumed] == [b.input_seq.tolist() for b in batches[3:]]


def test_eval_order_sorts_by_length():
    examples = [([4] * n + [EOS_token], [EOS_token]) for n in (3, 1, 2)]
    assert eval_order(tensorize(examples)) == [1, 2, 0]
    ties = [([4, EOS_token], [5] * n + [EOS_token]) for n in (2, 0, 1)]  # same source length: target decides
    assert eval_order(tensorize(ties)) == [1, 2, 0]
    assert eval_order(tensorize(ties), rank=1, world_size=2) == [2]


def test_bucket_order_is_a_seeded_permutation_of_length_sorted_full_batches():
    data = tiny_dataset(n_train=203)
    pairs = tensorize(encode_pairs(data.train, data.tokenizer))
    order = epoch_order(len(pairs), epoch=2, seed=5)
    bucketed = bucket_order(pairs, order, batch_size=8, bucket=5, epoch=2, seed=5)
    assert sorted(bucketed) == list(range(203))  # every pair once per epoch
    assert bucket_order(pairs, order, 8, 5, 2, 5) == bucketed  # a function of (epoch, seed): resumes exactly
    assert bucket_order(pairs, order, 8, 5, 3, 5) != bucketed
    batches = [bucketed[i : i + 8] for i in range(0, 203, 8)]
    assert [len(b) for b in batches] == [8] * 25 + [3]  # the one short batch last, so slicing stays aligned
    target = pairs.target_lengths.tolist()
    spread = sum(max(target[i] for i in b) - min(target[i] for i in b) for b in batches[:-1])
    plain = [order[i : i + 8] for i in range(0, 200, 8)]
    assert spread < sum(max(target[i] for i in b) - min(target[i] for i in b) for b in plain)  # less padding
    padded = sum(max(target[i] for i in b) * len(b) for b in batches)
    assert padded < sum(max(target[i] for i in b) * len(b) for b in [order[i : i + 8] for i in range(0, 203, 8)])
