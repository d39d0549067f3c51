"""scripts/make_hold_out.py, train_relevance.py, ship_relevance.py and tune_rerank.py, end to end on tiny data."""

import importlib.util
import json

import pytest
import torch

from chatbot.checkpoint import load_checkpoint, save_checkpoint
from chatbot.corpus import pair_key
from chatbot.prepare import PrepareConfig, load_prepared, prepare
from chatbot.relevance import load_overlap, load_relevance, relevance_scores
from chatbot.retrieval import ReplyIndex, load_index, training_replies
from chatbot.tokenizers import EOS_token
from tests.chatbot.tiny_data import write_prepared
from tests.chatbot.tinybot import REPO_ROOT, one_thread, random_model, write_checkpoint  # noqa: F401


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_hold_out_keys_keep_those_pairs_out_of_a_new_training_split(tmp_path):
    sample = REPO_ROOT / "corpus" / "sample"
    prepare(sample, tmp_path / "first", PrepareConfig(min_count=1))
    first = load_prepared(tmp_path / "first")
    assert load_script("make_hold_out").main([str(tmp_path / "first"), "--out", str(tmp_path / "h.json")]) == 0
    held = json.loads((tmp_path / "h.json").read_text())
    assert set(held["test"]) == {pair_key(q, r) for q, r in first.test}
    # Another seed splits differently, but the held pairs stay out of its training split.
    prepare(sample, tmp_path / "second", PrepareConfig(min_count=1, seed=7, hold_out=str(tmp_path / "h.json")))
    second = load_prepared(tmp_path / "second")
    keys = set(held["valid"]) | set(held["test"])
    assert not any(pair_key(q, r) in keys for q, r in second.train)
    assert {pair_key(q, r) for q, r in first.test} <= {pair_key(q, r) for q, r in second.test}


def test_train_relevance_then_tune_rerank(tmp_path, capsys):
    data = write_prepared(tmp_path / "data", n_train=128, n_valid=40)
    args = [str(data), "--out", str(tmp_path / "rel"), "--hidden-size", "16", "--batch-size", "32"]
    args += ["--epochs", "3", "--eval-every", "4", "--eval-pairs", "20", "--num-threads", "1"]
    assert load_script("train_relevance").main(args) == 0
    model, state = load_relevance(tmp_path / "rel" / "best.pt")
    assert state["metrics"]["valid_hits_at_1"] > 0.05  # it learnt something: chance is 1/20
    train = load_prepared(data).train
    overlap = load_overlap(state, "best.pt")  # the tf-idf table of the training split's lines
    assert overlap.documents == 2 * len(train)
    word = train[0][1].split()[0]
    assert overlap.df[word] == sum(word in q.split() for q, _ in train) + sum(word in r.split() for _, r in train)
    assert load_script("train_relevance").main(args) == 1  # never overwrites a best.pt
    assert "exists" in capsys.readouterr().err
    # a second seed, then both shipped as one ensemble file
    assert load_script("train_relevance").main([*args[:2], str(tmp_path / "rel1"), *args[3:], "--seed", "1"]) == 0
    runs = [str(tmp_path / "rel" / "best.pt"), str(tmp_path / "rel1" / "best.pt")]
    assert load_script("ship_relevance").main([*runs, "--out", str(tmp_path / "shipped.pt")]) == 0
    ensemble, shipped = load_relevance(tmp_path / "shipped.pt")
    weights = shipped["members"][0]["model"]
    assert weights["query_encoder.gru.weight_ih_l0"].dtype == torch.float16
    # the shared embedding as int8 rows (`int8_rows`), stored once, not once per encoder
    assert weights["embedding.weight"]["int8"].dtype == torch.int8
    assert (
        weights["embedding.weight"]["int8"].data_ptr() == weights["query_encoder.embedding.weight"]["int8"].data_ptr()
    )
    assert "no reply index" in capsys.readouterr().out and "index" not in shipped
    members = [load_relevance(r)[0] for r in runs]
    ids = [load_prepared(data).tokenizer.encode(q) + [EOS_token] for q, _ in train[:8]]
    mean = (relevance_scores(members[0], ids, ids[::-1]) + relevance_scores(members[1], ids, ids[::-1])) / 2
    assert relevance_scores(ensemble, ids, ids[::-1]).tolist() == pytest.approx(mean.tolist(), abs=0.05)
    assert load_overlap(shipped, "shipped.pt").df == overlap.df  # the table travels once, unchanged
    # a shipped ensemble takes another member; its own members come through unchanged
    three_pt = str(tmp_path / "three.pt")
    assert load_script("ship_relevance").main([str(tmp_path / "shipped.pt"), runs[0], "--out", three_pt]) == 0
    three = load_checkpoint(three_pt)
    assert [m["step"] for m in three["members"]] == [m["step"] for m in shipped["members"]] + [
        shipped["members"][0]["step"]
    ]
    for got, want in zip(three["members"], [*shipped["members"], shipped["members"][0]], strict=True):
        for k, tensor in want["model"].items():
            if isinstance(tensor, dict):  # the int8 embedding
                assert all(torch.equal(got["model"][k][part], tensor[part]) for part in tensor)
            else:
                assert torch.equal(got["model"][k], tensor)
    assert "3 members" in capsys.readouterr().out
    # --index: the training split's distinct replies, encoded by the first member as stored
    index_pt = str(tmp_path / "indexed.pt")
    assert (
        load_script("ship_relevance").main([str(tmp_path / "shipped.pt"), "--index", str(data), "--out", index_pt]) == 0
    )
    indexed_model, indexed = load_relevance(index_pt)
    index = load_index(indexed, index_pt)
    assert index.texts == training_replies(train) and index.member == 0
    rebuilt = ReplyIndex.build(indexed_model.members[0], load_prepared(data).tokenizer, index.texts)
    assert float((index.vectors - rebuilt.vectors).abs().max()) < 0.01
    assert "reply index: " in capsys.readouterr().out
    voc = load_prepared(data).tokenizer
    fwd = write_checkpoint(tmp_path / "f.pt", random_model(len(voc), seed=1, hidden=16), voc)
    bwd = write_checkpoint(tmp_path / "b.pt", random_model(len(voc), seed=2, hidden=16), voc)
    argv = [
        str(data),
        "--checkpoint",
        str(fwd),
        "--backward",
        str(bwd),
        "--relevance",
        str(tmp_path / "shipped.pt"),
    ]
    argv += ["--limit", "20", "--lambdas", "0,1", "--gammas", "0", "--kappas", "0,100", "--mus", "0,5"]
    argv += ["--sampling", "1.0:0.9:4"]
    assert load_script("tune_rerank").main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("| 0 | 0 | 0 | ") == 1 and "| 1 | 100 | 5 | " in out and "best: hits@1" in out
    assert "| 1.0 | 0.9 | 4 |" in out


def test_ship_relevance_refuses_runs_that_do_not_match(tmp_path, capsys):
    data = write_prepared(tmp_path / "data", n_train=64, n_valid=20)
    for name, hidden in (("a", "8"), ("b", "12")):
        args = [str(data), "--out", str(tmp_path / name), "--hidden-size", hidden, "--batch-size", "16"]
        assert load_script("train_relevance").main([*args, "--epochs", "1", "--eval-pairs", "20"]) == 0
    runs = [str(tmp_path / "a" / "best.pt"), str(tmp_path / "b" / "best.pt")]
    assert load_script("ship_relevance").main([*runs, "--out", str(tmp_path / "out.pt")]) == 1
    assert "differ in their model_config" in capsys.readouterr().err and not (tmp_path / "out.pt").exists()
    state = load_checkpoint(runs[0])
    state["tokenizer"]["words"][0] = "changed"
    save_checkpoint(tmp_path / "c.pt", state)
    assert load_script("ship_relevance").main([runs[0], str(tmp_path / "c.pt"), "--out", str(tmp_path / "out.pt")]) == 1
    assert "differ in their tokenizer" in capsys.readouterr().err and not (tmp_path / "out.pt").exists()
    assert load_script("ship_relevance").main([str(tmp_path / "nowhere.pt")]) == 1
    assert "not found" in capsys.readouterr().err


def test_bench_decode_times_rerank_with_a_relevance_model_alone(tmp_path, capsys):
    """No backward model, as shipped: the tab's default (rerank) must still get its row."""
    data = write_prepared(tmp_path / "data", n_train=64, n_valid=20)
    args = [str(data), "--out", str(tmp_path / "rel"), "--hidden-size", "8", "--batch-size", "16"]
    assert load_script("train_relevance").main([*args, "--epochs", "1", "--eval-pairs", "20"]) == 0
    voc = load_prepared(data).tokenizer
    fwd = write_checkpoint(tmp_path / "f.pt", random_model(len(voc), seed=1, hidden=16), voc, max_length=4)
    bench = load_script("bench_decode")
    common = ["--checkpoint", str(fwd), "--repeats", "1", "--threads", "1"]
    capsys.readouterr()
    bench.main([*common, "--relevance", str(tmp_path / "rel" / "best.pt")])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1 |")]
    assert [row.split(" | ")[1] for row in rows] == [
        "tutorial GreedySearchDecoder",
        "greedy (stops at EOS)",
        "beam-5",
        "rerank (the tab's default)",
    ]
    bench.main(common)  # nothing to score with: the tab samples, so there is no rerank row
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1 |")]
    assert len(rows) == 3 and not any("rerank" in row for row in rows)


def test_blind_check_sheet_hides_the_settings_and_score_counts_them_back(tmp_path, capsys):
    data = write_prepared(tmp_path / "data", n_train=64, n_valid=40)
    dataset = load_prepared(data)
    voc = dataset.tokenizer
    fwd = write_checkpoint(tmp_path / "f.pt", random_model(len(voc), seed=1, hidden=16), voc, max_length=5)
    blind = load_script("blind_check")
    out = tmp_path / "blind"
    args = ["sheet", str(data), "--out", str(out), "--checkpoint", str(fwd), "--exclude-train", str(data)]
    other = write_checkpoint(tmp_path / "g.pt", random_model(len(voc), seed=2, hidden=16), voc, max_length=5)
    args += ["--n", "6", "--min-words", "1", "--setting", "hot:temperature=5.0", "--setting", "greedy:strategy=greedy"]
    args += ["--setting", f"other:strategy=greedy,checkpoint={other}"]
    assert blind.main(args) == 0
    key = json.loads((out / "key.json").read_text())
    assert str(other) in key["checkpoints"]["other"] and str(fwd) in key["checkpoints"]["greedy"]
    # another model's greedy replies differ from this one's somewhere: its setting was really another model
    assert any(item["letters"]["other"] != item["letters"]["greedy"] for item in key["items"])
    trained = {q for q, _ in dataset.train}
    assert {q for q, _ in dataset.valid} & trained  # some valid queries were trained on: they must be left out
    assert len(key["items"]) == 6 and not {item["query"] for item in key["items"]} & trained
    sheet = (out / "sheet.md").read_text()
    blocks = sheet.split("\n## ")[1:]
    for block, item in zip(blocks, key["items"], strict=True):
        replies = [line.split("] ", 1)[1] for line in block.splitlines() if line.startswith("- **")]
        assert len(replies) == len(set(replies)) == len(set(item["letters"].values()))  # each reply shown once
    # judge: letter a sensible, b dull, the rest wrong; the counts come back per setting
    judged = sheet.replace("**a** [ ]", "**a** [s]").replace("**b** [ ]", "**b** [d]").replace("[ ]", "[w]")
    (out / "sheet.md").write_text(judged)
    capsys.readouterr()
    assert blind.main(["score", str(out)]) == 0
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in capsys.readouterr().out.splitlines()[2:]}
    for name in ("hot", "greedy", "other"):
        letters = [item["letters"][name] for item in key["items"]]
        expected = [letters.count("a"), letters.count("b"), len(letters) - letters.count("a") - letters.count("b")]
        assert [int(x.strip(" |")) for x in rows[name]] == expected
    # a new sheet into the folder of a judged one: refused in one line, the judgments kept
    assert blind.main(args) == 1
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (out / "sheet.md").read_text() == judged
    (out / "sheet.md").write_text(sheet)  # not judged yet: refused in one line
    assert blind.main(["score", str(out)]) == 1
    assert "not judged" in capsys.readouterr().err
    # a setting's value is checked as `chatbot chat` checks its flag
    bad = ["sheet", str(data), "--out", str(tmp_path / "b2"), "--checkpoint", str(fwd), "--setting", "x:temperature=-1"]
    assert blind.main(bad) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("blind_check: error: temperature in 'x:temperature=-1' must be") and len(err.splitlines()) == 1
    )
    assert not (tmp_path / "b2").exists()
