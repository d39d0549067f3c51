"""chatbot/model/fast.py: the fast CPU form computes what the training network computes, from live weights."""

import copy

import pytest
import torch

from chatbot.decode import DecodeSettings, decode, source_tensors
from chatbot.model import fast as fast_module
from chatbot.model import screened as screened_module
from chatbot.model.fast import Affine, DecoderStep, InferenceSeq2Seq, gru_cell
from chatbot.model.network import ModelConfig, Seq2Seq
from chatbot.reply import Chatbot
from tests.chatbot.test_decode import SOURCES, models_and_sources
from tests.chatbot.tinybot import PAIRS, random_model, trained_model


def test_gru_cell_is_nn_grus_cell():
    torch.manual_seed(0)
    cell = torch.nn.GRUCell(6, 5)
    x, h = torch.randn(4, 6), torch.randn(4, 5)
    gates_x = x @ cell.weight_ih.T + cell.bias_ih
    gates_h = h @ cell.weight_hh.T + cell.bias_hh
    torch.testing.assert_close(gru_cell(gates_x, gates_h, h), cell(x, h), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("attn,layers", [("dot", 2), ("general", 1), ("concat", 3)])
def test_decoder_step_equals_the_model_decoder(attn, layers):
    model = random_model(30, seed=6, attn=attn, layers=layers)
    step = DecoderStep(model.decoder)
    src = torch.tensor([[5, 7, 9], [6, 8, 2], [2, 2, 0]])  # (Ts, K), the last one padded
    with torch.no_grad():
        encoder_outputs, hidden, mask = model.encode(src, torch.tensor([3, 3, 2]))
        tokens = torch.tensor([[1, 4, 11]])
        for _ in range(3):  # a few steps, feeding each one's hidden state to the next
            expected = model.decoder(tokens, hidden, encoder_outputs, mask)
            got = step(tokens, hidden, encoder_outputs, mask)
            for e, g in zip(expected, got, strict=True):
                torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
            hidden, tokens = expected[1], expected[0].argmax(-1)


def test_inference_model_decodes_like_the_model():
    for model, sources in models_and_sources():
        fast = InferenceSeq2Seq(model)
        # greedy goes through the int8 screening here (hidden 16 and 32 are rows the kernel reads)
        assert fast.argmax.screened or not screened_module.INT8_PRODUCT
        for src in sources:
            for s in [DecodeSettings("greedy"), DecodeSettings("beam", beam_width=3), DecodeSettings("sample", seed=0)]:
                assert decode(fast, src, 10, s) == decode(model, src, 10, s)


@pytest.mark.parametrize("attn,layers,dec_layers", [("dot", 2, 2), ("general", 1, 1), ("concat", 3, 2)])
def test_query_encoder_equals_the_model_encoder(attn, layers, dec_layers):
    torch.manual_seed(8)
    cfg = ModelConfig(vocab_size=30, hidden_size=16, encoder_n_layers=layers, decoder_n_layers=dec_layers)
    model = Seq2Seq(cfg).eval()
    fast = InferenceSeq2Seq(model)
    for src in SOURCES:
        input_seq, lengths = source_tensors(src)
        with torch.no_grad():
            expected = model.encode(input_seq, lengths)
            got = fast.encode(input_seq, lengths)
        for e, g in zip(expected, got, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_a_chatbot_replies_from_the_live_weights_after_they_change():
    """The fast form copies the weights; a Chatbot notices when they change (load_state_dict, an in-place
    update as an optimizer step makes) and rebuilds it, so it replies as a Chatbot built afresh."""
    trained, voc = trained_model()
    model = copy.deepcopy(trained)  # trained_model() is shared by other tests: change a copy
    bot = Chatbot(model, voc, max_length=10)
    queries = [q for q, _ in PAIRS]
    before = [bot.reply_ids(q) for q in queries]
    first = bot.runner
    assert bot.runner is first and not first.is_stale()  # not rebuilt while nothing changed
    model.load_state_dict(random_model(len(voc), seed=11, hidden=32).state_dict())  # same object, new weights
    assert first.is_stale()
    after = [bot.reply_ids(q) for q in queries]
    assert after != before  # else this test would prove nothing
    assert after == [Chatbot(copy.deepcopy(model), voc, max_length=10).reply_ids(q) for q in queries]
    second = bot.runner
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    assert second.is_stale()
    assert [bot.reply_ids(q) for q in queries] == [
        Chatbot(copy.deepcopy(model), voc, max_length=10).reply_ids(q) for q in queries
    ]


@pytest.mark.parametrize("onednn", [True, False])
def test_affine_is_nn_linear_for_any_number_of_rows(monkeypatch, onednn):
    """Both products (oneDNN's packed one, addmm on W^T) give nn.Linear's output for 1 to 9 rows."""
    if onednn and not fast_module.ONEDNN_LINEAR:
        pytest.skip("this torch has no oneDNN linear")
    monkeypatch.setattr(fast_module, "ONEDNN_LINEAR", onednn)
    torch.manual_seed(3)
    linear = torch.nn.Linear(37, 101)
    affine = Affine(linear.weight, linear.bias)
    assert affine.onednn is onednn
    for rows in range(1, 10):
        x = torch.randn(rows, 37)
        with torch.no_grad():
            torch.testing.assert_close(affine(x), linear(x), rtol=1e-5, atol=1e-5)


def test_the_fast_form_without_onednn_decodes_the_same(monkeypatch):
    """The fallback (addmm) form, where torch has no oneDNN, replies as the oneDNN form and the model do."""
    monkeypatch.setattr(fast_module, "ONEDNN_LINEAR", False)
    for model, sources in models_and_sources():
        fallback = InferenceSeq2Seq(model)
        assert not fallback.decoder.out.onednn
        for src in sources:
            for s in [DecodeSettings("greedy"), DecodeSettings("beam", beam_width=3), DecodeSettings("sample", seed=0)]:
                assert decode(fallback, src, 10, s) == decode(model, src, 10, s)


def test_a_factorized_output_layer_decodes_like_the_model():
    """With a `FactorizedLinear` output layer the fast form's step is the model's, greedy's screened argmax runs
    on its (V x rank) factor, and every search gives the model's replies."""
    from chatbot.model.network import factorized

    for model, sources in models_and_sources():
        model = copy.deepcopy(model)
        vocab, hidden = model.decoder.out.weight.shape
        rank = 16 if min(vocab, hidden) > 16 else min(vocab, hidden) - 1  # a real truncation either way
        model.decoder.out = factorized(model.decoder.out, rank)
        model.config.output_rank = rank
        fast = InferenceSeq2Seq(model)
        assert fast.decoder.project is not None
        assert fast.argmax.weight.shape == (model.config.vocab_size, rank)
        assert fast.argmax.screened == (screened_module.INT8_PRODUCT and rank % screened_module.INT8_BLOCK == 0)
        with torch.no_grad():
            encoded = model.encode(torch.tensor([[5], [7], [2]]), torch.tensor([3]))
            tokens = torch.tensor([[1]])
            expected = model.decoder(tokens, *encoded[1:2], encoded[0], encoded[2])
            got = fast.decoder(tokens, *encoded[1:2], encoded[0], encoded[2])
        torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-5)
        for src in sources:
            for s in [DecodeSettings("greedy"), DecodeSettings("beam", beam_width=3), DecodeSettings("sample", seed=0)]:
                assert decode(fast, src, 10, s) == decode(model, src, 10, s)
