"""Shapes and invariants of the seq2seq network."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from chatbot.batching import make_batch as make_train_batch
from chatbot.model.network import FactorizedLinear, ModelConfig, Seq2Seq, factorized, select_positions
from chatbot.tokenizers import EOS_token, PAD_token, SOS_token


def make_batch(vocab: int, lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    seq = torch.full((T, len(lengths)), PAD_token, dtype=torch.long)
    for b, n in enumerate(lengths):
        seq[: n - 1, b] = torch.randint(4, vocab, (n - 1,), generator=g)
        seq[n - 1, b] = EOS_token
    return seq, torch.tensor(lengths)


@pytest.mark.parametrize("attn", ["dot", "general", "concat"])
def test_shapes_and_attention_rows(attn):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=30, hidden_size=16, encoder_n_layers=2, decoder_n_layers=2, attn_model=attn)
    model = Seq2Seq(cfg).eval()
    src, lengths = make_batch(30, [5, 2, 4])
    enc_out, hidden, mask = model.encode(src, lengths)
    assert enc_out.shape == (5, 3, 16)
    assert hidden.shape == (2, 3, 16)
    assert mask.shape == (3, 5)
    dec_in = torch.full((4, 3), SOS_token)
    logits, new_hidden, weights = model.decoder(dec_in, hidden, enc_out, mask)
    assert logits.shape == (4, 3, 30)
    assert new_hidden.shape == (2, 3, 16)
    assert weights.shape == (3, 4, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    # padded source positions get exactly zero attention
    assert (weights[1, :, 2:] == 0).all()
    assert (weights[2, :, 4:] == 0).all()
    assert (weights[0] > 0).all()


def test_concat_vector_is_initialised():
    cfg = ModelConfig(vocab_size=10, hidden_size=64, attn_model="concat")
    v = Seq2Seq(cfg).decoder.attn.v
    assert torch.isfinite(v).all() and v.abs().max() <= 1 / 8


def teacher_forced_step_by_step(model: Seq2Seq, batch) -> torch.Tensor:
    """Reference: the tutorial's decoder loop, one time step per call, teacher-forced; mean NLL per token."""
    encoder_outputs, hidden, src_mask = model.encode(batch.input_seq, batch.lengths)
    total = torch.zeros(())
    for t in range(batch.target.size(0)):
        logits, hidden, _ = model.decoder(batch.decoder_input[t : t + 1], hidden, encoder_outputs, src_mask)
        real = batch.mask[t]
        total = total + F.cross_entropy(logits[0][real], batch.target[t][real], reduction="sum")
    return total / batch.n_tokens


def random_batch(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    examples = []
    for src_len, tgt_len in [(5, 3), (2, 6), (4, 1), (1, 4)]:
        src = torch.randint(4, vocab, (src_len,), generator=g).tolist() + [EOS_token]
        tgt = torch.randint(4, vocab, (tgt_len,), generator=g).tolist() + [EOS_token]
        examples.append((src, tgt))
    return make_train_batch(examples)


@pytest.mark.parametrize("attn", ["dot", "general", "concat"])
def test_fast_path_equals_step_by_step_loss_and_every_gradient(attn):
    torch.manual_seed(0)
    # dropout 0: the two paths would otherwise draw different dropout masks
    cfg = ModelConfig(
        vocab_size=40, hidden_size=24, encoder_n_layers=2, decoder_n_layers=2, dropout=0.0, attn_model=attn
    )
    model = Seq2Seq(cfg).train()
    batch = random_batch(40)

    fast = (
        F.cross_entropy(
            model(batch.input_seq, batch.lengths, batch.decoder_input, batch.mask),
            batch.target[batch.mask],
            reduction="sum",
        )
        / batch.n_tokens
    )
    fast.backward()
    fast_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    slow = teacher_forced_step_by_step(model, batch)
    slow.backward()

    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        torch.testing.assert_close(fast_grads[name], p.grad, atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("teacher_forcing", [True, False])
def test_masked_forward_is_full_logits_at_real_tokens(teacher_forcing):
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(vocab_size=40, hidden_size=16)).eval()
    batch = random_batch(40, seed=1)
    args = (batch.input_seq, batch.lengths, batch.decoder_input)
    full = model(*args, None, teacher_forcing)  # (Tt, B, V)
    masked = model(*args, batch.mask, teacher_forcing)  # (N, V)
    indexed = model(*args, batch.token_index, teacher_forcing)  # (N, V), gathered by flat index
    assert full.shape == (*batch.target.shape, 40) and masked.shape == (batch.n_tokens, 40)
    torch.testing.assert_close(masked, full[batch.mask])
    torch.testing.assert_close(indexed, masked, rtol=0, atol=0)


def test_select_positions_by_mask_or_by_flat_index_agree():
    x = torch.randn(5, 3, 2)
    mask = torch.rand(5, 3) < 0.5
    by_index = select_positions(x, mask.flatten().nonzero().squeeze(1))
    assert torch.equal(select_positions(x, mask), by_index) and by_index.shape == (int(mask.sum()), 2)


def test_encoder_gives_each_sequence_the_same_outputs_sorted_or_not():
    # Sorted batches are packed without a sort (enforce_sorted=True), unsorted ones with one.
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(vocab_size=30, hidden_size=16, dropout=0.0)).eval()
    src, lengths = make_batch(30, [6, 5, 3, 3, 1])  # non-increasing
    perm = torch.tensor([2, 0, 4, 1, 3])
    out_sorted, hidden_sorted, _ = model.encode(src, lengths)
    out_mixed, hidden_mixed, _ = model.encode(src[:, perm], lengths[perm])
    torch.testing.assert_close(out_mixed, out_sorted[:, perm])
    torch.testing.assert_close(hidden_mixed, hidden_sorted[:, perm])
    assert (out_sorted[3:, 2] == 0).all()  # past a sequence's end the packed encoder outputs zeros


def test_without_teacher_forcing_the_decoder_feeds_back_its_greedy_output():
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(vocab_size=40, hidden_size=16)).eval()
    batch = random_batch(40, seed=2)
    logits = model(batch.input_seq, batch.lengths, batch.decoder_input, teacher_forcing=False)  # (Tt, B, V)
    # Feeding the greedy tokens back in as if they were the target reproduces the same logits.
    greedy = logits.argmax(-1)  # (Tt, B)
    fed_back = torch.cat([batch.decoder_input[:1], greedy[:-1]])
    torch.testing.assert_close(model(batch.input_seq, batch.lengths, fed_back), logits)
    # and it really differs from teacher forcing on the (random) target
    assert not torch.allclose(model(batch.input_seq, batch.lengths, batch.decoder_input), logits)


def test_factorized_is_the_best_rank_r_approximation_and_full_rank_is_the_layer():
    torch.manual_seed(3)
    linear = nn.Linear(12, 40)
    x = torch.randn(7, 12)
    exact = factorized(linear, 12)  # full rank: the same layer, as two products
    torch.testing.assert_close(exact(x), linear(x), rtol=1e-5, atol=1e-5)
    singular = torch.linalg.svdvals(linear.weight.detach().double())
    for rank in (1, 4, 9):
        layer = factorized(linear, rank)
        assert layer.down.weight.shape == (rank, 12) and layer.up.weight.shape == (40, rank)
        product = (layer.up.weight @ layer.down.weight).detach().double()  # (40, 12): U D
        # Eckart-Young: the error's Frobenius norm is that of the singular values left out
        error = torch.linalg.matrix_norm(linear.weight.detach().double() - product)
        assert float(error) == pytest.approx(float(singular[rank:].norm()), rel=1e-5)
        torch.testing.assert_close(layer.up.bias, linear.bias)
    for bad in (0, 13):
        with pytest.raises(ValueError):
            factorized(linear, bad)


def test_output_rank_builds_a_factorized_output_layer_and_old_configs_load_full():
    config = ModelConfig(vocab_size=30, hidden_size=16, output_rank=8)
    model = Seq2Seq(config)
    assert isinstance(model.decoder.out, FactorizedLinear)
    names = set(model.state_dict())
    assert {"decoder.out.down.weight", "decoder.out.up.weight", "decoder.out.up.bias"} <= names
    assert "decoder.out.weight" not in names
    logits = model(torch.tensor([[4], [2]]), torch.tensor([2]), torch.tensor([[1], [5]]))
    assert logits.shape == (2, 1, 30)
    old = {k: v for k, v in ModelConfig(vocab_size=30).to_dict().items() if k != "output_rank"}  # before the field
    assert ModelConfig.from_dict(old).output_rank == 0
    assert isinstance(Seq2Seq(ModelConfig.from_dict(old)).decoder.out, nn.Linear)
