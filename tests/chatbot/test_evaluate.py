"""`chatbot evaluate`: metrics checked against hand counts, and the command end to end."""

import json
import math
import time

import pytest
import torch

from chatbot.cli import main
from chatbot.errors import ChatbotError
from chatbot.evaluate import (
    PROBES,
    TUTORIAL,
    PairScores,
    candidate_sets,
    distinct_n,
    evaluate,
    exclude_trained,
    hits_at_1,
    read_pairs,
    to_markdown,
    top10_share,
)
from chatbot.model.network import Seq2Seq
from chatbot.reply import Chatbot, DecodeSettings
from chatbot.tokenizers import Voc
from tests.chatbot.sentinels import assert_one_line_refusal, plant_notes, snapshot
from tests.chatbot.server import default_sigint
from tests.chatbot.tinybot import PAIRS, REPO_ROOT, make_voc, one_thread, random_model, trained_model, write_checkpoint  # noqa: F401


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
    trained, trained_word = PairScores(Chatbot(model, voc), PAIRS, k=4).perplexity()
    untrained, _ = PairScores(Chatbot(random_model(len(voc), seed=1, hidden=32), voc), PAIRS, k=4).perplexity()
    assert 1.0 <= trained < 2.0  # it has (nearly) memorised them
    assert untrained > 0.5 * len(voc)  # near uniform over the vocabulary
    # A word tokenizer has one token per word (+ EOS), so perplexity per word is perplexity per token.
    assert trained_word == pytest.approx(trained, rel=1e-12)


def test_perplexity_per_word_divides_by_words_not_tokens():
    model, voc = trained_model()
    scores = PairScores(Chatbot(model, voc), PAIRS, k=4)
    nll = -float(scores.forward[:, 0].sum())
    n_words = sum(len(r.split()) + 1 for _, r in PAIRS)
    assert scores.perplexity()[1] == pytest.approx(math.exp(nll / n_words))


def test_candidate_sets_hold_the_true_reply_first_and_distinct_others():
    sets = candidate_sets(30, k=20, seed=3)
    assert candidate_sets(30, k=20, seed=3) == sets
    for i, row in enumerate(sets):
        assert row[0] == i and len(set(row)) == 20 and i not in row[1:] and all(0 <= j < 30 for j in row)
    with pytest.raises(ChatbotError, match="at least 20 pairs"):
        candidate_sets(19)


def test_hits_at_1_preferring_true_is_1_uniform_is_1_over_k():
    preferring = torch.zeros(50, 20)
    preferring[:, 0] = 1.0
    assert hits_at_1(preferring) == 1.0
    assert hits_at_1(torch.zeros(50, 20)) == pytest.approx(1 / 20)  # every candidate alike: ties
    assert hits_at_1(-preferring) == 0.0
    noise = torch.randn(20_000, 20, generator=torch.Generator().manual_seed(0))
    assert hits_at_1(noise) == pytest.approx(1 / 20, abs=0.006)  # scores unrelated to the truth: chance


def uniform_model(vocab_size: int) -> Seq2Seq:
    """A model whose next-token distribution is uniform whatever the input: zero output layer."""
    model = random_model(vocab_size, seed=0, hidden=16)
    with torch.no_grad():
        model.decoder.out.weight.zero_()
        model.decoder.out.bias.zero_()
    return model


def test_hits_at_1_of_a_memorising_model_is_1_and_of_a_uniform_model_1_over_k():
    model, voc = trained_model()
    k = len(PAIRS)  # every pair's candidates are all the replies
    assert hits_at_1(PairScores(Chatbot(model, voc), PAIRS, k=k).forward) == 1.0
    # Replies of one length, so the uniform model gives every candidate the same log-probability.
    pairs = [(f"w{i} .", f"w{i} w{i + 1} .") for i in range(40)]
    voc40 = Voc.from_sentences(s for p in pairs for s in p)
    scores = PairScores(Chatbot(uniform_model(len(voc40)), voc40), pairs)
    assert scores.forward.std() < 1e-9
    assert hits_at_1(scores.forward) == pytest.approx(1 / 20)


def test_exclude_trained_drops_exactly_the_trained_pairs():
    pairs = [("a .", "b ."), ("c .", "d ."), ("a .", "b ."), ("e .", "f .")]
    assert exclude_trained(pairs, {("a .", "b ."), ("x .", "y .")}) == [("c .", "d ."), ("e .", "f .")]


def test_report_contents():
    model, voc = trained_model()
    bot = Chatbot(model, voc, "tutorial", 10, "tiny")
    pairs = PAIRS * 3  # hits@1/20 needs 20 pairs
    report = evaluate(bot, pairs, ["greedy", "beam", "sample"], DecodeSettings(seed=1))
    assert set(report["strategies"]) == {"greedy", "beam", "sample"}
    greedy = report["strategies"]["greedy"]
    assert greedy["bleu"] == pytest.approx(100.0)  # every learnt reply reproduced exactly
    assert greedy["top10_share"] == 1.0 and greedy["perplexity"] == report["perplexity"]
    assert 0 <= greedy["hits_at_1"] <= 1
    assert list(report["probes"]) == PROBES
    assert report["probes"][PROBES[1]]["greedy"] == bot.reply(PROBES[1])
    assert [row["prompt"] for row in report["tutorial"]] == [p for p, _ in TUTORIAL] and len(TUTORIAL) == 10
    assert report["tutorial"][0]["tutorial"] == "hello ."
    markdown = to_markdown(report)
    assert "| greedy |" in markdown and f"| {PROBES[1]} |" in markdown and "| hello? | hello . |" in markdown


def test_rerank_without_a_backward_model_is_one_line():
    model, voc = trained_model()
    with pytest.raises(ChatbotError, match="--backward"):  # a weight for a backward model that is not there
        evaluate(Chatbot(model, voc), PAIRS * 3, ["rerank"], DecodeSettings(seed=1, mmi_lambda=1.0))
    report = evaluate(Chatbot(model, voc), PAIRS * 3, ["rerank"], DecodeSettings(seed=1))  # the default: lambda 0
    assert set(report["strategies"]) == {"rerank"}


def test_compare_two_checkpoints_on_the_same_pairs(tmp_path, capsys):
    model, voc = trained_model()
    a = write_checkpoint(tmp_path / "a.pt", model, voc)
    b = write_checkpoint(tmp_path / "b.pt", random_model(len(voc), seed=2, hidden=32), voc)
    data = tmp_path / "test.tsv"
    extra = [(f"{q} {i}", r) for i in range(3) for q, r in PAIRS]  # 24 pairs not in train.tsv
    data.write_text("".join(f"{q}\t{r}\n" for q, r in PAIRS + extra), encoding="utf-8")
    trained = tmp_path / "train.tsv"
    trained.write_text("".join(f"{q}\t{r}\n" for q, r in PAIRS), encoding="utf-8")
    argv = ["evaluate", "--checkpoint", str(a), "--checkpoint", str(b), "--label", "old", "--label", "new"]
    argv += ["--data", str(data), "--exclude-train", str(trained), "--out", str(tmp_path / "out")]
    assert main([*argv, "--strategies", "greedy", "beam"]) == 0
    out = capsys.readouterr().out
    assert "left out 8 pairs found in the training data" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    old, new = report["models"]
    assert old["pairs"] == new["pairs"] == 24 and old["excluded_as_trained"] == 8
    assert old["label"] == "old" and new["label"] == "new"
    assert old["perplexity"] < new["perplexity"]  # the trained model beats the random one
    assert "| old | greedy |" in out and "| new | beam |" in out


def test_read_pairs_from_tsv(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("hello .\thi .\nno tab here\nhow are you ?\ti m fine .\n", encoding="utf-8")
    assert read_pairs(path) == [("hello .", "hi ."), ("how are you ?", "i m fine .")]


def test_evaluate_command_writes_json_and_markdown(tmp_path, capsys):
    model, voc = trained_model()
    ckpt = write_checkpoint(tmp_path / "m.pt", model, voc)
    data = tmp_path / "test.tsv"
    data.write_text("".join(f"{q}\t{r}\n" for q, r in PAIRS * 3), encoding="utf-8")  # 24 pairs
    code = main(["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "out")])
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["pairs"] == 24 and set(report["strategies"]) == {"greedy", "beam", "sample"}  # nothing to rerank with
    assert (tmp_path / "out" / "report.md").read_text().startswith("model A: ")


def test_evaluate_command_bad_data_is_one_line(tmp_path, capsys):
    model, voc = trained_model()
    ckpt = write_checkpoint(tmp_path / "m.pt", model, voc)
    empty = tmp_path / "empty.tsv"
    empty.write_text("no tabs\n")
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(empty)]) == 1
    assert "error:" in capsys.readouterr().err


def test_evaluate_on_the_embedded_sample_under_a_minute(tmp_path):
    from chatbot.prepare import load_prepared

    assert main(["prepare", str(REPO_ROOT / "corpus" / "sample"), "--out", str(tmp_path / "sample")]) == 0
    dataset = load_prepared(tmp_path / "sample")
    model = random_model(len(dataset.tokenizer), seed=0, hidden=32)
    write_checkpoint(tmp_path / "m.pt", model, dataset.tokenizer, dataset.normalize, dataset.max_length)
    start = time.perf_counter()
    args = ["evaluate", "--checkpoint", str(tmp_path / "m.pt"), "--data", str(tmp_path / "sample")]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    assert time.perf_counter() - start < 60
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["pairs"] == len(dataset.test) > 0
    for metrics in report["strategies"].values():
        assert 0 <= metrics["bleu"] <= 100 and 0 < metrics["distinct_1"] <= 1 and metrics["mean_length"] > 0


def test_out_onto_a_file_is_refused_before_any_work(tmp_path, capsys):
    model, voc = trained_model()
    ckpt = write_checkpoint(tmp_path / "m.pt", model, voc)
    data = tmp_path / "test.tsv"
    data.write_text("".join(f"{q}\t{r}\n" for q, r in PAIRS * 3), encoding="utf-8")
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    argv = ["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(target)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "--out" in captured.err and captured.out == ""  # nothing decoded
    assert target.read_text() == "keep me"


def test_evaluate_never_replaces_files_it_did_not_write(tmp_path, capsys):
    """Sentinels: notes with a report.md, the folders holding the data or the checkpoint, a file, a training run."""
    from chatbot.evaluate import MARKER
    from tests.chatbot.tiny_data import write_prepared

    model, voc = trained_model()
    run = tmp_path / "run"  # another training's run folder
    run.mkdir()
    ckpt = write_checkpoint(run / "best.pt", model, voc)
    (run / "log.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    other_run = tmp_path / "other-run"
    write_checkpoint(other_run / "last.pt", model, voc)
    data = tmp_path / "pairs" / "test.tsv"
    data.parent.mkdir()
    data.write_text("".join(f"{q}\t{r}\n" for q, r in PAIRS), encoding="utf-8")
    dataset = write_prepared(tmp_path / "dataset")
    notes = plant_notes(tmp_path / "notes")
    a_file = tmp_path / "notes.txt"
    a_file.write_bytes(b"keep me")
    before = snapshot(tmp_path)
    base = ["evaluate", "--checkpoint", str(ckpt), "--strategies", "greedy", "--limit", "4"]
    for out, data_arg, phrase in [
        (notes, data, "already exists and was not written by this command (it holds log.jsonl)"),
        (data.parent, data, "holds the input"),
        (dataset, dataset, "holds the input"),
        (run, data, "holds the input"),
        (other_run, data, "already exists and was not written by this command (it holds last.pt)"),
        (a_file, data, "is a file, not a folder"),
        (tmp_path, data, "holds the input"),
    ]:
        code = main([*base, "--data", str(data_arg), "--out", str(out)])
        captured = capsys.readouterr()
        assert_one_line_refusal(code, captured.err, "evaluate", str(out), phrase)
        assert captured.out == ""  # refused before decoding
    assert snapshot(tmp_path) == before
    # A new folder works, and a second report replaces the first (recognised by its marker), nothing else.
    out = tmp_path / "reports" / "eval"
    for limit in ("4", "3"):
        assert main([*base[:-1], limit, "--data", str(data), "--out", str(out)]) == 0
        assert json.loads((out / "report.json").read_text())["pairs"] == int(limit)
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "report.json", "report.md"])
    assert sorted(p.name for p in out.parent.iterdir()) == ["eval"]  # no temp or old folder left
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(str(out.parent))} == before


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_mid_decoding_stops_evaluate_at_once_and_writes_nothing(tmp_path, sig):
    """A real process: the signal arrives while replies are being decoded; it ends within seconds, and --out
    (the report folder) is never created, nor any temp folder beside it."""
    import os
    import signal
    import subprocess
    import sys

    voc = make_voc()
    ckpt = write_checkpoint(tmp_path / "m.pt", random_model(len(voc), hidden=32), voc)
    data = tmp_path / "test.tsv"
    data.write_text("".join(f"{q}\t{r}\n" for q, r in PAIRS * 500), encoding="utf-8")  # minutes of decoding
    code = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from chatbot.cli import main; from chatbot.reply import Chatbot\n"
        "real = Chatbot.reply_ids\n"
        "def reply_ids(self, *a, **k):\n"
        "    print('decoding', flush=True); Chatbot.reply_ids = real; return real(self, *a, **k)\n"
        "Chatbot.reply_ids = reply_ids\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "report")]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,
    )
    assert proc.stdout.readline() == b"decoding\n"
    proc.send_signal(getattr(signal, sig))
    start = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - start < 10, (proc.returncode, out.decode()[-300:], err.decode()[-600:])
    if sig == "SIGINT":
        assert proc.returncode == 130 and err.decode().splitlines()[-1] == "chatbot evaluate: interrupted"
        assert "Traceback" not in err.decode()
    else:  # the default action: ended by the signal itself
        assert proc.returncode == -signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "test.tsv"]


def test_unknown_bleu_tokenizer_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--data", "x.tsv", "--bleu-tokenize", "foo", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("chatbot evaluate: error: argument --bleu-tokenize: invalid choice")
