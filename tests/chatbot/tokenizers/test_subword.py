"""SentencePiece: special ids shared with Voc, exact round trips in every script, save/load."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.normalize import normalize_string
from chatbot.tokenizers import (
    EOS_token,
    PAD_token,
    SentencePieceTokenizer,
    SOS_token,
    Tokenizer,
    UNK_token,
    load_tokenizer,
    tokenizer_from_state,
)

# A small mixed-script sample: English, accented European text, Chinese, Japanese, Russian, emoji.
SAMPLE = [
    "Where are you going tonight?",
    "Nowhere special. Just home.",
    "Aren't you coming to the party?",
    "I can't, I have to work early tomorrow.",
    "Café au lait, s'il vous plaît!",
    "Ça va? Très bien, merci.",
    "Grüße aus München, schöne Woche!",
    "¿Dónde está la estación?",
    "你好，你叫什么名字？",
    "我今天很高兴，因为天气很好。",
    "今日はいい天気ですね。",
    "Привет! Как дела?",
    "I ❤️ you 😀👍",
    "The 3 musketeers cost $25.99 — cheap!",
    "Emoji family 👨‍👩‍👧 and flags 🇫🇷",
    "Naïve coöperation at the résumé desk.",
] * 4


@pytest.fixture(scope="module")
def tokenizer() -> SentencePieceTokenizer:
    lines = [normalize_string(s, "unicode") for s in SAMPLE]
    return SentencePieceTokenizer.train(lines, vocab_size=400)


def test_special_ids_match_voc(tokenizer: SentencePieceTokenizer) -> None:
    assert isinstance(tokenizer, Tokenizer)
    assert (tokenizer.pad_id, tokenizer.sos_id, tokenizer.eos_id, tokenizer.unk_id) == (0, 1, 2, 3)
    sp = tokenizer.sp
    assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (PAD_token, SOS_token, EOS_token, UNK_token)
    assert 256 < len(tokenizer) <= 400  # byte fallback pieces plus learned pieces; the size is an upper bound


def test_round_trip_exact_on_every_sample_line(tokenizer: SentencePieceTokenizer) -> None:
    for line in SAMPLE:
        text = normalize_string(line, "unicode")
        ids = tokenizer.encode(text)
        assert UNK_token not in ids
        assert tokenizer.decode(ids) == text


def test_unseen_characters_fall_back_to_bytes_not_unk(tokenizer: SentencePieceTokenizer) -> None:
    text = normalize_string("Ωμέγα 🦄 ספר 鬱", "unicode")
    ids = tokenizer.encode(text)
    assert UNK_token not in ids
    assert tokenizer.decode(ids) == text


def test_decode_drops_special_and_out_of_range_ids(tokenizer: SentencePieceTokenizer) -> None:
    ids = tokenizer.encode("where are you going tonight ?")
    assert (
        tokenizer.decode([SOS_token, *ids, EOS_token, PAD_token, PAD_token, 10**6]) == "where are you going tonight ?"
    )


def test_state_dict_save_load_round_trip(tokenizer: SentencePieceTokenizer, tmp_path) -> None:
    tokenizer.save(tmp_path)
    text = normalize_string("我今天很高兴 😀", "unicode")
    torch.save({"tokenizer": tokenizer.state_dict()}, tmp_path / "ck.pt")
    state = torch.load(tmp_path / "ck.pt", weights_only=True)["tokenizer"]
    for other in (SentencePieceTokenizer.load(tmp_path), load_tokenizer(tmp_path), tokenizer_from_state(state)):
        assert other.kind == "sentencepiece"
        assert other.model_proto == tokenizer.model_proto
        assert other.encode(text) == tokenizer.encode(text)


def test_bpe_model_type_and_bad_type() -> None:
    bpe = SentencePieceTokenizer.train([normalize_string(s, "unicode") for s in SAMPLE], 350, model_type="bpe")
    text = normalize_string(SAMPLE[2], "unicode")
    assert bpe.decode(bpe.encode(text)) == text
    with pytest.raises(ValueError, match="model type"):
        SentencePieceTokenizer.train(["a b"], 300, model_type="wordpiece")


def test_model_with_wrong_special_ids_is_refused() -> None:
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SAMPLE), model_writer=model, vocab_size=130, minloglevel=2)
    with pytest.raises(ValueError, match="special ids"):
        SentencePieceTokenizer(model.getvalue())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_round_trip_property(tokenizer: SentencePieceTokenizer, text: str) -> None:
    # Any text, once normalized, comes back exactly (byte fallback covers characters never seen in training).
    normalized = normalize_string(text, "unicode")
    assert tokenizer.decode(tokenizer.encode(normalized)) == normalized


def test_garbled_spm_model_is_one_line(tmp_path) -> None:
    from chatbot.errors import ChatbotError

    (tmp_path / "spm.model").write_bytes(b"\x00not a model\xff" * 20)
    with pytest.raises(ChatbotError, match=r"spm.model is not a readable SentencePiece model \(") as err:
        SentencePieceTokenizer.load(tmp_path)
    assert "\n" not in str(err.value)
