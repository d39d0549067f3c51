"""The reply index: int8 rows, nearest-reply search, its checkpoint form, and rerank scoring retrieved replies."""

import pytest
import torch
import torch.nn.functional as F

from chatbot.checkpoint import from_int8_rows, int8_rows
from chatbot.errors import ChatbotError
from chatbot.relevance import DualEncoder, RelevanceConfig, encode_ids, relevance_scores
from chatbot.reply import Chatbot, DecodeSettings
from chatbot.retrieval import ReplyIndex, load_index, training_replies
from chatbot.tokenizers import EOS_token
from tests.chatbot.tinybot import PAIRS, one_thread, trained_model  # noqa: F401


def test_int8_rows_are_within_half_a_step_of_each_value():
    x = torch.randn(50, 24, generator=torch.Generator().manual_seed(0)) * torch.rand(50, 1) * 10
    stored = int8_rows(x)
    assert stored["int8"].dtype == torch.int8 and stored["scale"].dtype == torch.float16
    error = (from_int8_rows(stored) - x).abs()  # (50, 24)
    step = stored["scale"].float().unsqueeze(1)
    # half a step from rounding, plus the fp16 scale's own rounding (2^-11 of it) times up to 127 steps
    assert bool((error <= step * (0.5 + 127 * 2**-11)).all())
    assert float(error.max()) > 0  # quantization did happen


def test_search_finds_the_largest_cosine_and_survives_the_checkpoint_form():
    g = torch.Generator().manual_seed(1)
    vectors = F.normalize(torch.randn(300, 32, generator=g), dim=1)
    index = ReplyIndex([f"reply {i}" for i in range(300)], vectors)
    query = F.normalize(torch.randn(32, generator=g), dim=0)
    assert index.search(query, 5) == (vectors @ query).topk(5).indices.tolist()
    restored = ReplyIndex.from_state(index.state_dict())
    assert restored.texts == index.texts
    assert float((restored.vectors @ query - vectors @ query).abs().max()) < 0.01  # cosines within 0.01
    for i in (0, 17, 299):  # a stored reply's own vector finds itself first, after int8 too
        assert restored.search(vectors[i], 1) == [i]
    assert index.search(query, 1000) == (vectors @ query).argsort(descending=True).tolist()  # k capped at N
    assert index.search(query, 0) == []


def test_training_replies_are_distinct_sorted_and_length_capped():
    pairs = [("a", "yes ."), ("b", "yes ."), ("c", "no way ."), ("d", "one two three four five ."), ("e", "")]
    assert training_replies(pairs, max_words=3) == ["no way .", "yes ."]


def relevance_model(voc, seed=3):
    torch.manual_seed(seed)
    return DualEncoder(RelevanceConfig(vocab_size=len(voc), hidden_size=16)).eval()


def test_build_encodes_each_reply_with_the_reply_encoder():
    model, voc = trained_model()
    rel = relevance_model(voc)
    texts = training_replies(PAIRS)
    index = ReplyIndex.build(rel, voc, texts)
    ids = [voc.encode(t) + [EOS_token] for t in texts]
    with torch.inference_mode():
        one_by_one = torch.cat([encode_ids(rel.reply_encoder, [r], 1) for r in ids])
    assert torch.allclose(index.vectors, one_by_one, atol=1e-5)
    # nearest: the query encoder's vector against these, as relevance_scores scores a pair
    query = voc.encode("how are you ?") + [EOS_token]
    scores = relevance_scores(rel, [query] * len(ids), ids)
    assert index.nearest(rel, query, 3) == scores.argsort(descending=True)[:3].tolist()


def test_rerank_scores_retrieved_replies_with_the_samples_and_returns_the_best():
    model, voc = trained_model()
    rel = relevance_model(voc)
    index = ReplyIndex.build(rel, voc, training_replies(PAIRS) + ["zzz unknown reply ."])
    bot = Chatbot(model, voc, relevance=(rel, voc, "tutorial"), index=index)
    assert "zzz unknown reply ." not in bot.index.texts  # its words are not in the model's tokenizer
    settings = DecodeSettings("rerank", candidates=3, temperature=2.0, seed=4, relevance_weight=2.0, retrieve=4)
    for query in ("how are you ?", "where are you going ?"):
        retrieved = bot.retrieved(query, settings)
        assert len(retrieved) == 4 and all(r[-1] == EOS_token for r in retrieved)
        ranked = bot.rerank(query, settings)
        assert bot.rerank(query, settings) == ranked  # deterministic for a seed
        assert {tuple(r) for r in retrieved} <= {tuple(ids) for ids, _ in ranked}  # all scored
        # each candidate's score recomputed from scratch: the same scorer whether sampled or retrieved
        recomputed = bot.score(query, settings, [ids for ids, _ in ranked], [None] * len(ranked))
        assert [s for _, s in ranked] == pytest.approx(recomputed, abs=1e-4)
        assert ranked[0][1] == max(s for _, s in ranked)
        assert bot.reply_ids(query, settings) == ranked[0][0]
        assert list(bot.reply_stream(query, settings))[-1] == bot.reply(query, settings)
    # with retrieve 0 (and for other strategies) nothing is retrieved
    assert bot.retrieved("hello .", DecodeSettings("rerank", retrieve=0)) == []
    assert bot.retrieved("hello .", DecodeSettings("sample", retrieve=4)) == []


def test_rerank_encodes_its_query_once_for_sampling_and_scoring(monkeypatch):
    """The retrieved replies' log p comes from the encoding the samples were drawn from: one pass per reply."""
    model, voc = trained_model()
    rel = relevance_model(voc)
    bot = Chatbot(
        model, voc, relevance=(rel, voc, "tutorial"), index=ReplyIndex.build(rel, voc, training_replies(PAIRS))
    )
    runner = bot.runner
    calls = []
    encode = runner.encode
    monkeypatch.setattr(runner, "encode", lambda *args: calls.append(1) or encode(*args))
    settings = DecodeSettings("rerank", candidates=3, seed=1, retrieve=4)
    ranked = bot.rerank("how are you ?", settings)
    assert len(calls) == 1
    assert any(ids in bot.retrieved("how are you ?", settings) for ids, _ in ranked)  # some were scored from it


def test_a_retrieved_reply_wins_when_the_scorer_prefers_it():
    model, voc = trained_model()
    rel = relevance_model(voc)
    index = ReplyIndex.build(rel, voc, ["good night ."])
    bot = Chatbot(model, voc, relevance=(rel, voc, "tutorial"), index=index)
    # a huge length bonus picks the longest candidate; sampling at a low temperature gives "hi ." here
    settings = DecodeSettings("rerank", candidates=2, temperature=0.05, seed=0, relevance_weight=0.0, retrieve=1)
    assert bot.reply("hello .", DecodeSettings("rerank", candidates=2, temperature=0.05, seed=0)) == "Hi."
    from dataclasses import replace

    assert bot.reply("hello .", replace(settings, length_bonus=1000.0)) == "Good night."


def test_retrieve_without_an_index_is_a_one_line_error():
    model, voc = trained_model()
    bot = Chatbot(model, voc, relevance=(relevance_model(voc), voc, "tutorial"))
    with pytest.raises(ChatbotError, match="reply index"):
        bot.reply("hello .", DecodeSettings("rerank", retrieve=4))
    with pytest.raises(ChatbotError, match="retrieve must be"):
        DecodeSettings("rerank", retrieve=-1)


def test_load_index_checks_it_matches_its_relevance_model():
    index = ReplyIndex(["hi ."], F.normalize(torch.ones(1, 16), dim=1))
    state = {"model_config": {"hidden_size": 16}, "members": [{}, {}], "index": index.state_dict()}
    assert load_index(state, "r.pt").texts == ["hi ."]
    assert load_index({"model_config": {"hidden_size": 16}}, "r.pt") is None  # a file without one
    with pytest.raises(ChatbotError, match="does not match"):
        load_index({**state, "model_config": {"hidden_size": 8}}, "r.pt")
    with pytest.raises(ChatbotError, match="does not match"):
        load_index({**state, "index": {**index.state_dict(), "member": 2}}, "r.pt")
    with pytest.raises(ChatbotError, match="not readable"):
        load_index({**state, "index": {"texts": ["hi ."]}}, "r.pt")
