"""chatbot/tutorial.py: the tutorial's own training step reports what this project's loss measures."""

import math

import torch

from chatbot import tutorial
from chatbot.batching import encode_pairs, make_batch
from chatbot.model.network import ModelConfig, Seq2Seq
from chatbot.train import masked_nll
from tests.chatbot.tiny_data import tiny_dataset


def test_tutorial_step_reports_the_mean_nll_per_target_token():
    # The (a) loop sums per-step softmax-then-log losses; what it reports must be the same quantity that
    # this project's loss and the validation loss measure, or time-to-quality would compare unlike things.
    data = tiny_dataset()
    batch = make_batch(encode_pairs(data.train[:16], data.tokenizer))
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(vocab_size=len(data.tokenizer), hidden_size=16, dropout=0.0))
    with torch.no_grad():
        logits = model(batch.input_seq, batch.lengths, batch.decoder_input, batch.token_index)
        expected = masked_nll(logits, batch.target.flatten()[batch.token_index]).item() / batch.n_tokens
    before = [p.detach().clone() for p in model.parameters()]
    encoder_opt = torch.optim.Adam(model.encoder.parameters(), lr=1e-3)
    decoder_opt = torch.optim.Adam(model.decoder.parameters(), lr=5e-3)
    reported = tutorial.train(batch, model, encoder_opt, decoder_opt, 50.0)
    assert math.isclose(reported, expected, rel_tol=1e-5)
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))  # it stepped
