"""scripts/bench_products.py: every precision it times computes the same product, and it prints a row each."""

import importlib.util

import pytest
import torch

from tests.chatbot.tinybot import REPO_ROOT

spec = importlib.util.spec_from_file_location("bench_products", REPO_ROOT / "scripts" / "bench_products.py")
bench_products = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_products)


def test_the_precisions_compute_the_same_product():
    torch.manual_seed(0)
    with torch.inference_mode():
        fns = bench_products.products(48, 32, rows=5, copies=2)
        outputs = {name: [fn() for fn in calls] for name, calls in fns.items()}
    reference = next(iter(outputs.values()))  # fp32 first
    assert all(out.shape == (5, 48) for outs in outputs.values() for out in outs)
    for name, outs in outputs.items():
        for got, expected in zip(outs, reference, strict=True):
            error = (got - expected).norm() / expected.norm()
            assert error < (1e-6 if name.startswith("fp32") else 0.02), name


def test_prints_a_row_per_product_and_row_count(capsys):
    bench_products.main(["--hidden", "16", "--vocab", "40", "--rows", "1", "2", "--passes", "1"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "rows" not in line]
    assert len(lines) == 3 * 2
    assert all(float(cell) >= 0 for line in lines for cell in line.strip("| ").split(" | ")[2:])


@pytest.mark.parametrize("flag", ["--passes", "--rows", "--hidden"])
def test_a_count_below_one_is_a_one_line_error(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_products.main([flag, "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith(f"error: argument {flag}: must be an integer >= 1, not 0")
