"""scripts/bench_batch_size.py: one loss curve per setting, from the same start, as JSON and a PNG."""

import importlib.util
import json

from tests.chatbot.tiny_data import write_prepared
from tests.chatbot.tinybot import REPO_ROOT

spec = importlib.util.spec_from_file_location("bench_batch_size", REPO_ROOT / "scripts" / "bench_batch_size.py")
bench_batch_size = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_batch_size)


def test_curves_for_each_setting_as_json_and_png(tmp_path, capsys):
    data_dir = write_prepared(tmp_path / "data", n_train=64, n_valid=16)
    args = [str(data_dir), "--settings", "8:1e-2,16:1e-2", "--pairs", "64", "--eval-pairs-every", "16"]
    args += [
        "--hidden-size",
        "8",
        "--num-threads",
        "1",
        "--json",
        str(tmp_path / "s.json"),
        "--plot",
        str(tmp_path / "s.png"),
    ]
    assert bench_batch_size.main(args) == 0
    curves = json.loads((tmp_path / "s.json").read_text())["curves"]
    assert list(curves) == ["8:0.01", "16:0.01"]
    for curve in curves.values():
        seen = [p for p, _ in curve]
        assert seen == [16, 32, 48, 64]  # a point every 16 pairs, up to the 64 asked for
        assert all(0 < loss < 10 for _, loss in curve)
    assert curves["8:0.01"][-1][1] < curves["8:0.01"][0][1]  # it learns
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "final loss" in capsys.readouterr().out


def test_a_missing_dataset_is_one_line_not_a_traceback(tmp_path, capsys):
    assert bench_batch_size.main([str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench_batch_size.py: error:") and "chatbot prepare" in err and "\n" not in err
