"""`chatbot.scoring`: batched teacher-forced log-probabilities equal the one-pair reference."""

import pytest
import torch

from chatbot.scoring import mmi_scores, sequence_log_probs, with_eos, words
from chatbot.tokenizers import EOS_token
from tests.chatbot.tinybot import PAIRS, one_thread, random_model, sequence_log_prob, trained_model  # noqa: F401


def test_batched_log_probs_equal_one_pair_at_a_time():
    model, voc = trained_model()
    for m in (model, random_model(len(voc), seed=4, hidden=32)):
        src = [voc.encode(q) + [EOS_token] for q, _ in PAIRS]
        tgt = [voc.encode(r) + [EOS_token] for _, r in PAIRS[::-1]]  # mismatched pairs, unsorted lengths
        batched = sequence_log_probs(m, src, tgt, batch_size=3)
        one_by_one = [sequence_log_prob(m, s, t) for s, t in zip(src, tgt, strict=True)]
        assert batched.tolist() == pytest.approx(one_by_one, abs=1e-4)
        assert m.training is False


def test_mmi_scores_and_helpers():
    forward, backward, lengths = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0]), torch.tensor([2, 5])
    assert mmi_scores(forward, backward, lengths, 0.5, 0.1).tolist() == pytest.approx([-2.3, -2.0])
    assert mmi_scores(forward, None, lengths, 0.5, 0.0).tolist() == [-1.0, -2.0]
    relevance, overlap = torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.0])
    both = mmi_scores(forward, backward, lengths, 0.5, 0.1, relevance, 2.0, overlap, 4.0)
    assert both.tolist() == pytest.approx([-2.3 + 2.0 + 2.0, -2.0 - 2.0])
    assert mmi_scores(forward, None, lengths, 0.0, 0.0, None, 2.0, overlap, 0.0).tolist() == [-1.0, -2.0]
    assert with_eos([4, 5]) == [4, 5, EOS_token] and with_eos([4, EOS_token]) == [4, EOS_token]
    assert words("i m fine .") == 5


def test_training_validation_loss_is_the_report_cards_nll():
    """train.evaluate (validation) and sequence_log_probs (the report card) come from one NLL: they agree."""
    from chatbot.batching import tensorize
    from chatbot.train import autocast_for, evaluate

    model, voc = trained_model()
    src = [voc.encode(q) + [EOS_token] for q, _ in PAIRS]
    tgt = [voc.encode(r) + [EOS_token] for _, r in PAIRS]
    loss, tokens = evaluate(
        model,
        tensorize(list(zip(src, tgt, strict=True))),
        3,
        torch.device("cpu"),
        autocast_for(torch.device("cpu"), False),
    )
    assert tokens == sum(len(t) for t in tgt)
    assert loss == pytest.approx(-float(sequence_log_probs(model, src, tgt).sum()) / tokens, rel=1e-6)


def test_one_query_encoded_once_gives_the_same_log_probs():
    from chatbot.decode import source_tensors
    from chatbot.model.fast import InferenceSeq2Seq

    model, voc = trained_model()
    src = voc.encode("how are you ?") + [EOS_token]
    targets = [voc.encode(r) + [EOS_token] for _, r in PAIRS]
    plain = sequence_log_probs(model, [src] * len(targets), targets)
    for form in (model, InferenceSeq2Seq(model)):  # the training network's encode and the fast path's
        with torch.inference_mode():
            encoded = form.encode(*source_tensors(src))
        once = sequence_log_probs(model, [src] * len(targets), targets, batch_size=3, encoded=encoded)
        assert once.tolist() == pytest.approx(plain.tolist(), abs=1e-4)
    assert plain.tolist() == pytest.approx([sequence_log_prob(model, src, t) for t in targets], abs=1e-4)
