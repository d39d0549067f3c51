"""The reply function: checkpoint round trip, robustness on any text, tidy output, streaming."""

import argparse

import pytest

import chatbot.checkpoint
from chatbot.errors import ChatbotError
from chatbot.reply import Chatbot, DecodeSettings, add_decode_arguments, settings_from_args, tidy
from chatbot.tokenizers import EOS_token, UNK_token
from tests.chatbot.tinybot import PAIRS, make_voc, one_thread, random_model, trained_model, write_checkpoint  # noqa: F401

NASTY = [
    "",
    "   \t\n  ",
    "word " * 2000,  # 10,000 characters
    "x" * 10_000,
    "😀🎉👍🏽 👨‍👩‍👧",
    "你好，你叫什么名字？",
    "\x00\x01\x07\x1b[31m\x7f\u200b\ufeff",
    "zorgle blimp quux frobnicate",  # every word unknown
    "\ud800 lone surrogate",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ",
    "مرحبا кто ты",
]
STRATEGIES = [
    DecodeSettings("greedy"),
    DecodeSettings("beam", beam_width=3),
    DecodeSettings("sample", top_p=0.9, seed=3),
]


@pytest.fixture(scope="module")
def bot():
    model, voc = trained_model()
    return Chatbot(model, voc, "tutorial", 10)


def test_replies_to_the_pairs_it_learnt(bot):
    assert bot.reply("How are you?") == "I'm fine."
    assert bot.reply("What is your name?!") == "I don't know."
    assert bot.reply("HELLO.", DecodeSettings("beam")) == "Hi."


@pytest.mark.parametrize("normalize", ["tutorial", "unicode"])
def test_survives_any_text(normalize):
    model, voc = trained_model()
    bots = [Chatbot(model, voc, normalize, 10), Chatbot(random_model(len(voc), seed=2), voc, normalize, 10)]
    for b in bots:
        for text in NASTY:
            ids = b.query_ids(text)
            assert ids[-1] == EOS_token and len(ids) <= b.max_input_tokens
            for s in STRATEGIES:
                reply = b.reply(text, s)
                assert isinstance(reply, str) and reply.strip()  # min_length 1: never an empty reply
                assert "UNK" not in reply


def test_unknown_words_become_unk_and_input_is_guarded(bot):
    assert bot.query_ids("zorgle blimp") == [UNK_token, UNK_token, EOS_token]
    long_ids = bot.query_ids("hello " * 5000)
    assert len(long_ids) == bot.max_input_tokens  # kept the last words, then EOS
    assert long_ids[:-1] == [bot.tokenizer.encode("hello")[0]] * (bot.max_input_tokens - 1)


def test_checkpoint_round_trip_reads_normalization_and_tokenizer(tmp_path, bot):
    model, voc = trained_model()
    path = write_checkpoint(tmp_path / "m.pt", model, voc, normalize="unicode", max_length=7)
    loaded = Chatbot.from_checkpoint(path)
    assert loaded.normalize == "unicode" and loaded.max_length == 7
    assert str(path) in loaded.description and "hidden 32" in loaded.description
    # unicode normalization keeps the apostrophe, so "don't" is one (unknown) word, not "don t"
    assert loaded.query_ids("I don't") == [voc.encode("i")[0], UNK_token, EOS_token]
    for q, _ in PAIRS:
        assert loaded.reply_ids(q) == bot.reply_ids(q, DecodeSettings(max_length=7))


def test_shipped_model_missing_or_present(tmp_path, monkeypatch):
    monkeypatch.setattr(chatbot.checkpoint, "DEFAULT_CHECKPOINT", tmp_path / "pretrained" / "model.pt")
    with pytest.raises(ChatbotError, match="no shipped model"):
        Chatbot.from_checkpoint(None)
    model, voc = trained_model()
    write_checkpoint(tmp_path / "pretrained" / "model.pt", model, voc)
    loaded = Chatbot.from_checkpoint(None)
    assert loaded.description.startswith("shipped model")
    assert loaded.reply("how are you ?") == "I'm fine."


def test_bad_checkpoint_is_one_line_error(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ChatbotError):
        Chatbot.from_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(ChatbotError):
        Chatbot.from_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("settings", STRATEGIES, ids=lambda s: s.strategy)
def test_reply_stream_grows_to_the_reply(bot, settings):
    for text in ["how are you ?", "who are you ?", "zorgle", ""]:
        parts = list(bot.reply_stream(text, settings))
        assert parts and parts[-1] == bot.reply(text, settings)
        for shorter, longer in zip(parts, parts[1:], strict=False):
            assert len(shorter) < len(longer)
            assert longer.lower().startswith(shorter.lower().rstrip(".!?'"))


@pytest.mark.parametrize(
    "raw,normalize,expected",
    [
        ("i don t know .", "tutorial", "I don't know."),
        ("you re right ! i m sure .", "tutorial", "You're right! I'm sure."),
        ("it s here , isn t it ?", "tutorial", "It's here, isn't it?"),
        ("what ?  no .", "tutorial", "What? No."),
        ("", "tutorial", ""),
        ("i'm 20 years old .", "unicode", "I'm 20 years old."),
        ("你好 。", "unicode", "你好。"),
        ("( yes ) .", "unicode", "(yes)."),
    ],
)
def test_tidy(raw, normalize, expected):
    assert tidy(raw, normalize) == expected


def test_decode_flags_come_from_the_dataclass():
    parser = argparse.ArgumentParser()
    add_decode_arguments(parser)
    assert settings_from_args(parser.parse_args([])) == DecodeSettings()
    args = parser.parse_args(
        ["--strategy", "beam", "--beam-width", "3", "--top-p", "0.5", "--no-repeat-ngram-size", "2"]
    )
    assert settings_from_args(args) == DecodeSettings("beam", beam_width=3, top_p=0.5, no_repeat_ngram_size=2)
    with pytest.raises(SystemExit):
        parser.parse_args(["--strategy", "nucleus"])


@pytest.mark.gpu
def test_replies_on_cuda_equal_cpu(cuda, tmp_path):
    model, voc = trained_model()
    path = write_checkpoint(tmp_path / "m.pt", model, voc)
    cpu, gpu = Chatbot.from_checkpoint(path), Chatbot.from_checkpoint(path, device=cuda)
    for settings in STRATEGIES[:2]:
        for q, _ in PAIRS:
            assert gpu.reply(q, settings) == cpu.reply(q, settings)


def step_by_step_log_prob(model, src_ids: list[int], tokens: list[int]) -> float:
    """log p(tokens | source), one decoder step at a time: independent of the batched scorer."""
    import torch
    import torch.nn.functional as F

    from chatbot.tokenizers import SOS_token

    with torch.no_grad():
        encoder_outputs, hidden, src_mask = model.encode(
            torch.tensor(src_ids).unsqueeze(1), torch.tensor([len(src_ids)])
        )
        token, total = torch.tensor([[SOS_token]]), 0.0
        for t in tokens:
            logits, hidden, _ = model.decoder(token, hidden, encoder_outputs, src_mask)
            total += float(F.log_softmax(logits[0, 0].double(), dim=-1)[t])
            token = torch.tensor([[t]])
    return total


def test_rerank_is_deterministic_for_a_seed_and_returns_the_best_scored_candidate():
    model, voc = trained_model()
    backward = Chatbot(random_model(len(voc), seed=5, hidden=32), voc)
    bot = Chatbot(model, voc, backward=backward)
    settings = DecodeSettings("rerank", candidates=8, temperature=4.0, seed=11, mmi_lambda=0.7, length_bonus=0.3)
    for query in ("how are you ?", "who are you ?", "hello ."):
        ranked = bot.rerank(query, settings)
        assert bot.rerank(query, settings) == ranked  # same seed, same candidates, same order
        assert bot.reply_ids(query, settings) == ranked[0][0]
        assert len(ranked) > 1  # temperature 4 draws more than one distinct reply
        # Recompute every candidate's MMI score independently and check the returned one is the best.
        src = bot.query_ids(query)
        recomputed = []
        for ids, _ in ranked:
            target = ids if ids[-1] == EOS_token else ids + [EOS_token]
            text = voc.decode(ids)
            forward = step_by_step_log_prob(model, src, target)
            back = step_by_step_log_prob(backward.model, backward.query_ids(text), voc.encode(query) + [EOS_token])
            recomputed.append(forward + 0.7 * back + 0.3 * len(text.split()))
        assert [s for _, s in ranked] == pytest.approx(recomputed, abs=1e-4)
        assert recomputed[0] >= max(recomputed) - 1e-4


def test_rerank_adds_the_relevance_score_with_its_weight():
    import torch

    from chatbot.relevance import DualEncoder, RelevanceConfig, relevance_scores

    model, voc = trained_model()
    torch.manual_seed(3)
    rel = DualEncoder(RelevanceConfig(vocab_size=len(voc), hidden_size=16)).eval()
    bot = Chatbot(model, voc, relevance=(rel, voc, "tutorial"))
    plain = DecodeSettings("rerank", candidates=6, temperature=4.0, seed=2, mmi_lambda=0.0, relevance_weight=0.0)
    weighted = DecodeSettings("rerank", candidates=6, temperature=4.0, seed=2, mmi_lambda=0.0, relevance_weight=2.0)
    base = {tuple(ids): score for ids, score in bot.rerank("how are you ?", plain)}  # the same draws (seed 2)
    for ids, score in bot.rerank("how are you ?", weighted):
        q = voc.encode("how are you ?") + [EOS_token]
        r = voc.encode(voc.decode(ids)) + [EOS_token]
        assert score == pytest.approx(base[tuple(ids)] + 2.0 * float(relevance_scores(rel, [q], [r])[0]), abs=1e-4)


def test_rerank_adds_the_word_overlap_with_its_weight():
    from chatbot.overlap import Overlap

    model, voc = trained_model()
    overlap = Overlap.from_texts(["how are you ?", "i am fine .", "you are late ."])
    bot = Chatbot(model, voc, overlap=overlap)
    plain = DecodeSettings("rerank", candidates=6, temperature=4.0, seed=2, mmi_lambda=0.0, overlap_weight=0.0)
    weighted = DecodeSettings("rerank", candidates=6, temperature=4.0, seed=2, mmi_lambda=0.0, overlap_weight=3.0)
    base = {tuple(ids): score for ids, score in bot.rerank("How are you?", plain)}  # the same draws (seed 2)
    moved = 0
    for ids, score in bot.rerank("How are you?", weighted):
        by_hand = float(overlap.scores(["how are you ?"], [voc.decode(ids)])[0])
        assert score == pytest.approx(base[tuple(ids)] + 3.0 * by_hand, abs=1e-6)
        moved += by_hand > 0
    assert moved  # some draw shares a word with the query, so the term was tested


def test_rerank_draws_differ_without_a_seed():
    model, voc = trained_model()
    bot = Chatbot(model, voc, backward=Chatbot(model, voc))
    settings = DecodeSettings("rerank", candidates=4, temperature=3.0)
    draws = {tuple(tuple(ids) for ids, _ in bot.rerank("hello .", settings)) for _ in range(5)}
    assert len(draws) > 1
