"""scripts/gpu_check.sh: every step runs, logs, and leaves its files, even on a machine without CUDA."""

import json
import os
import subprocess
import sys

import pytest

from tests.chatbot.tiny_data import write_prepared
from tests.chatbot.tinybot import REPO_ROOT


@pytest.mark.slow
def test_gpu_check_runs_every_step_and_leaves_its_files(tmp_path):
    data_dir = write_prepared(tmp_path / "data")
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "TOTAL": "150",
        # a tiny model, so that the plumbing (not the GPU figures) is what is tested here
        "BENCH_ARGS": "--iterations 4 --throughput-steps 2 --hidden-size 8 --best 16:1e-2 --eval-every 2",
        "TRAIN_ARGS": "--hidden-size 8 --time-budget-minutes 0.05 --eval-every 5",
    }
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", str(data_dir), str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    names = {"env.txt", "bench_train.txt", "bench_train.json", "pytest_gpu.txt", "train.txt", "log.jsonl", "loss.png"}
    assert {p.name for p in out.iterdir()} == names
    for step in ("bench_train", "pytest_gpu", "train"):
        assert f"== {step}: exit 0" in (out / f"{step}.txt").read_text(), step
    bench = json.loads((out / "bench_train.json").read_text())
    assert bench["best"]["batch_size"] == 16 and bench["tokens_per_s"]["c"] > 0
    # the training run used the benchmark's best settings
    assert "--batch-size 16 --learning-rate 0.01" in done.stdout
    assert any("val_loss" in json.loads(line) for line in (out / "log.jsonl").read_text().splitlines())
