"""`chatbot evaluate`: metrics checked against hand counts, and the command end to end."""

import json
import time

import pytest

from chatbot.cli import main
from chatbot.evaluate import PROBES, distinct_n, evaluate, perplexity, read_pairs, to_markdown, top10_share
from chatbot.reply import Chatbot, DecodeSettings
from tests.chatbot.tinybot import PAIRS, one_thread, random_model, trained_model, write_checkpoint  # noqa: F401


def test_distinct_and_top10_share_by_hand():
    replies = ["i don t know .", "i don t know .", "yes .", "no no no"]
    # unigrams: 5 + 5 + 2 + 3 = 15 total, unique {i, don, t, know, ., yes, no} = 7
    assert distinct_n(replies, 1) == pytest.approx(7 / 15)
    # bigrams: 4 + 4 + 1 + 2 = 11 total; unique: (i,don)(don,t)(t,know)(know,.)(yes,.)(no,no) = 6
    assert distinct_n(replies, 2) == pytest.approx(6 / 11)
    assert top10_share(replies) == 1.0  # only 3 distinct replies
    many = [f"reply {i}" for i in range(20)] + ["dull"] * 20
    assert top10_share(many) == pytest.approx((20 + 9) / 40)
    assert distinct_n([], 2) == 0.0


def test_perplexity_learnt_pairs_are_likely_random_model_is_not():
    model, voc = trained_model()
    trained = perplexity(Chatbot(model, voc), PAIRS)
    untrained = perplexity(Chatbot(random_model(len(voc), seed=1, hidden=32), voc), PAIRS)
    assert 1.0 <= trained < 2.0  # it has (nearly) memorised them
    assert untrained > 0.5 * len(voc)  # near uniform over the vocabulary


def test_report_contents():
    model, voc = trained_model()
    bot = Chatbot(model, voc, "tutorial", 10, "tiny")
    report = evaluate(bot, PAIRS, ["greedy", "beam", "sample"], DecodeSettings(seed=1))
    assert set(report["strategies"]) == {"greedy", "beam", "sample"}
    greedy = report["strategies"]["greedy"]
    assert greedy["bleu"] == pytest.approx(100.0)  # every learnt reply reproduced exactly
    assert greedy["top10_share"] == 1.0 and greedy["perplexity"] == report["perplexity"]
    assert list(report["probes"]) == PROBES
    assert report["probes"]["How are you?"]["greedy"] == bot.reply("How are you?")
    markdown = to_markdown(report)
    assert "| greedy |" in markdown and "| How are you? |" in markdown


def test_read_pairs_from_tsv(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("hello .\thi .\nno tab here\nhow are you ?\ti m fine .\n", encoding="utf-8")
    assert read_pairs(path) == [("hello .", "hi ."), ("how are you ?", "i m fine .")]


def test_evaluate_command_writes_json_and_markdown_quickly(tmp_path, capsys):
    model, voc = trained_model()
    ckpt = write_checkpoint(tmp_path / "m.pt", model, voc)
    data = tmp_path / "test.tsv"
    data.write_text("".join(f"{q}\t{r}\n" for q, r in PAIRS * 25), encoding="utf-8")  # 200 pairs
    start = time.perf_counter()
    code = main(["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "out")])
    assert code == 0 and time.perf_counter() - start < 60
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["pairs"] == 200 and set(report["strategies"]) == {"greedy", "beam", "sample"}
    assert (tmp_path / "out" / "report.md").read_text().startswith("Model: ")


def test_evaluate_command_bad_data_is_one_line(tmp_path, capsys):
    model, voc = trained_model()
    ckpt = write_checkpoint(tmp_path / "m.pt", model, voc)
    empty = tmp_path / "empty.tsv"
    empty.write_text("no tabs\n")
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(empty)]) == 1
    assert "error:" in capsys.readouterr().err
