"""Voc: the tutorial's counting, UNK for unknown words, a trim that keeps true counts, save/load."""

from __future__ import annotations

import json
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.errors import ChatbotError
from chatbot.tokenizers import (
    EOS_token,
    PAD_token,
    SOS_token,
    Tokenizer,
    UNK_token,
    Voc,
    load_tokenizer,
    tokenizer_from_state,
)


def small_voc() -> Voc:
    return Voc.from_sentences(["the cat sat .", "the dog sat .", "the cat ran !", "a bird ."])


def test_counts_and_indices_follow_first_sight() -> None:
    voc = small_voc()
    assert voc.word2index["the"] == 4  # 0..3 are PAD SOS EOS UNK
    assert voc.word2count == {"the": 3, "cat": 2, "sat": 2, ".": 3, "dog": 1, "ran": 1, "!": 1, "a": 1, "bird": 1}
    assert len(voc) == 4 + 9
    assert isinstance(voc, Tokenizer)
    assert (voc.pad_id, voc.sos_id, voc.eos_id, voc.unk_id) == (PAD_token, SOS_token, EOS_token, UNK_token)


def test_unknown_word_gives_unk_not_an_exception() -> None:
    voc = small_voc()
    ids = voc.encode("the zebra sat")
    assert ids == [voc.word2index["the"], UNK_token, voc.word2index["sat"]]
    assert voc.decode(ids) == "the UNK sat"


def test_trim_keeps_true_counts() -> None:
    voc = small_voc()
    keep = voc.trim(2)
    assert keep == ["the", "cat", "sat", "."]
    # The tutorial's trim re-added each kept word with count 1; the true counts survive here.
    assert voc.word2count == {"the": 3, "cat": 2, "sat": 2, ".": 3}
    assert [voc.word2index[w] for w in keep] == [4, 5, 6, 7]
    assert voc.encode("the dog") == [4, UNK_token]
    assert voc.trim(3) == keep  # a second trim is a no-op, as in the tutorial


def test_decode_drops_specials_and_out_of_range_ids() -> None:
    voc = small_voc()
    ids = [SOS_token, *voc.encode("the cat"), EOS_token, PAD_token, 999, -1]
    assert voc.decode(ids) == "the cat"


def test_save_load_and_state_dict_round_trip(tmp_path) -> None:
    voc = small_voc()
    voc.trim(2)
    voc.save(tmp_path)
    assert json.loads((tmp_path / "voc.json").read_text("utf-8"))["kind"] == "word"
    for loaded in (Voc.load(tmp_path), load_tokenizer(tmp_path), tokenizer_from_state(voc.state_dict())):
        assert loaded.word2index == voc.word2index and loaded.word2count == voc.word2count
        assert loaded.trimmed
    # The state is plain data: it survives torch.save / torch.load(weights_only=True) as a checkpoint holds it.
    torch.save({"tokenizer": voc.state_dict()}, tmp_path / "ck.pt")
    state = torch.load(tmp_path / "ck.pt", weights_only=True)["tokenizer"]
    assert Voc.from_state_dict(state).encode("the cat sat") == voc.encode("the cat sat")
    assert not list(tmp_path.glob("*.tmp"))


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzé你'.!?", min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(words, min_size=1, max_size=8), min_size=1, max_size=10))
def test_encode_decode_round_trip_for_known_words(sentences: list[list[str]]) -> None:
    texts = [" ".join(s) for s in sentences]
    voc = Voc.from_sentences(texts)
    for text in texts:
        assert voc.decode(voc.encode(text)) == text
        assert all(i >= 4 for i in voc.encode(text))


@settings(max_examples=200, deadline=None)
@given(st.lists(words, min_size=1, max_size=40), st.integers(1, 4))
def test_trim_keeps_exactly_the_frequent_words_with_their_counts(corpus: list[str], min_count: int) -> None:
    voc = Voc.from_sentences([" ".join(corpus)])
    before = dict(voc.word2count)
    voc.trim(min_count)
    assert voc.word2count == {w: c for w, c in before.items() if c >= min_count}
    assert sorted(voc.word2index.values()) == list(range(4, 4 + len(voc.word2count)))


@pytest.mark.parametrize(
    "content, reason",
    [
        (b'["the", "cat"]', "not a word-vocabulary state (a dict with kind 'word')"),
        (b'{"kind": "word", "words": ["a", "b"], "counts": [1]}', "lists of words and counts of the same length"),
        (b'{"kind": "word", "words": ["a", "a"], "counts": [1, 1]}', "words must be distinct non-empty strings"),
        (b'{"kind": "word", "words": ["a"], "counts": [-1]}', "counts must be integers >= 0"),
        (b'{"kind": "word", "wor', "Unterminated string"),
        (b"\xff\xfe\x00garbage", "can't decode byte"),
    ],
    ids=["list", "lengths", "repeats", "negative count", "truncated", "not utf-8"],
)
def test_bad_voc_json_is_one_line(tmp_path, content: bytes, reason: str) -> None:
    (tmp_path / "voc.json").write_bytes(content)
    with pytest.raises(ChatbotError) as err:
        load_tokenizer(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'voc.json'} is not a readable vocabulary (") and reason in message
    assert "\n" not in message


def test_saved_voc_json_has_a_normal_files_mode(tmp_path) -> None:
    umask = os.umask(0o022)
    try:
        small_voc().save(tmp_path)
    finally:
        os.umask(umask)
    assert (tmp_path / "voc.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
