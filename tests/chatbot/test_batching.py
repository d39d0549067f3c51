"""Padded time-major batches, shuffled epochs and per-rank shards."""

import torch

from chatbot.batching import encode_pairs, epoch_order, eval_order, iterate_batches, make_batch, num_batches
from chatbot.tokenizer import EOS_token, PAD_token, SOS_token
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
    assert eval_order(examples) == [1, 2, 0]
