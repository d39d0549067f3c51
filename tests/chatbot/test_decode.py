"""Greedy search, beam search and sampling: equivalences, exactness, constraints, determinism."""

import itertools
import math

import pytest
import torch

from chatbot.decode import (
    NEVER_GENERATED,
    DecodeSettings,
    beam_search,
    decode,
    draw,
    filter_logits,
    length_normalise,
    outside_nucleus,
    source_tensors,
)
from chatbot.errors import ChatbotError
from chatbot.model.fast import InferenceSeq2Seq
from chatbot.tokenizers import EOS_token
from chatbot.tutorial import GreedySearchDecoder
from tests.chatbot.tinybot import (  # noqa: F401
    PAIRS,
    greedy_search,
    one_thread,
    random_model,
    sample,
    sequence_log_prob,
    trained_model,
)

SOURCES = [[5, 6, 7, EOS_token], [9, EOS_token], [EOS_token], [4, 4, 4, 4, 4, 4, 8, EOS_token]]


def trained_sources():
    model, voc = trained_model()
    return model, [voc.encode(q) + [EOS_token] for q, _ in PAIRS]


def models_and_sources():
    """A trained model (stops at EOS) and random ones (mostly run to max length), with their sources."""
    yield trained_sources()
    for seed, attn in [(1, "dot"), (2, "general"), (3, "concat")]:
        yield random_model(12, seed=seed, attn=attn), [[min(i, 11) for i in s] for s in SOURCES]


def has_repeat(tokens: list[int], n: int) -> bool:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("min_length,ngram", [(0, 0), (1, 0), (3, 2)])
def test_beam_width_1_equals_greedy(min_length, ngram):
    for model, sources in models_and_sources():
        for src in sources:
            greedy = greedy_search(model, src, 12, min_length, ngram)
            best = beam_search(
                model, src, 12, beam_width=1, length_penalty=0.0, min_length=min_length, no_repeat_ngram_size=ngram
            )[0]
            assert best.tokens == greedy


@pytest.mark.parametrize("length_penalty", [0.0, 0.6, 1.0])
def test_beam_hypotheses_sorted_and_scores_are_model_log_probs(length_penalty):
    for model, sources in models_and_sources():
        for src in sources:
            hyps = beam_search(model, src, 8, beam_width=4, length_penalty=length_penalty)
            assert 1 <= len(hyps) <= 4
            scores = [h.score for h in hyps]
            assert scores == sorted(scores, reverse=True)
            for h in hyps:
                recomputed = sequence_log_prob(model, src, h.tokens)
                assert h.log_prob == pytest.approx(recomputed, abs=1e-4)
                assert h.score == pytest.approx(recomputed / len(h.tokens) ** length_penalty, abs=1e-4)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_wide_beam_finds_the_exact_best_sequence(length_penalty):
    # 6 ids, 3 never generated (PAD, SOS, UNK): EOS and two words. Every sequence of up to 4 ids is
    # enumerable, and a beam wider than all of them must return the true best (early stop included).
    model, max_length = random_model(6, seed=4, hidden=8), 4
    src = [4, 5, EOS_token]
    allowed = [EOS_token, 4, 5]
    candidates = []
    for n in range(1, max_length + 1):
        for seq in itertools.product(allowed, repeat=n):
            if EOS_token in seq[:-1] or (n < max_length and seq[-1] != EOS_token):
                continue
            candidates.append(length_normalise(sequence_log_prob(model, src, list(seq)), n, length_penalty))
    best = beam_search(model, src, max_length, beam_width=64, length_penalty=length_penalty)[0]
    assert best.score == pytest.approx(max(candidates), abs=1e-5)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_blocking(n):
    repeated_without_blocking = False
    for model, sources in models_and_sources():
        for src in sources:
            repeated_without_blocking |= has_repeat(greedy_search(model, src, 12), n)
            outputs = [greedy_search(model, src, 12, no_repeat_ngram_size=n)]
            outputs += [h.tokens for h in beam_search(model, src, 12, beam_width=3, no_repeat_ngram_size=n)]
            settings = DecodeSettings("sample", no_repeat_ngram_size=n, seed=7)
            outputs.append(sample(model, src, 12, settings))
            for tokens in outputs:
                assert not has_repeat(tokens, n), (n, tokens)
    assert repeated_without_blocking  # otherwise this test could not fail


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_top_k_1_equals_greedy(temperature):
    for model, sources in models_and_sources():
        for src in sources:
            for seed in range(3):
                settings = DecodeSettings("sample", top_k=1, temperature=temperature, seed=seed, min_length=0)
                assert sample(model, src, 10, settings) == greedy_search(model, src, 10)


def test_same_seed_same_sample_and_global_rng_untouched():
    model = random_model(40, seed=5)
    src = [5, 6, 7, EOS_token]
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    draws = {seed: sample(model, src, 10, DecodeSettings("sample", seed=seed)) for seed in range(6)}
    assert torch.rand(1) == before  # sampling used its own generator
    for seed, tokens in draws.items():
        assert sample(model, src, 10, DecodeSettings("sample", seed=seed)) == tokens
    assert len({tuple(t) for t in draws.values()}) > 1  # and different seeds do differ


def test_every_strategy_stops_at_eos():
    model, sources = trained_sources()
    tutorial = GreedySearchDecoder(model)
    settings = [DecodeSettings("greedy"), DecodeSettings("beam"), DecodeSettings("sample", top_k=3, seed=1)]
    for src in sources:
        for s in settings:
            tokens = decode(model, src, 10, s)
            assert tokens[-1] == EOS_token and EOS_token not in tokens[:-1], (s.strategy, tokens)
        # greedy is the tutorial's decoder cut at its first EOS, without the steps after it
        with torch.no_grad():
            all_tokens, _ = tutorial(*source_tensors(src), 10)
        all_tokens = all_tokens.tolist()
        assert greedy_search(model, src, 10) == all_tokens[: all_tokens.index(EOS_token) + 1]


@pytest.mark.parametrize("max_length", [1, 3, 7])
def test_every_strategy_respects_max_length(max_length):
    for model, sources in models_and_sources():
        for src in sources:
            for s in [DecodeSettings("greedy"), DecodeSettings("beam", beam_width=3), DecodeSettings("sample", seed=0)]:
                tokens = decode(model, src, max_length, s)
                assert 1 <= len(tokens) <= max_length
                assert EOS_token not in tokens[:-1]
                assert tokens[-1] == EOS_token or len(tokens) == max_length


def test_min_length_and_never_generated_tokens():
    for model, sources in models_and_sources():
        for src in sources:
            for s in [
                DecodeSettings("greedy", min_length=4),
                DecodeSettings("beam", beam_width=3, min_length=4),
                DecodeSettings("sample", min_length=4, temperature=2.0, seed=0),
            ]:
                tokens = decode(model, src, 10, s)
                assert EOS_token not in tokens[:4]
                assert not set(tokens) & set(NEVER_GENERATED)


def test_filter_logits_top_p_keeps_the_smallest_set_with_that_mass():
    torch.manual_seed(0)
    logits = torch.randn(3, 20)
    for p in [0.1, 0.5, 0.9, 0.99]:
        kept = filter_logits(logits, top_p=p) > -math.inf
        probs = logits.softmax(-1)
        for row in range(3):
            order = probs[row].argsort(descending=True)
            need = int((probs[row][order].cumsum(0) < p).sum()) + 1  # smallest prefix reaching p
            assert set(order[:need].tolist()) == set(kept[row].nonzero().flatten().tolist())
    kept = filter_logits(logits, top_k=4) > -math.inf
    assert (kept.sum(-1) == 4).all()
    assert torch.equal(filter_logits(logits, temperature=2.0), logits / 2)


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.999])
def test_top_p_over_a_big_vocabulary_keeps_what_a_full_sort_keeps(top_p):
    """outside_nucleus ranks only the likeliest k tokens (k doubling); the set must be the full sort's, for
    peaked rows (a few tokens), flat rows (thousands: k doubles up to the vocabulary) and banned tokens."""
    torch.manual_seed(1)
    V = 5000
    logits = torch.cat([torch.randn(2, V) * 4, torch.randn(2, V) * 0.05, torch.randn(1, V)])  # peaked, flat, mid
    logits[4, :100] = -math.inf  # banned tokens never count
    kept = outside_nucleus(logits, top_p).logical_not()
    probs = logits.softmax(-1)
    for row in range(logits.size(0)):
        sorted_probs, order = probs[row].sort(descending=True)
        need = int(((sorted_probs.cumsum(0) - sorted_probs) < top_p).sum())  # the full sort's rule
        assert set(order[:need].tolist()) == set(kept[row].nonzero().flatten().tolist())
    if top_p >= 0.9:
        assert int(kept[2].sum()) > 64  # a flat row's set is bigger than the first k: k had to double


@pytest.mark.parametrize("top_k, top_p", [(0, 0.9), (0, 0.5), (5, 1.0), (5, 0.8), (0, 1.0)])
def test_draw_samples_the_filtered_softmax(top_k, top_p):
    """draw picks among the nucleus's tokens only; its frequencies must be filter_logits's softmax (the
    distribution sampling always had), within what 40,000 draws allow, and nothing outside the set."""
    torch.manual_seed(2)
    scores = torch.randn(2, 300) * 3
    scores[1, :10] = -math.inf  # banned tokens are never drawn
    settings = DecodeSettings("sample", temperature=0.7, top_k=top_k, top_p=top_p)
    expected = filter_logits(scores, 0.7, top_k, top_p).softmax(dim=-1)  # (2, 300)
    generator = torch.Generator().manual_seed(0)
    n = 40_000
    drawn = torch.stack([draw(scores.repeat(100, 1), settings, generator).view(100, 2) for _ in range(n // 100)])
    for row in range(2):
        freq = torch.bincount(drawn[:, :, row].flatten(), minlength=300).double() / n
        assert (freq[expected[row] == 0] == 0).all()
        assert (freq - expected[row]).abs().max() < 4 * math.sqrt(0.25 / n)  # 4 standard errors at worst


def test_draw_repeats_for_a_seed():
    scores = torch.randn(3, 50)
    settings = DecodeSettings("sample", top_p=0.9)
    first = [draw(scores, settings, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(first[0], first[1])


def test_settings_are_validated():
    for bad in [
        dict(strategy="nucleus"),
        dict(beam_width=0),
        dict(temperature=0.0),
        dict(top_p=0.0),
        dict(top_p=1.5),
        dict(top_k=-1),
        dict(max_length=0),
        dict(min_length=-1),
    ]:
        with pytest.raises(ChatbotError):
            DecodeSettings(**bad)


def test_sampled_candidates_log_probs_are_the_models_own():
    """sample_candidates' log p(reply | query) equals the teacher-forced one for every finished reply, and a
    seed repeats the draws, though finished replies leave the batch as they end."""
    from chatbot.decode import sample_candidates
    from tests.chatbot.tinybot import sequence_log_prob

    model, voc = trained_model()
    fast = InferenceSeq2Seq(model)
    src = voc.encode("how are you ?") + [EOS_token]
    settings = DecodeSettings("sample", temperature=3.0, seed=5)
    replies, log_probs = sample_candidates(fast, src, 10, settings, 12)
    assert (replies, log_probs) == sample_candidates(fast, src, 10, settings, 12)
    assert len(replies) == 12 and len({tuple(r) for r in replies}) > 1
    for ids, lp in zip(replies, log_probs, strict=True):
        assert 0 < len(ids) <= 10 and EOS_token not in ids[:-1]
        if ids[-1] == EOS_token:
            assert lp == pytest.approx(sequence_log_prob(model, src, ids), abs=1e-4)
