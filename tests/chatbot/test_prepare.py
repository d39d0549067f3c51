"""`chatbot prepare` and `load_prepared`: the dataset folder, its statistics, and bad input."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import pytest

from chatbot.cli import main
from chatbot.errors import ChatbotError
from chatbot.normalize import normalize_string
from chatbot.prepare import PrepareConfig, load_prepared, prepare
from chatbot.tokenizers import SentencePieceTokenizer, Voc
from tests.chatbot.sentinels import assert_one_line_refusal, plant_notes, snapshot

SAMPLE = Path(__file__).resolve().parents[2] / "corpus" / "sample"
TUTORIAL_KEYS = ("pairs_read", "pairs_filtered", "words_counted", "keep_words", "pairs_trimmed")


def run_cli(*argv: str) -> int:
    return main(["prepare", *map(str, argv)])


def test_word_dataset_from_the_embedded_sample(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ds"
    assert run_cli(SAMPLE, "--out", out) == 0
    printed = capsys.readouterr().out
    data = load_prepared(out)
    stats = json.loads((out / "stats.json").read_text("utf-8"))
    assert data.stats == stats and data.normalize == "tutorial" and data.max_length == 10
    assert isinstance(data.tokenizer, Voc) and (out / "voc.json").is_file()
    # The tutorial's lines are printed with the numbers stats.json records.
    assert f"Read {stats['pairs_read']} sentence pairs" in printed
    assert f"Counted words: {stats['words_counted']}" in printed
    assert f"Trimmed from {stats['pairs_filtered']} pairs to {stats['pairs_trimmed']}" in printed
    assert stats["pairs_read"] >= stats["pairs_filtered"] >= stats["pairs_trimmed"] > 0
    assert stats["words_counted"] == stats["words_before_trim"] + 3
    assert [stats[s] for s in ("train", "valid", "test")] == [len(data.train), len(data.valid), len(data.test)]
    assert data.valid and data.test
    # Every pair is normalized and short; training pairs use only vocabulary words (the tutorial's trim).
    for q, r in data.train + data.valid + data.test:
        for s in (q, r):
            assert s and normalize_string(s) == s and len(s.split()) < 10
    assert all(data.tokenizer.unk_id not in data.tokenizer.encode(s) for p in data.train for s in p)
    assert all(c >= 3 for c in data.tokenizer.word2count.values())


def test_sentencepiece_dataset_round_trips_and_counts_pieces(tmp_path: Path) -> None:
    out = tmp_path / "sp"
    assert (
        run_cli(SAMPLE, "--out", out, "--tokenizer", "sentencepiece", "--vocab-size", "600", "--max-length", "12") == 0
    )
    data = load_prepared(out)
    assert isinstance(data.tokenizer, SentencePieceTokenizer) and (out / "spm.model").is_file()
    assert data.stats["tokenizer"] == "sentencepiece" and data.max_length == 12
    for q, r in data.train + data.valid + data.test:
        for s in (q, r):
            ids = data.tokenizer.encode(s)
            assert len(ids) < 12 and data.tokenizer.unk_id not in ids
            assert data.tokenizer.decode(ids) == s


def test_unicode_pairs_sample_keeps_every_script(tmp_path: Path) -> None:
    out = tmp_path / "multi"
    code = run_cli(
        SAMPLE / "pairs_multilingual.tsv",
        *("--out", out, "--normalize", "unicode", "--tokenizer", "sentencepiece", "--max-length", "40"),
    )
    assert code == 0
    data = load_prepared(out)
    text = "\n".join(s for p in data.train + data.valid + data.test for s in p)
    for piece in ("你好", "ça va", "привет", "❤️", "25.99"):
        assert piece in text
    for s in text.split("\n"):
        assert data.tokenizer.decode(data.tokenizer.encode(s)) == s


def test_split_is_deterministic_and_seeded(tmp_path: Path) -> None:
    a = prepare(SAMPLE, tmp_path / "a", PrepareConfig(seed=1))
    prepare(SAMPLE, tmp_path / "b", PrepareConfig(seed=1))
    c = prepare(SAMPLE, tmp_path / "c", PrepareConfig(seed=2))
    assert (tmp_path / "a" / "test.tsv").read_bytes() == (tmp_path / "b" / "test.tsv").read_bytes()
    assert (tmp_path / "a" / "test.tsv").read_bytes() != (tmp_path / "c" / "test.tsv").read_bytes()
    assert all(a[k] == c[k] for k in TUTORIAL_KEYS)  # the tutorial's numbers do not depend on the split


def test_dedupe_drops_repeated_pairs(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("Hi!\tHello.\nhi\tHello!\nHow are you?\tFine.\n" * 5, encoding="utf-8")
    stats = prepare(path, tmp_path / "d", PrepareConfig(dedupe=True, min_count=1, valid_fraction=0, test_fraction=0))
    assert stats["duplicates_removed"] == 12 and stats["train"] == 3


def test_force_replaces_and_refuses_without_it(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ds"
    assert run_cli(SAMPLE, "--out", out) == 0
    assert run_cli(SAMPLE, "--out", out) == 1
    assert "already exists" in capsys.readouterr().err
    assert run_cli(SAMPLE, "--out", out, "--force", "--tokenizer", "sentencepiece", "--vocab-size", "500") == 0
    assert (out / "spm.model").is_file() and not (out / "voc.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp or old folders left behind


def bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Each bad input -> (extra argv, a phrase the one-line error must contain)."""
    (tmp / "emptydir").mkdir()
    (tmp / "binary.tsv").write_bytes(bytes(range(256)) * 4)
    (tmp / "empty.tsv").write_bytes(b"")
    (tmp / "zh.tsv").write_text("你好\t你好！\n谢谢\t不客气\n", encoding="utf-8")  # tutorial mode deletes it all
    (tmp / "long.tsv").write_text("one two three four five\tsix seven eight nine ten\n", encoding="utf-8")
    (tmp / "notgz.tsv.gz").write_bytes(b"plain text, not gzip\n")
    (tmp / "corpus.zip").write_bytes(b"PK\x03\x04")
    (tmp / "convokit").mkdir()
    (tmp / "convokit" / "utterances.jsonl").write_bytes(b"")
    return {
        "missing path": ([str(tmp / "missing")], "does not exist"),
        "a directory": ([str(tmp / "emptydir")], "folder without a corpus"),
        "wrong format": ([str(tmp / "binary.tsv")], "not utf-8"),
        "wrong format flag": ([str(SAMPLE / "pairs_multilingual.tsv"), "--format", "cornell"], "not a Cornell file"),
        "a zip": ([str(tmp / "corpus.zip")], "unpack it first"),
        "bad gzip": ([str(tmp / "notgz.tsv.gz")], "cannot read"),
        "empty corpus": ([str(tmp / "empty.tsv")], "no pairs"),
        "empty convokit corpus": ([str(tmp / "convokit")], "no pairs"),
        "all empty after normalizing": ([str(tmp / "zh.tsv")], "filtered out"),
        "all too long": ([str(tmp / "long.tsv"), "--max-length", "3"], "filtered out"),
    }


BAD_CASES = [
    "missing path",
    "a directory",
    "wrong format",
    "wrong format flag",
    "a zip",
    "bad gzip",
    "empty corpus",
    "empty convokit corpus",
    "all empty after normalizing",
    "all too long",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_gives_one_line_and_no_output(case: str, tmp_path: Path, capsys) -> None:
    argv, phrase = bad_inputs(tmp_path)[case]
    out = tmp_path / "out" / "ds"
    assert run_cli(*argv, "--out", out) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("chatbot prepare: error:") and phrase in err, err
    assert not out.exists()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_out_under_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    assert run_cli(SAMPLE, "--out", tmp_path / "file" / "ds") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the dataset folder" in err


def test_load_prepared_errors(tmp_path: Path) -> None:
    with pytest.raises(ChatbotError, match="not a prepared dataset folder"):
        load_prepared(tmp_path / "missing")
    prepare(SAMPLE, tmp_path / "ds", PrepareConfig())
    (tmp_path / "ds" / "valid.tsv").write_text("no tab\n", encoding="utf-8")
    with pytest.raises(ChatbotError, match=r"valid.tsv:1: expected query<TAB>response"):
        load_prepared(tmp_path / "ds")
    (tmp_path / "ds" / "voc.json").unlink()
    with pytest.raises(ChatbotError, match="no tokenizer"):
        load_prepared(tmp_path / "ds")
    (tmp_path / "ds" / "stats.json").unlink()
    with pytest.raises(ChatbotError, match="missing stats.json"):
        load_prepared(tmp_path / "ds")


GARBLED = {  # name -> (file, what to write given its current JSON, what the one-line refusal must say)
    "max_length a string": (
        "stats.json",
        lambda d: {**d, "max_length": "ten"},
        "max_length ('ten'): must be an integer in 2..10000",
    ),
    "max_length 0": ("stats.json", lambda d: {**d, "max_length": 0}, "max_length (0): must be an integer in 2..10000"),
    "max_length a bool": (
        "stats.json",
        lambda d: {**d, "max_length": True},
        "max_length (True): must be an integer in",
    ),
    "unknown normalize": (
        "stats.json",
        lambda d: {**d, "normalize": "shout"},
        "normalize ('shout'): must be one of tutorial, unicode",
    ),
    "unknown tokenizer": (
        "stats.json",
        lambda d: {**d, "tokenizer": "bpe"},
        "tokenizer ('bpe'): must be one of word, sentencepiece",
    ),
    "stats a list": ("stats.json", lambda d: [d], "stats.json is a JSON list, not an object"),
    "no max_length": ("stats.json", lambda d: {"normalize": "tutorial"}, "stats.json has no max_length field"),
    "another voc's size": (
        "stats.json",
        lambda d: {**d, "tokenizer_size": 7},
        "records tokenizer_size 7, but the folder's tokenizer has",
    ),
    "voc a list": ("voc.json", lambda d: [d], "voc.json is not a readable vocabulary"),
    "voc without words": (
        "voc.json",
        lambda d: {k: v for k, v in d.items() if k != "words"},
        "voc.json is not a readable",
    ),
    "voc counts not ints": ("voc.json", lambda d: {**d, "counts": ["x"] * len(d["counts"])}, "counts must be integers"),
    "voc words repeated": ("voc.json", lambda d: {**d, "words": d["words"][:1] * len(d["words"])}, "must be distinct"),
    "voc of another dataset": (
        "voc.json",
        lambda d: {**d, "words": d["words"][:-2], "counts": d["counts"][:-2]},
        "but the folder's tokenizer has",
    ),
}


@pytest.mark.parametrize("case", list(GARBLED))
def test_garbled_stats_or_voc_is_refused_at_load_in_one_line(case: str, tmp_path: Path) -> None:
    prepare(SAMPLE, tmp_path / "ds", PrepareConfig())
    load_prepared(tmp_path / "ds")  # the folder as written loads
    name, garble, reason = GARBLED[case]
    path = tmp_path / "ds" / name
    path.write_text(json.dumps(garble(json.loads(path.read_text("utf-8")))), encoding="utf-8")
    with pytest.raises(ChatbotError) as refusal:
        load_prepared(tmp_path / "ds")
    message = str(refusal.value)
    assert reason in message and "\n" not in message and message.startswith(str(tmp_path / "ds")), message


def test_help_lists_every_flag(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_cli("--help")
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--out",
        "--format",
        "--normalize",
        "--tokenizer",
        "--max-length",
        "--min-count",
        "--vocab-size",
        "--dedupe",
        "--seed",
    ):
        assert flag in text


@pytest.mark.slow
def test_chinese_xiaohuangji_unicode_sentencepiece(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "zh"
    argv = ["--out", out, "--normalize", "unicode", "--tokenizer", "sentencepiece"]
    assert run_cli(shared_data / "zh" / "xiaohuangji_80k.tsv", *argv) == 0
    data = load_prepared(out)
    tok = data.tokenizer
    assert len(data.train) > 40_000 and len(data.test) > 1_000
    lines = [
        normalize_string(s, "unicode")
        for line in (shared_data / "zh" / "xiaohuangji_80k.tsv").read_text("utf-8").splitlines()
        for s in line.split("\t")
    ]
    for s in random.Random(0).sample(lines, 1000):
        assert tok.decode(tok.encode(s)) == s
    ids = [i for p in data.test for s in p for i in tok.encode(s)]
    assert sum(i == tok.unk_id for i in ids) / len(ids) < 0.005
    # Byte fallback hides rare characters from the UNK count (they are spelled exactly as UTF-8 bytes
    # instead), so count byte pieces too: still rare (0.47 % measured, see README).
    assert sum(tok.sp.is_byte(i) for i in ids) / len(ids) < 0.01


@pytest.mark.slow
def test_pairs_all_movies_with_8000_pieces(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cornell"
    path = shared_data / "cornell" / "pairs_all_movies.tsv"
    assert run_cli(path, "--out", out, "--tokenizer", "sentencepiece", "--vocab-size", "8000") == 0
    data = load_prepared(out)
    assert data.stats["pairs_read"] == 145_685 - 171  # the 171 rows with an empty side are dropped
    assert len(data.tokenizer) == 8000
    assert data.stats["unk_rate_test"] == 0.0
    gz = tmp_path / "pairs.tsv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    stats = prepare(gz, tmp_path / "gz", PrepareConfig())
    assert stats["pairs_read"] == data.stats["pairs_read"] and stats["pairs_trimmed"] == data.stats["pairs_trimmed"]


def test_script_form_runs_from_a_checkout(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "prepare.py"
    done = subprocess.run(
        [sys.executable, script, SAMPLE, "--out", tmp_path / "ds"], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert load_prepared(tmp_path / "ds").train
    done = subprocess.run(
        [sys.executable, script, tmp_path / "missing", "--out", tmp_path / "x"], capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "does not exist" in done.stderr


# --- the quality options: hold-out, probe exclusion, the generic-reply filter, swapped pairs ------------


def write_pairs(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{q}\t{r}\n" for q, r in pairs), encoding="utf-8")
    return path


def word(i: int) -> str:
    """A number spelt in letters (the tutorial's normalization drops digits): 12 -> "bc"."""
    return "".join(chr(ord("a") + int(d)) for d in str(i))


def generic_corpus() -> list[tuple[str, str]]:
    """40 queries answered "I don't know." (generic: entropy log2(40) = 5.3 bits), 3 answered "Yes."
    (log2(3) = 1.6 bits), and 30 specific replies that follow one query each (0 bits)."""
    pairs = [(f"question number {word(i)} ?", "I don't know.") for i in range(40)]
    pairs += [(f"is it {c} ?", "Yes.") for c in "abc"]
    pairs += [(f"tell me about thing {word(i)} .", f"thing {word(i)} is round .") for i in range(30)]
    return pairs


def test_entropy_filter_removes_exactly_the_pairs_it_reports(tmp_path: Path, capsys) -> None:
    from chatbot.corpus import Pair
    from chatbot.prepare import reply_entropy

    corpus = write_pairs(tmp_path / "pairs.tsv", generic_corpus())
    entropy = reply_entropy([Pair(q, r, "") for q, r in generic_corpus()])
    assert entropy["I don't know."] == pytest.approx(math.log2(40)) and entropy["Yes."] == pytest.approx(math.log2(3))
    config = dict(min_count=1, valid_fraction=0, test_fraction=0)
    plain = prepare(corpus, tmp_path / "plain", PrepareConfig(**config))
    stats = prepare(corpus, tmp_path / "filtered", PrepareConfig(**config, max_entropy=2.0), log=print)
    kept, everything = load_prepared(tmp_path / "filtered").train, load_prepared(tmp_path / "plain").train
    removed = [p for p in everything if p not in kept]
    assert stats["entropy_removed"] == len(removed) == 40 == plain["train"] - stats["train"]
    assert {r for _, r in removed} == {"i don t know ."} and stats["entropy_removed_top"] == [("i don t know .", 40)]
    assert "removed 40 of 73 training pairs" in capsys.readouterr().out
    assert all(r != "i don t know ." for _, r in kept) and ("is it a ?", "yes .") in kept


def test_exclude_queries_keeps_probe_prompts_out_of_training(tmp_path: Path) -> None:
    pairs = [("Hello?", "Hi."), ("HELLO ?", "Hey."), ("Who are you?", "Bob."), ("Where am I?", "Home.")] * 3
    corpus = write_pairs(tmp_path / "pairs.tsv", pairs)
    probes = tmp_path / "probes.tsv"
    probes.write_text("hello?\thello .\nwho are you?\n", encoding="utf-8")  # the tutorial file's layout
    stats = prepare(
        corpus,
        tmp_path / "ds",
        PrepareConfig(min_count=1, valid_fraction=0, test_fraction=0, exclude_queries=str(probes)),
    )
    train = load_prepared(tmp_path / "ds").train
    assert {q for q, _ in train} == {"where am i ?"}  # "Hello?" and "HELLO ?" normalize alike
    assert stats["excluded_query_pairs"] == 9


def test_hold_out_and_swap(tmp_path: Path) -> None:
    from chatbot.corpus import pair_key

    pairs = [(f"line {word(i)} .", f"line {word(i + 1)} .") for i in range(60)]  # a chain A>B, B>C: one conversation
    pairs += [(f"solo query {word(i)} .", f"solo reply {word(i)} .") for i in range(30)]  # each its own
    corpus = write_pairs(tmp_path / "pairs.tsv", pairs)
    hold = tmp_path / "hold.json"
    hold.write_text(json.dumps({"valid": [], "test": [pair_key("solo query d .", "solo reply d .")]}))
    config = PrepareConfig(min_count=1, valid_fraction=0, test_fraction=0, hold_out=str(hold))
    prepare(corpus, tmp_path / "ds", config)
    data = load_prepared(tmp_path / "ds")
    assert data.test == [("solo query d .", "solo reply d .")] and data.valid == []
    prepare(corpus, tmp_path / "swapped", PrepareConfig(**{**config.__dict__, "swap": True}))
    swapped = load_prepared(tmp_path / "swapped")
    assert swapped.train == [(r, q) for q, r in data.train] and swapped.test == [(r, q) for q, r in data.test]
    assert swapped.tokenizer.state_dict() == data.tokenizer.state_dict()


def test_bad_hold_out_file_is_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "hold.json"
    bad.write_text("[1, 2]")
    assert run_cli(SAMPLE, "--out", tmp_path / "ds", "--hold-out", bad) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--hold-out" in err and not (tmp_path / "ds").exists()


@pytest.mark.slow
def test_the_first_models_held_out_pairs_and_the_probes_stay_out_of_training(shared_data: Path, tmp_path: Path) -> None:
    """The shipped recipe's dataset (README): no pair of the first model's valid/test splits (by key) and no
    probe prompt as a query is in its training split, and the hash split agrees across max lengths."""
    from chatbot.corpus import pair_key
    from chatbot.evaluate import PROBES, TUTORIAL

    repo = Path(__file__).resolve().parents[2]
    hold_out = json.loads((repo / "corpus" / "hold_out" / "cornell-v1.json").read_text())
    held = set(hold_out["valid"]) | set(hold_out["test"])
    probes = ",".join(str(repo / "chatbot" / "probes" / n) for n in ("tutorial.tsv", "everyday.txt"))
    path = shared_data / "cornell" / "pairs_all_movies.tsv"
    common = ["--hold-out", repo / "corpus" / "hold_out" / "cornell-v1.json", "--exclude-queries", probes]
    assert run_cli(path, "--out", tmp_path / "w20", "--max-length", "20", "--max-entropy", "4", *common) == 0
    assert run_cli(path, "--out", tmp_path / "w10", "--max-length", "10", *common) == 0
    w20, w10 = load_prepared(tmp_path / "w20"), load_prepared(tmp_path / "w10")
    assert not any(pair_key(q, r) in held for q, r in w20.train + w10.train)
    assert sum(pair_key(q, r) in held for q, r in w20.valid + w20.test) >= len(held)  # every held pair is there
    prompts = {normalize_string(p, "tutorial") for p in PROBES + [p for p, _ in TUTORIAL]}
    assert not any(q in prompts for q, _ in w20.train)
    # The split is a function of the conversation: a short pair is in the same split in both datasets.
    for name in ("valid", "test"):
        assert set(getattr(w10, name)) <= set(getattr(w20, name))


def test_force_never_replaces_what_prepare_did_not_write(tmp_path: Path, capsys) -> None:
    """With or without --force: not the input corpus, not a folder holding it, notes, a file, or a training run."""
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus)
    notes = plant_notes(tmp_path / "notes")
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me too")
    run = tmp_path / "run"  # another command's output: a training run
    run.mkdir()
    (run / "last.pt").write_bytes(b"PK\x03\x04 weights")
    (run / "log.jsonl").write_text('{"step": 1}\n')
    before = snapshot(tmp_path)
    for out in (corpus, notes, a_file, tmp_path, run):
        for force in (["--force"], []):
            code = run_cli(corpus, "--out", out, *force)
            assert_one_line_refusal(code, capsys.readouterr().err, "prepare", str(out))
    assert snapshot(tmp_path) == before
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind
    # An earlier dataset folder is replaced (atomically), and the replacement is complete.
    out = tmp_path / "ds"
    assert run_cli(corpus, "--out", out, "--min-count", "1") == 0
    assert run_cli(corpus, "--out", out, "--force") == 0
    assert load_prepared(out).stats["config"]["min_count"] == 3
