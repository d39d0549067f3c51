"""Shapes and invariants of the seq2seq network."""

import pytest
import torch

from chatbot.model import ModelConfig, Seq2Seq
from chatbot.tokenizer import EOS_token, PAD_token, SOS_token


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
