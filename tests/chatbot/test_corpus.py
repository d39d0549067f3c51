"""Corpus parsers (Cornell, ConvoKit, pairs), pair extraction, the split, and the tutorial's counts on real data."""

from __future__ import annotations

import csv
import gzip
import json
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.corpus import (
    Pair,
    detect_format,
    extract_pairs,
    pair_key,
    read_convokit,
    read_cornell,
    read_corpus,
    read_pairs,
    split_by_conversation,
)
from chatbot.errors import ChatbotError
from chatbot.normalize import normalize_string
from chatbot.prepare import PrepareConfig, prepare, tutorial_statistics

SAMPLE = Path(__file__).resolve().parents[2] / "corpus" / "sample"
SEP = " +++$+++ "


def write_cornell(folder: Path, lines: list[str], conversations: list[str]) -> Path:
    """Write the two original files as ISO-8859-1 bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movie_lines.txt").write_bytes(("\n".join(lines) + "\n").encode("iso-8859-1"))
    (folder / "movie_conversations.txt").write_bytes(("\n".join(conversations) + "\n").encode("iso-8859-1"))
    return folder


def test_cornell_parser_iso_8859_1_malformed_and_missing_ids(tmp_path: Path) -> None:
    lines = [
        f"L3{SEP}u1{SEP}m0{SEP}BOB{SEP}Très bien, merci.",  # é is one ISO-8859-1 byte (0xE9)
        f"L2{SEP}u0{SEP}m0{SEP}ANA{SEP}Ça va?",
        f"L1{SEP}u1{SEP}m0{SEP}BOB{SEP}Hello.",
        "this line is malformed",
        f"L5{SEP}u0{SEP}m0{SEP}ANA{SEP}Bye.",
        f"L6{SEP}u1{SEP}m0{SEP}BOB{SEP}Bye bye.",
        f"L7{SEP}u1{SEP}m0{SEP}BOB{SEP}   ",
    ]
    convs = [
        f"u0{SEP}u1{SEP}m0{SEP}['L1', 'L2', 'L3']",
        f"u0{SEP}u1{SEP}m0{SEP}['L5', 'L4', 'L6']",  # L4 does not exist: no pair may join L5 and L6
        f"u0{SEP}u1{SEP}m0{SEP}['L6', 'L7']",  # L7 is blank: its pair is dropped
        "garbage",
    ]
    corpus = read_cornell(write_cornell(tmp_path, lines, convs))
    assert corpus.malformed == 2
    assert corpus.malformed_examples[0].endswith("movie_lines.txt:4: expected 5 fields separated by '+++$+++'")
    assert corpus.missing_line_ids == 1
    pairs = [(p.query, p.response) for p in extract_pairs(corpus)]
    assert pairs == [("Hello.", "Ça va?"), ("Ça va?", "Très bien, merci.")]


def test_cornell_empty_files_give_no_pairs(tmp_path: Path) -> None:
    (tmp_path / "movie_lines.txt").write_bytes(b"")
    (tmp_path / "movie_conversations.txt").write_bytes(b"")
    assert extract_pairs(read_cornell(tmp_path)) == []


def test_convokit_reverse_order(tmp_path: Path) -> None:
    rows = [
        {"id": "L3", "conversation_id": "L1", "text": "Fine, thanks.", "speaker": "u0", "reply_to": "L2"},
        {"id": "L2", "conversation_id": "L1", "text": "How are you?", "speaker": "u1", "reply_to": "L1"},
        {"id": "L1", "conversation_id": "L1", "text": "Hi!", "speaker": "u0", "reply_to": None},
        {"id": "L9", "conversation_id": "L8", "text": "Yes.", "speaker": "u1", "reply_to": "L8"},
        {"id": "L8", "conversation_id": "L8", "text": "Ready? 😀", "speaker": "u0", "reply_to": None},
    ]
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows[:2]) + "\n{not json\n"
    text += "\n".join(json.dumps(r, ensure_ascii=False) for r in rows[2:]) + "\n"
    path = tmp_path / "utterances.jsonl"
    path.write_text(text, encoding="utf-8")
    corpus = read_convokit(tmp_path)
    assert corpus.malformed == 1 and "utterances.jsonl:3" in corpus.malformed_examples[0]
    assert corpus.conversations == {"L1": ["Hi!", "How are you?", "Fine, thanks."], "L8": ["Ready? 😀", "Yes."]}
    assert [(p.query, p.response, p.conversation) for p in extract_pairs(corpus)] == [
        ("Hi!", "How are you?", "L1"),
        ("How are you?", "Fine, thanks.", "L1"),
        ("Ready? 😀", "Yes.", "L8"),
    ]
    assert detect_format(tmp_path) == ("convokit", path)


def test_pairs_file_gzip_malformed_and_chained_conversations(tmp_path: Path) -> None:
    rows = ["A\tB", "B\tC", "no tab here", "X\tY", "Q\t", "你好\t你好！"]
    plain = tmp_path / "pairs.tsv"
    plain.write_text("\n".join(rows) + "\n", encoding="utf-8")
    gz = tmp_path / "pairs.tsv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, gz):
        corpus = read_corpus(path)
        assert corpus.fmt == "pairs" and corpus.malformed == 1
        pairs = extract_pairs(corpus)
        assert [(p.query, p.response) for p in pairs] == [("A", "B"), ("B", "C"), ("X", "Y"), ("你好", "你好！")]
        # A>B and B>C are adjacent lines of one dialogue: same conversation, so the same split.
        assert pairs[0].conversation == pairs[1].conversation != pairs[2].conversation


def test_pairs_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.tsv"
    path.write_bytes("ok\tfine\ncaf\xe9\tyes\n".encode("latin-1"))
    with pytest.raises(ChatbotError, match=r"latin1.tsv:2: not utf-8"):
        read_pairs(path)


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(SAMPLE) == ("cornell", SAMPLE)
    assert detect_format(SAMPLE / "movie_lines.txt") == ("cornell", SAMPLE)
    nested = write_cornell(tmp_path / "unzipped" / "cornell movie-dialogs corpus", ["x"], ["y"])
    assert detect_format(tmp_path / "unzipped") == ("cornell", nested)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ChatbotError, match="folder without a corpus"):
        detect_format(tmp_path / "empty")
    with pytest.raises(ChatbotError, match="does not exist"):
        detect_format(tmp_path / "nope")


def test_embedded_sample_parses_cleanly() -> None:
    corpus = read_cornell(SAMPLE)
    assert corpus.malformed == 0 and corpus.missing_line_ids == 0
    pairs = extract_pairs(corpus)
    assert len(corpus.conversations) > 150 and len(pairs) > 500
    assert any("é" in p.query + p.response for p in pairs)  # the ISO-8859-1 bytes decode to accents


def make_pairs(conversation_sizes: list[int]) -> list[Pair]:
    return [Pair(f"q{c}.{i}", f"r{c}.{i}", f"c{c}") for c, n in enumerate(conversation_sizes) for i in range(n)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=60), st.integers(0, 10**6))
def test_split_is_by_conversation_deterministic_and_complete(sizes: list[int], seed: int) -> None:
    pairs = make_pairs(sizes)
    train, valid, test = split_by_conversation(pairs, 0.1, 0.1, seed)
    assert split_by_conversation(pairs, 0.1, 0.1, seed) == (train, valid, test)
    assert sorted(map(id, train + valid + test)) == sorted(map(id, pairs))
    convs = [{p.conversation for p in s} for s in (train, valid, test)]
    assert not (convs[0] & convs[1] or convs[0] & convs[2] or convs[1] & convs[2])
    # A conversation's split is a function of its id alone: dropping other pairs (as a length filter
    # does) never moves it, so datasets prepared with different settings agree.
    where = {p.conversation: name for name, split in zip(SPLIT_NAMES, (train, valid, test), strict=False) for p in split}
    subset = [p for p in pairs if hash(p.conversation) % 3 == 0]
    for name, split in zip(SPLIT_NAMES, split_by_conversation(subset, 0.1, 0.1, seed), strict=True):
        assert all(where[p.conversation] == name for p in split)


SPLIT_NAMES = ("train", "valid", "test")


def test_split_fractions_and_seed() -> None:
    pairs = make_pairs([1] * 20_000)
    train, valid, test = split_by_conversation(pairs, 0.05, 0.1, seed=0)
    assert len(valid) / len(pairs) == pytest.approx(0.05, abs=0.006)
    assert len(test) / len(pairs) == pytest.approx(0.1, abs=0.006)
    other = split_by_conversation(pairs, 0.05, 0.1, seed=1)[2]
    assert {p.conversation for p in test} != {p.conversation for p in other}  # the seed picks another test set


def test_hold_out_pulls_whole_conversations_into_its_split() -> None:
    pairs = make_pairs([3, 3, 3, 3])  # conversations c0..c3 with pairs q{c}.{i} -> r{c}.{i}
    hold_out = {pair_key("q1.2", "r1.2"): "valid", pair_key("q2.0", "r2.0"): "test", pair_key("q3.1", "r3.1"): "valid"}
    hold_out[pair_key("q3.2", "r3.2")] = "test"  # c3 holds a valid and a test pair: test wins
    train, valid, test = split_by_conversation(pairs, 0.0, 0.0, seed=0, hold_out=hold_out)
    assert {p.conversation for p in train} == {"c0"}
    assert [p.query for p in valid] == ["q1.0", "q1.1", "q1.2"]
    assert {p.conversation for p in test} == {"c2", "c3"} and len(test) == 6


# --- the tutorial, step by step, on the real files (movies m0..m57) -----------------------------------


def tutorial_reference(folder: Path, tmp_path: Path, max_length: int = 10, min_count: int = 3) -> dict[str, int]:
    """The tutorial's own code path (original-zip version), written out here as the reference."""
    fields_lines = ["lineID", "characterID", "movieID", "character", "text"]
    fields_convs = ["character1ID", "character2ID", "movieID", "utteranceIDs"]
    lines = {}
    with open(folder / "movie_lines.txt", encoding="iso-8859-1") as f:
        for line in f:
            values = line.split(" +++$+++ ")
            obj = {field: values[i] for i, field in enumerate(fields_lines)}
            lines[obj["lineID"]] = obj
    conversations = []
    with open(folder / "movie_conversations.txt", encoding="iso-8859-1") as f:
        for line in f:
            values = line.split(" +++$+++ ")
            obj = {field: values[i] for i, field in enumerate(fields_convs)}
            obj["lines"] = [lines[i] for i in re.compile("L[0-9]+").findall(obj["utteranceIDs"])]
            conversations.append(obj)
    qa_pairs = []
    for conv in conversations:
        for i in range(len(conv["lines"]) - 1):
            input_line, target_line = conv["lines"][i]["text"].strip(), conv["lines"][i + 1]["text"].strip()
            if input_line and target_line:
                qa_pairs.append([input_line, target_line])
    datafile = tmp_path / "formatted_movie_lines.txt"
    with open(datafile, "w", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        for pair in qa_pairs:
            writer.writerow(pair)

    def normalize(s: str) -> str:
        s = "".join(c for c in unicodedata.normalize("NFD", s.lower().strip()) if unicodedata.category(c) != "Mn")
        s = re.sub(r"([.!?])", r" \1", s)
        s = re.sub(r"[^a-zA-Z.!?]+", r" ", s)
        return re.sub(r"\s+", r" ", s).strip()

    text_lines = open(datafile, encoding="utf-8").read().strip().split("\n")
    pairs = [[normalize(s) for s in line.split("\t")] for line in text_lines]
    counts = {"pairs_read": len(pairs)}
    pairs = [p for p in pairs if len(p[0].split(" ")) < max_length and len(p[1].split(" ")) < max_length]
    counts["pairs_filtered"] = len(pairs)
    word2count: dict[str, int] = {}
    for p in pairs:
        for s in p:
            for w in s.split(" "):
                word2count[w] = word2count.get(w, 0) + 1
    counts["words_counted"] = 3 + len(word2count)  # num_words starts at 3 (PAD, SOS, EOS)
    keep = {w for w, c in word2count.items() if c >= min_count}
    counts["keep_words"] = len(keep)
    counts["pairs_trimmed"] = len([p for p in pairs if all(w in keep for s in p for w in s.split(" "))])
    return counts


@pytest.mark.slow
def test_tutorial_counts_reproduced_on_real_cornell_files(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "cornell" / "raw_m0-m57"
    expected = tutorial_reference(folder, tmp_path)
    corpus = read_corpus(folder)
    assert corpus.fmt == "cornell" and corpus.malformed == 0 and corpus.missing_line_ids == 0
    pairs = [(normalize_string(p.query), normalize_string(p.response)) for p in extract_pairs(corpus)]
    got = tutorial_statistics(pairs, 10, 3)
    # ... and what `chatbot prepare` records in stats.json for the same folder
    recorded = prepare(folder, tmp_path / "ds", PrepareConfig())
    for step in ("pairs_read", "pairs_filtered", "words_counted", "keep_words", "pairs_trimmed"):
        assert got[step] == expected[step] == recorded[step], step
    # The reference run on these files gave 20,399 / 5,952 / 4,305 / 1,594 / 3,526 (README); a real run, not an empty one.
    assert expected["pairs_read"] > 20_000 and expected["pairs_trimmed"] > 3_000


def test_convokit_form_of_the_sample_gives_the_same_pairs(tmp_path: Path) -> None:
    # Rewrite the embedded sample as ConvoKit would publish it (UTF-8 JSON, each conversation newest first);
    # both parsers must then yield the same pairs in the same order.
    cornell = read_cornell(SAMPLE)
    rows = []
    for conv_id, lines in cornell.conversations.items():
        for i, text in reversed(list(enumerate(lines))):
            rows.append(
                json.dumps({"id": f"{conv_id}.{i}", "conversation_id": conv_id, "text": text}, ensure_ascii=False)
            )
    (tmp_path / "utterances.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    convokit = read_corpus(tmp_path)
    assert convokit.fmt == "convokit"
    as_tuples = lambda c: [(p.query, p.response, p.conversation) for p in extract_pairs(c)]  # noqa: E731
    assert as_tuples(convokit) == as_tuples(cornell)


pair_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"), min_size=1, max_size=30)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(pair_text, pair_text), max_size=20), st.booleans())
def test_pairs_file_round_trip_property(rows: list[tuple[str, str]], gz: bool) -> None:
    # Any text without tabs and newlines survives writing and reading a pairs file; rows with a blank
    # side are the only ones dropped.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("p.tsv.gz" if gz else "p.tsv")
        data = "".join(f"{q}\t{r}\n" for q, r in rows).encode("utf-8")
        path.write_bytes(gzip.compress(data) if gz else data)
        corpus = read_pairs(path)
        got = [(p.query, p.response) for p in extract_pairs(corpus)]
    assert corpus.malformed == 0
    assert got == [(q, r) for q, r in rows if q.strip() and r.strip()]
