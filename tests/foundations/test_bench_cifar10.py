"""scripts/bench_cifar10.py: the time-to-accuracy arithmetic, and a full run on a tiny dataset."""

import importlib.util
from pathlib import Path

import numpy as np
from test_cifar10 import tiny_cifar  # pytest puts this folder on sys.path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_cifar10.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_cifar10", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_to_reach_sums_epochs_until_the_target():
    bench = load_bench()
    rows = [(2.0, 1.0, 0.30), (2.0, 1.5, 0.38), (2.0, 1.0, 0.45)]
    assert bench.time_to_reach(rows, 0.38) == (4.0, 2.5, 2)
    assert bench.time_to_reach(rows, 0.50) is None


def test_bench_runs_both_paths_on_a_tiny_npz(tmp_path, capsys):
    x_train, y_train = tiny_cifar(40, seed=0)
    x_test, y_test = tiny_cifar(10, seed=1)
    data = tmp_path / "tiny.npz"
    np.savez(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    bench = load_bench()
    assert bench.main(["--data", str(data), "--tutorial-epochs", "1", "--fast-epochs", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "| tutorial loop (PIL + DataLoader) | 4 |" in out and "| fast path (tensors on the device) | 64 |" in out
    assert "ratio (fast-path time" in out or "did not reach" in out
    assert out.count("  fast epoch ") == 8  # accuracy checked every quarter epoch: 2 epochs x 4


def test_bench_says_when_the_data_is_missing(tmp_path, capsys):
    assert load_bench().main(["--data", str(tmp_path / "none.npz")]) == 1
    assert "--data" in capsys.readouterr().err
