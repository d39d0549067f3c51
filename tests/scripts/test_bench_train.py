"""scripts/bench_train.py: the tutorial contender computes the tutorial's loss, the sweep picks (c) fairly."""

import argparse
import importlib.util
import json

import pytest
import torch

from chatbot.model.network import ModelConfig, Seq2Seq
from tests.chatbot.tiny_data import tiny_dataset, write_prepared
from tests.chatbot.tinybot import REPO_ROOT

spec = importlib.util.spec_from_file_location("bench_train", REPO_ROOT / "scripts" / "bench_train.py")
bench_train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_train)


def test_candidates_parse_and_bad_ones_are_refused():
    assert bench_train.parse_candidates("1024:1e-3,64:2e-4") == [(1024, 1e-3), (64, 2e-4)]
    for bad in ("1024", "1024:x", "0:1e-3", "64:-1", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            bench_train.parse_candidates(bad)


def test_best_is_the_soonest_to_quality_else_the_fastest():
    slow_but_first = {"tokens_per_s": 10.0, "time_to_quality": 0.02}
    fast_but_later = {"tokens_per_s": 99.0, "time_to_quality": 0.05}
    never = {"tokens_per_s": 500.0, "time_to_quality": None}
    assert bench_train.pick_best([never, fast_but_later, slow_but_first]) is slow_but_first
    assert bench_train.pick_best([{"tokens_per_s": 5.0, "time_to_quality": None}, never]) is never


def test_the_whole_benchmark_runs_and_writes_every_candidate(tmp_path, capsys):
    data_dir = write_prepared(tmp_path / "data")
    out = tmp_path / "bench.json"
    args = [str(data_dir), "--iterations", "6", "--throughput-steps", "2", "--hidden-size", "8"]
    args += ["--best", "16:1e-2,32:1e-2", "--eval-every", "2", "--num-threads", "1", "--json", str(out)]
    assert bench_train.main(args) == 0
    result = json.loads(out.read_text())
    assert [(c["batch_size"], c["learning_rate"]) for c in result["candidates"]] == [(16, 1e-2), (32, 1e-2)]
    assert all(v > 0 for v in result["tokens_per_s"].values()) and result["seconds_a"] > 0
    chosen = bench_train.pick_best(result["candidates"])
    assert (
        result["best"]["batch_size"] == chosen["batch_size"] and result["tokens_per_s"]["c"] == chosen["tokens_per_s"]
    )
    printed = capsys.readouterr().out
    assert "(a) tutorial loop, batch 64" in printed and "time-to-quality" in printed


def test_a_missing_dataset_is_one_line_not_a_traceback(tmp_path, capsys):
    assert bench_train.main([str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench_train.py: error:") and "chatbot prepare" in err and "\n" not in err


def test_target_from_compares_four_contenders_to_a_checkpoints_perplexity(tmp_path, capsys):
    from chatbot.checkpoint import save_checkpoint

    data_dir = write_prepared(tmp_path / "data")
    voc = tiny_dataset().tokenizer
    torch.manual_seed(0)
    old = Seq2Seq(ModelConfig(vocab_size=len(voc), hidden_size=8))
    state = {"model_config": old.config.to_dict(), "model": old.state_dict(), "tokenizer": voc.state_dict()}
    save_checkpoint(tmp_path / "old.pt", {**state, "normalize": "tutorial", "max_length": 10})
    out = tmp_path / "bench.json"
    args = [str(data_dir), "--target-from", str(tmp_path / "old.pt"), "--hidden-size", "8", "--max-minutes", "0.002"]
    args += ["--recipe", "hidden_size=12,bucket=2", "--eval-every", "2", "--num-threads", "1", "--json", str(out)]
    assert bench_train.main(args) == 0
    result = json.loads(out.read_text())
    names = [r["contender"] for r in result["rows"]]
    assert names[:3] == [
        "(a) tutorial loop, batch 64",
        "(b) this project, batch 64, fp32",
        "(b) this project, batch 64, bf16",
    ]
    assert names[3] == "recipe hidden_size=12,bucket=2" and all(r["tokens_per_s"] > 0 for r in result["rows"])
    # The target is the old model's perplexity per word on the valid pairs: a random model is near uniform.
    assert 0.3 * len(voc) < result["target"] < 3 * len(voc)
    assert "| contender | tokens/s | vs (a) |" in capsys.readouterr().out


def test_recipe_fields_parse_and_unknown_ones_are_refused():
    assert bench_train.parse_recipe("hidden_size=384,learning_rate=2.5e-4,bucket=20") == {
        "hidden_size": 384,
        "learning_rate": 2.5e-4,
        "bucket": 20,
    }
    with pytest.raises(argparse.ArgumentTypeError, match="unknown recipe field"):
        bench_train.parse_recipe("hiden_size=3")
