"""`chatbot.overlap`: the tf-idf cosine of a query and a reply, and its table as checkpoint data."""

import math

import pytest

from chatbot.overlap import Overlap

LINES = ["where are you going ?", "i am going home .", "are you scared ?", "scared of what ?", "you are late ."]


def test_document_frequency_counts_lines_not_occurrences():
    table = Overlap.from_texts(LINES + ["go go go ."])
    assert table.documents == 6
    assert table.df["going"] == 2 and table.df["go"] == 1 and table.df["?"] == 3
    assert table.idf("scared") == pytest.approx(math.log(6 / 3))
    assert table.idf("unseen") == pytest.approx(math.log(6))  # never seen: the rarest weight
    assert Overlap(2, {"the": 2}).idf("the") == 0.0  # in every line: no weight, never negative


def test_scores_are_the_cosine_of_the_tfidf_vectors():
    table = Overlap.from_texts(LINES)
    same, disjoint, shared = table.scores(["are you scared ?"] * 3, ["are you scared ?", "i am home .", "scared ?"])
    assert float(same) == pytest.approx(1.0) and float(disjoint) == 0.0
    # by hand: the query's weights w(x) = idf(x), the reply's the same for "scared" and "?"
    idf = {w: math.log(5 / (1 + n)) for w, n in table.df.items()}
    q = {w: idf[w] for w in ["are", "you", "scared", "?"]}
    r = {w: idf[w] for w in ["scared", "?"]}
    expected = sum(q[w] * r[w] for w in r) / math.sqrt(sum(x * x for x in q.values()) * sum(x * x for x in r.values()))
    assert float(shared) == pytest.approx(expected)


def test_a_shared_rare_word_counts_more_than_a_shared_common_one():
    table = Overlap.from_texts(LINES)
    rare, common = table.scores(["are you scared ?", "are you scared ?"], ["scared .", "you ."])
    assert float(rare) > float(common) > 0
    assert table.scores([""], ["anything ."]).tolist() == [0.0]  # an empty text shares nothing
    with pytest.raises(ValueError):
        table.scores(["a"], [])


def test_the_table_round_trips_through_plain_data_aligned_with_the_tokenizer_words():
    table = Overlap.from_texts(LINES)
    words = ["you", "scared", "going", "zebra"]  # a tokenizer's words: others are dropped, as rare as unseen
    state = table.state_dict(words)
    assert state["df"].tolist() == [3, 2, 2, 0] and state["documents"] == 5
    back = Overlap.from_state(state, words)
    assert back.df == {"you": 3, "scared": 2, "going": 2}
    assert back.idf("home") == back.idf("zebra") == pytest.approx(math.log(5))
    with pytest.raises(ValueError, match="frequencies"):
        Overlap.from_state(state, words[:3])
