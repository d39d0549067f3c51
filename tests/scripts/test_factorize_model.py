"""scripts/factorize_model.py: a factorized checkpoint loads, keeps the replies at full rank, and bad input is one line."""

import importlib.util

import pytest

from chatbot.checkpoint import load_checkpoint
from chatbot.model.network import FactorizedLinear
from chatbot.reply import Chatbot
from tests.chatbot.tinybot import PAIRS, REPO_ROOT, one_thread, trained_model, write_checkpoint  # noqa: F401

spec = importlib.util.spec_from_file_location("factorize_model", REPO_ROOT / "scripts" / "factorize_model.py")
factorize_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(factorize_model)


def test_full_rank_keeps_every_reply_and_lower_ranks_are_measured(tmp_path, capsys):
    model, voc = trained_model()
    source = write_checkpoint(tmp_path / "best.pt", model, voc)
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{q}\t{r}\n" for q, r in PAIRS), encoding="utf-8")
    hidden = model.config.hidden_size
    out = tmp_path / "full.pt"
    assert factorize_model.main([str(source), "--rank", str(hidden), "--out", str(out), "--data", str(data)]) == 0
    table = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| full") or line.startswith(f"| {hidden} ")
    ]
    full_ppl, rank_ppl = (float(line.split("|")[4]) for line in table)
    assert rank_ppl == pytest.approx(full_ppl, rel=1e-4)  # the same layer, as two products

    state = load_checkpoint(out)
    assert state["model_config"]["output_rank"] == hidden and state["factorized"]["kept_energy"] == pytest.approx(1.0)
    bot, original = Chatbot.from_checkpoint(out), Chatbot(model, voc)
    assert isinstance(bot.model.decoder.out, FactorizedLinear)
    for query, _ in PAIRS:
        assert bot.reply(query) == original.reply(query)

    assert factorize_model.main([str(source), "--rank", "4", "8", "--data", str(data)]) == 0  # measure only
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 4 ") or line.startswith("| 8 ")]
    assert len(rows) == 2
    assert not (tmp_path / "4.pt").exists()


def test_bad_requests_are_one_line_errors_and_nothing_is_overwritten(tmp_path, capsys):
    model, voc = trained_model()
    source = write_checkpoint(tmp_path / "best.pt", model, voc)
    out = tmp_path / "r8.pt"
    assert factorize_model.main([str(source), "--rank", "8", "--out", str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    for argv in (
        [str(source), "--rank", "8", "--out", str(out)],  # exists
        [str(out), "--rank", "4"],  # factorized already
        [str(source), "--rank", "999"],  # above the layer's rank
        [str(source), "--rank", "4", "8", "--out", str(tmp_path / "two.pt")],  # two ranks, one file
        [str(tmp_path / "missing.pt"), "--rank", "4"],
    ):
        assert factorize_model.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("factorize_model: error: ") and err.count("\n") == 1
    assert out.read_bytes() == before and not (tmp_path / "two.pt").exists()
