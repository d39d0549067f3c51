"""`chatbot.relevance`: the dual encoder learns which reply belongs to which query; its checkpoint is data."""

import pytest
import torch

from chatbot.batching import encode_pairs, gather_batch, tensorize
from chatbot.checkpoint import save_checkpoint
from chatbot.errors import ChatbotError
from chatbot.evaluate import candidate_sets, hits_at_1
from chatbot.relevance import DualEncoder, RelevanceConfig, in_batch_loss, load_relevance, relevance_scores
from tests.chatbot.tiny_data import tiny_dataset
from tests.chatbot.tinybot import make_voc, one_thread, random_model, write_checkpoint  # noqa: F401


def test_in_batch_loss_is_low_on_the_diagonal_and_symmetric():
    right = torch.eye(4) * 20
    assert float(in_batch_loss(right)) < 1e-6
    assert float(in_batch_loss(torch.zeros(4, 4))) == pytest.approx(torch.log(torch.tensor(4.0)).item())
    logits = torch.randn(5, 5, generator=torch.Generator().manual_seed(0))
    assert float(in_batch_loss(logits)) == pytest.approx(float(in_batch_loss(logits.T)))


def trained_dual_encoder(steps: int = 60) -> tuple[DualEncoder, list]:
    data = tiny_dataset(n_train=64)
    examples = encode_pairs(data.train, data.tokenizer)
    pairs = tensorize(examples)
    torch.manual_seed(0)
    model = DualEncoder(RelevanceConfig(vocab_size=len(data.tokenizer), hidden_size=32))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        batch = gather_batch(pairs, torch.randperm(len(pairs), generator=torch.Generator().manual_seed(step))[:32])
        loss = in_batch_loss(model(batch.input_seq, batch.lengths, batch.target, batch.mask.sum(dim=0)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), examples


def test_a_trained_dual_encoder_ranks_the_true_reply_first():
    model, examples = trained_dual_encoder()
    sets = candidate_sets(len(examples), 20, seed=0)
    flat = [(i, j) for i, row in enumerate(sets) for j in row]
    scores = relevance_scores(model, [examples[i][0] for i, _ in flat], [examples[j][1] for _, j in flat])
    assert hits_at_1(scores.view(len(examples), 20)) > 0.8  # chance is 0.05
    # Scores are cosines over the temperature, and batching does not change them.
    assert scores.abs().max() <= 1 / model.config.temperature + 1e-6
    one = relevance_scores(model, [examples[0][0]], [examples[0][1]])
    assert float(one[0]) == pytest.approx(float(scores[0]), abs=1e-5)


def test_relevance_checkpoint_round_trip_and_refusals(tmp_path):
    model, _ = trained_dual_encoder(steps=1)
    voc = tiny_dataset().tokenizer
    state = {"kind": "relevance", "model_config": model.config.to_dict(), "model": model.state_dict()}
    save_checkpoint(tmp_path / "rel.pt", {**state, "tokenizer": voc.state_dict(), "normalize": "tutorial"})
    loaded, _ = load_relevance(tmp_path / "rel.pt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True))
    seq2seq = write_checkpoint(tmp_path / "s2s.pt", random_model(len(make_voc())), make_voc())
    with pytest.raises(ChatbotError, match="not a relevance model"):
        load_relevance(seq2seq)


def test_an_ensemble_scores_the_mean_of_its_members():
    from chatbot.relevance import RelevanceEnsemble

    trained, examples = trained_dual_encoder(steps=20)
    torch.manual_seed(5)
    other = DualEncoder(RelevanceConfig(vocab_size=trained.config.vocab_size, hidden_size=32)).eval()
    queries, replies = [q for q, _ in examples[:12]], [r for _, r in examples[3:15]]
    one, two = relevance_scores(trained, queries, replies), relevance_scores(other, queries, replies)
    both = relevance_scores(RelevanceEnsemble([trained, other]), queries, replies, batch_size=5)
    assert both.tolist() == pytest.approx(((one + two) / 2).tolist(), abs=1e-5)
    assert not torch.allclose(one, two)  # two different members, so the mean is not either one
