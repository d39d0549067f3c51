"""The training loop: it learns, it resumes exactly after SIGKILL, it stops cleanly, it scales with DDP."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import chatbot.train as train_module
from chatbot.checkpoint import load_checkpoint, load_model
from chatbot.cli import main as cli_main
from chatbot.errors import ChatbotError
from chatbot.model.network import ModelConfig
from chatbot.tokenizers import Voc
from chatbot.train import TrainConfig, train
from tests.chatbot.sentinels import assert_one_line_refusal, plant_notes, snapshot
from tests.chatbot.tiny_data import tiny_dataset, write_prepared

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = ["--hidden-size", "16", "--encoder-n-layers", "1", "--decoder-n-layers", "1"]


def records(run_dir: Path, key: str = "loss") -> dict[int, float]:
    """step -> value of `key` from a run's JSONL log."""
    with open(run_dir / "log.jsonl", encoding="utf-8") as f:
        return {r["step"]: r[key] for r in map(json.loads, f) if key in r}


def chatbot_train(*args: str, **popen) -> subprocess.Popen:
    """Start `python -m chatbot train ...` (one thread, so runs are bit-for-bit repeatable)."""
    cmd = [sys.executable, "-m", "chatbot", "train", *args, "--num-threads", "1", "--no-progress"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if (run_dir / "log.jsonl").exists() and max(records(run_dir), default=0) >= step:
            return
        time.sleep(0.05)
    raise TimeoutError(f"run did not reach step {step}")


def test_tiny_model_overfits_a_handful_of_pairs(tmp_path):
    torch.set_num_threads(1)
    data = tiny_dataset(n_train=8, n_valid=4)
    config = TrainConfig(batch_size=8, learning_rate=3e-3, max_steps=60, eval_every=0, save_every=0, log_every=10)
    result = train(data, tmp_path, ModelConfig(hidden_size=32, dropout=0.0), config, progress=False)
    losses = records(tmp_path)
    assert result.step == 60 and result.stopped_by == "done"
    assert losses[10] > 1.0 and losses[60] < 0.02  # from chance level to (nearly) memorised


def test_best_checkpoint_loads_and_gives_identical_outputs(tmp_path):
    torch.set_num_threads(1)
    data = tiny_dataset()
    config = TrainConfig(batch_size=16, learning_rate=3e-3, max_steps=12, eval_every=4, save_every=4)
    result = train(data, tmp_path, ModelConfig(hidden_size=16, attn_model="general"), config, progress=False)
    model, tokenizer, state = load_model(tmp_path / "best.pt")
    assert state["metrics"]["best_val_loss"] == result.best_val_loss == min(records(tmp_path, "val_loss").values())
    assert state["normalize"] == "tutorial" and state["max_length"] == 10
    assert tokenizer.state_dict() == data.tokenizer.state_dict()
    # last.pt holds the final weights; rebuilt from it, the network computes what a second load does
    model_a, _, _ = load_model(tmp_path / "last.pt")
    model_b, _, _ = load_model(tmp_path / "last.pt")
    src = torch.tensor([[4], [5], [2]])
    dec = torch.tensor([[1], [6]])
    torch.testing.assert_close(
        model_a(src, torch.tensor([3]), dec), model_b(src, torch.tensor([3]), dec), rtol=0, atol=0
    )
    assert {"optimizer", "rng", "data_position"} <= set(load_checkpoint(tmp_path / "last.pt"))


@pytest.mark.slow
def test_resume_after_sigkill_repeats_the_uninterrupted_losses(tmp_path):
    data_dir = write_prepared(tmp_path / "data")
    common = [str(data_dir), *TINY_MODEL, "--batch-size", "8", "--save-every", "10", "--eval-every", "10"]
    common += ["--log-every", "1", "--learning-rate", "3e-3", "--teacher-forcing-ratio", "0.7"]

    reference = chatbot_train(*common, "--out", str(tmp_path / "ref"), "--max-steps", "60")
    killed = chatbot_train(*common, "--out", str(tmp_path / "run"), "--max-steps", "100000")
    wait_for_step(killed, tmp_path / "run", 25)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    saved_step = load_checkpoint(tmp_path / "run" / "last.pt")["step"]
    assert saved_step < max(records(tmp_path / "run"))  # it ran past its checkpoint, so steps get redone

    resumed = chatbot_train(*common, "--out", str(tmp_path / "run"), "--max-steps", "60", "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    out_ref, err_ref = reference.communicate(timeout=300)
    assert reference.returncode == 0, err_ref
    expected, got = records(tmp_path / "ref"), records(tmp_path / "run")
    assert sorted(got) == list(range(1, 61)) and sorted(expected) == list(range(1, 61))
    assert [got[s] for s in range(saved_step + 1, 61)] == [expected[s] for s in range(saved_step + 1, 61)]
    assert records(tmp_path / "run", "val_loss") == records(tmp_path / "ref", "val_loss")


@pytest.mark.slow
def test_ctrl_c_saves_and_exits(tmp_path):
    data_dir = write_prepared(tmp_path / "data")
    proc = chatbot_train(
        str(data_dir), "--out", str(tmp_path / "run"), *TINY_MODEL, "--max-steps", "100000", "--log-every", "1"
    )
    wait_for_step(proc, tmp_path / "run", 5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted at step" in out and "Traceback" not in err
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == max(records(tmp_path / "run")) >= 5


def test_nan_loss_stops_and_leaves_the_last_good_checkpoint_untouched(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    real_nll, calls = train_module.masked_nll, []

    def nll_turning_nan(logits, target, *rest):
        calls.append(1)
        loss = real_nll(logits, target, *rest)
        return loss * float("nan") if len(calls) >= 15 else loss

    monkeypatch.setattr(train_module, "masked_nll", nll_turning_nan)
    config = TrainConfig(batch_size=16, max_steps=40, eval_every=0, save_every=10, log_every=20)
    with pytest.raises(ChatbotError, match=r"loss became nan between steps 11 and 20"):
        train(tiny_dataset(), tmp_path, ModelConfig(hidden_size=16), config, progress=False)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 10
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_time_budget_stops_cleanly_and_saves(tmp_path):
    config = TrainConfig(batch_size=16, max_steps=0, time_budget_minutes=0.5 / 60, eval_every=0, save_every=0)
    result = train(tiny_dataset(), tmp_path, ModelConfig(hidden_size=16), config, progress=False)
    assert result.stopped_by == "time" and result.step > 0
    assert load_checkpoint(tmp_path / "last.pt")["step"] == result.step
    assert (tmp_path / "best.pt").exists() and (tmp_path / "loss.png").stat().st_size > 0


def test_cli_errors_are_one_line(tmp_path, capsys):
    data_dir = write_prepared(tmp_path / "data")
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"not a checkpoint")
    for args in (["--resume"], []):  # a corrupt last.pt; an existing run without --resume
        assert cli_main(["train", str(data_dir), "--out", str(run), *args]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("chatbot train: error:"), err
    assert cli_main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "missing" in err, err


def test_garbled_stats_json_is_refused_before_training_starts(tmp_path, capsys):
    data_dir = write_prepared(tmp_path / "data")
    stats = json.loads((data_dir / "stats.json").read_text())
    (data_dir / "stats.json").write_text(json.dumps({**stats, "max_length": "ten"}))
    assert cli_main(["train", str(data_dir), "--out", str(tmp_path / "run"), *TINY_MODEL, "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"chatbot train: error: {data_dir / 'stats.json'} has an invalid max_length ('ten'): must be an integer in "
        f"2..10000; run `chatbot prepare` again to rebuild {data_dir}\n"
    )
    assert captured.out == "" and not (tmp_path / "run").exists()  # refused at load: no step, no save


def test_first_ctrl_c_stops_after_the_step_saves_and_exits_130(tmp_path, capsys, monkeypatch):
    real_nll, calls = train_module.masked_nll, []

    def nll_then_ctrl_c(logits, target, *rest):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C during step 5
        return real_nll(logits, target, *rest)

    monkeypatch.setattr(train_module, "masked_nll", nll_then_ctrl_c)
    data_dir = write_prepared(tmp_path / "data")
    args = ["train", str(data_dir), "--out", str(tmp_path / "run"), *TINY_MODEL, "--eval-every", "0", "--no-progress"]
    assert cli_main(args) == 130
    assert "interrupted at step 5" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 5


def test_resume_in_process_repeats_the_uninterrupted_losses(tmp_path):
    torch.set_num_threads(1)
    data_dir = write_prepared(tmp_path / "data")
    common = [str(data_dir), *TINY_MODEL, "--batch-size", "8", "--log-every", "1", "--save-every", "7"]
    common += ["--eval-every", "7", "--teacher-forcing-ratio", "0.5", "--no-progress"]
    assert cli_main(["train", *common, "--out", str(tmp_path / "ref"), "--max-steps", "20"]) == 0
    assert cli_main(["train", *common, "--out", str(tmp_path / "run"), "--max-steps", "7"]) == 0
    assert cli_main(["train", *common, "--out", str(tmp_path / "run"), "--max-steps", "20", "--resume"]) == 0
    assert records(tmp_path / "run") == records(tmp_path / "ref")
    assert records(tmp_path / "run", "val_loss") == records(tmp_path / "ref", "val_loss")


@pytest.mark.slow
def test_two_process_gloo_ddp_equals_one_process_on_the_combined_batch(tmp_path):
    data_dir = write_prepared(tmp_path / "data")
    common = [str(data_dir), *TINY_MODEL, "--dropout", "0", "--max-steps", "6", "--eval-every", "3"]
    common += ["--learning-rate", "3e-3", "--device", "cpu", "--num-threads", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    ddp = subprocess.run(
        [*torchrun, "-m", "chatbot", "train", *common, "--batch-size", "4", "--out", str(tmp_path / "ddp")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr
    one = subprocess.run(
        [sys.executable, "-m", "chatbot", "train", *common, "--batch-size", "8", "--out", str(tmp_path / "one")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr
    a, b = load_checkpoint(tmp_path / "ddp" / "last.pt"), load_checkpoint(tmp_path / "one" / "last.pt")
    assert a["step"] == b["step"] == 6
    # The gradients agree to float32 rounding (summation order differs); Adam divides each update by
    # sqrt(v), which can magnify that rounding in a near-zero gradient element to ~1e-5 after 6 steps.
    for name, tensor in b["model"].items():
        torch.testing.assert_close(a["model"][name], tensor, atol=1e-4, rtol=0, msg=name)
    diffs = torch.cat([(a["model"][n] - t).abs().flatten() for n, t in b["model"].items()])
    assert (diffs <= 1e-6).float().mean() > 0.999  # all but a handful of the elements agree to 1e-6
    assert records(tmp_path / "ddp", "val_loss") == pytest.approx(records(tmp_path / "one", "val_loss"), rel=1e-5)


@pytest.mark.slow
def test_trains_on_the_real_cornell_pairs_and_the_result_loads(tmp_path, shared_data):
    from chatbot.prepare import PrepareConfig, prepare

    prepare(shared_data / "cornell" / "pairs_all_movies.tsv", tmp_path / "data", PrepareConfig())
    args = [str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--hidden-size", "32", "--batch-size", "128"]
    args += ["--max-steps", "40", "--eval-every", "20", "--log-every", "10", "--learning-rate", "3e-3", "--no-progress"]
    assert cli_main(["train", *args]) == 0
    val = records(tmp_path / "run", "val_loss")
    assert sorted(val) == [20, 40] and val[40] < val[20] < 7.0  # learning: chance level is ln(5,535) = 8.6
    model, tokenizer, state = load_model(tmp_path / "run" / "best.pt")
    assert state["normalize"] == "tutorial" and state["max_length"] == 10 and len(tokenizer) > 5000


@pytest.mark.gpu
def test_bf16_training_on_cuda_saves_a_checkpoint_that_loads_on_cpu(tmp_path, cuda):
    config = TrainConfig(batch_size=16, max_steps=20, eval_every=10, save_every=10, learning_rate=3e-3)
    result = train(tiny_dataset(), tmp_path, ModelConfig(hidden_size=32), config, device=cuda, progress=False)
    assert math.isfinite(result.val_loss) and result.val_loss < records(tmp_path, "val_loss")[10] + 1e-6
    model, _, _ = load_model(tmp_path / "last.pt", device="cpu")
    assert all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.gpu
def test_a_cuda_training_step_never_waits_for_the_host(cuda):
    """The forward pass, the loss, clipping and the optimizer step queue work without a host sync.

    Backward is left out of the check: it is PyTorch's own kernels (a sync there is not ours to fix).
    """
    from chatbot.batching import encode_pairs, iterate_batches, tensorize
    from chatbot.model.network import Seq2Seq, select_positions
    from chatbot.train import make_optimizer, masked_nll

    data = tiny_dataset()
    pairs = tensorize(encode_pairs(data.train, data.tokenizer))
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(vocab_size=len(data.tokenizer), hidden_size=32)).to(cuda)
    optimizer = make_optimizer(model, TrainConfig(), cuda)
    for i, batch in enumerate(iterate_batches(pairs, list(range(len(pairs))), 16)):
        checked = i > 0  # the first step initialises cuDNN and the optimizer state
        torch.cuda.set_sync_debug_mode("error" if checked else 0)
        try:
            batch = batch.to(cuda)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(batch.input_seq, batch.lengths, batch.decoder_input, batch.token_index)
            nll = masked_nll(logits, select_positions(batch.target, batch.token_index))
            torch.cuda.set_sync_debug_mode(0)
            (nll / batch.n_tokens).backward()
            torch.cuda.set_sync_debug_mode("error" if checked else 0)
            for group in optimizer.param_groups:
                torch.nn.utils.clip_grad_norm_(group["params"], 50.0)
            optimizer.step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert math.isfinite(nll.item())


@pytest.mark.skipif(not train_module.cpu_bf16_supported(), reason="this CPU has no bf16 instructions")
def test_bf16_and_fp32_train_steps_agree_on_the_cpu():
    """One step from the same weights: the bf16-autocast loss is within 1% of fp32's, the gradients point the
    same way (cosine > 0.99), and the step changes the weights by nearly the same amount."""
    from chatbot.batching import encode_pairs, iterate_batches, tensorize
    from chatbot.model.network import Seq2Seq, select_positions
    from chatbot.train import autocast_for, masked_nll

    torch.set_num_threads(1)
    data = tiny_dataset()
    pairs = tensorize(encode_pairs(data.train, data.tokenizer))
    batch = next(iterate_batches(pairs, list(range(len(pairs))), 32))
    results = []
    for cpu_amp in (False, True):
        torch.manual_seed(0)
        model = Seq2Seq(ModelConfig(vocab_size=len(data.tokenizer), hidden_size=64))
        with autocast_for(torch.device("cpu"), amp=True, cpu_amp=cpu_amp):
            logits = model(batch.input_seq, batch.lengths, batch.decoder_input, batch.token_index)
        assert logits.dtype == (torch.bfloat16 if cpu_amp else torch.float32)  # autocast really ran
        nll = masked_nll(logits, select_positions(batch.target, batch.token_index)) / batch.n_tokens
        nll.backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((float(nll.detach()), grad))
    (loss32, grad32), (loss16, grad16) = results
    assert loss16 == pytest.approx(loss32, rel=0.01)
    assert float(torch.nn.functional.cosine_similarity(grad32, grad16, dim=0)) > 0.99
    assert float((grad16 - grad32).norm() / grad32.norm()) < 0.15


def test_label_smoothing_loss_is_the_mixture_of_nll_and_uniform_cross_entropy():
    from chatbot.train import masked_nll

    logits = torch.randn(7, 11, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 11, (7,), generator=torch.Generator().manual_seed(1))
    log_probs = logits.log_softmax(dim=-1)
    nll = -log_probs.gather(1, target.unsqueeze(1)).sum()
    uniform = -log_probs.mean(dim=1).sum()
    assert float(masked_nll(logits, target)) == pytest.approx(float(nll), rel=1e-6)
    assert float(masked_nll(logits, target, 0.1)) == pytest.approx(float(0.9 * nll + 0.1 * uniform), rel=1e-6)


def test_bucketed_training_learns_and_logs_per_word_perplexity(tmp_path):
    torch.set_num_threads(1)
    config = TrainConfig(batch_size=8, max_steps=40, eval_every=20, save_every=0, log_every=10, bucket=4)
    train(tiny_dataset(), tmp_path, ModelConfig(hidden_size=32), config, progress=False)
    val = [r for r in map(json.loads, open(tmp_path / "log.jsonl")) if "val_loss" in r]
    assert val[-1]["val_loss"] < val[0]["val_loss"]
    for r in val:  # a word tokenizer: perplexity per word equals perplexity per token
        assert r["val_ppl_word"] == pytest.approx(r["val_ppl"]) and r["pairs_seen"] == r["step"] * 8


def test_train_never_writes_among_files_it_did_not_write(tmp_path, capsys):
    """Sentinels: a folder of notes, the dataset, a folder holding it, a file, another run: each refused untouched."""
    data_dir = write_prepared(tmp_path / "data")
    quick = [*TINY_MODEL, "--max-steps", "2", "--eval-every", "0", "--no-progress"]
    other_run = tmp_path / "other-run"
    assert cli_main(["train", str(data_dir), "--out", str(other_run), *quick]) == 0
    assert {"last.pt", "best.pt", "log.jsonl", "loss.png"} <= {p.name for p in other_run.iterdir()}
    notes = plant_notes(tmp_path / "notes")
    a_file = tmp_path / "notes.txt"
    a_file.write_bytes(b"keep me")
    capsys.readouterr()
    before = snapshot(tmp_path)
    for out, phrase in [
        (notes, "already exists and is not empty"),
        (data_dir, "holds the input"),
        (tmp_path, "holds the input"),
        (a_file, "is a file, not a folder"),
        (other_run, "already holds a run; pass --resume"),
    ]:
        code = cli_main(["train", str(data_dir), "--out", str(out), *quick])
        captured = capsys.readouterr()
        assert_one_line_refusal(code, captured.err, "train", str(out), phrase)
        assert captured.out == ""  # refused before any step
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "notes", "notes.txt", "other-run"]
    # An empty folder is a new run's folder.
    (tmp_path / "empty").mkdir()
    assert cli_main(["train", str(data_dir), "--out", str(tmp_path / "empty"), *quick]) == 0
    assert load_checkpoint(tmp_path / "empty" / "last.pt")["step"] == 2


@pytest.mark.parametrize("signals", [1, 2], ids=["one SIGTERM", "two SIGTERMs"])
def test_sigterm_during_validation_stops_promptly(tmp_path, capsys, monkeypatch, signals):
    """One SIGTERM mid-validation: the validation is abandoned (the one at step 2 stands), last.pt is saved at
    that step, exit 130. A second one aborts at once (exit 130, no checkpoint, no temp file left)."""
    real_evaluate, calls = train_module.evaluate, []

    def evaluate_with_sigterm(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the validation at step 4 (the first is at step 2)
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGTERM)
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", evaluate_with_sigterm)
    data_dir = write_prepared(tmp_path / "data")
    run = tmp_path / "run"
    args = ["train", str(data_dir), "--out", str(run), *TINY_MODEL, "--eval-every", "2", "--max-steps", "1000"]
    start = time.monotonic()
    assert cli_main([*args, "--save-every", "0", "--log-every", "1", "--no-progress"]) == 130
    assert time.monotonic() - start < 60
    captured = capsys.readouterr()
    if signals == 1:
        assert "interrupted at step 4" in captured.out
        last = load_checkpoint(run / "last.pt")
        assert last["step"] == 4 and max(records(run, "val_loss")) == 2
        assert last["metrics"]["val_loss"] == records(run, "val_loss")[2]
    else:
        assert captured.err == "chatbot train: interrupted\n" and not (run / "last.pt").exists()
        assert max(records(run)) == 4 and not [p for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "flags, line",
    [
        (
            ["--decoder-n-layers", "3"],
            "--decoder-n-layers (3) must not exceed --encoder-n-layers (2): the decoder's initial state is the "
            "encoder's last layers",
        ),
    ],
)
def test_flags_checked_after_parsing_are_one_line_before_any_work(tmp_path, capsys, flags, line):
    data_dir = write_prepared(tmp_path / "data")
    assert cli_main(["train", str(data_dir), "--out", str(tmp_path / "run"), *flags]) == 1
    assert capsys.readouterr().err == f"chatbot train: error: {line}\n"
    assert not (tmp_path / "run").exists()


def test_a_device_this_machine_lacks_is_refused_while_parsing(tmp_path, capsys):
    data_dir = write_prepared(tmp_path / "data")
    with pytest.raises(SystemExit) as exit_:
        cli_main(["train", str(data_dir), "--out", str(tmp_path / "run"), "--device", "nonsense"])
    assert exit_.value.code == 1
    assert capsys.readouterr().err == (
        "chatbot train: error: argument --device: 'nonsense' is not a torch device (auto, cpu, cuda, cuda:N, mps) "
        "(see `chatbot train --help`)\n"
    )
    assert not (tmp_path / "run").exists()


def test_init_from_starts_a_new_run_from_a_checkpoints_weights(tmp_path, capsys):
    torch.set_num_threads(1)
    data_dir = write_prepared(tmp_path / "data")
    quiet = ["--no-progress", "--num-threads", "1", "--eval-every", "0", "--save-every", "0"]
    first = tmp_path / "first"
    assert cli_main(["train", str(data_dir), "--out", str(first), *TINY_MODEL, "--max-steps", "30", *quiet]) == 0
    start = load_checkpoint(first / "last.pt")  # 30 steps from the seed's random weights
    second = tmp_path / "second"
    init = ["--init-from", str(first / "last.pt")]
    args = ["train", str(data_dir), "--out", str(second), *init, "--dropout", "0.3", "--learning-rate", "1e-9"]
    assert cli_main([*args, "--max-steps", "1", *quiet]) == 0
    state = load_checkpoint(second / "last.pt")
    assert state["step"] == 1 and state["train_config"]["init_from"] == str(first / "last.pt")
    assert state["model_config"] == {**start["model_config"], "dropout": 0.3}  # the network, dropout changed
    for name, weight in start["model"].items():  # one step at a learning rate of 1e-9 barely moves them
        torch.testing.assert_close(state["model"][name], weight, rtol=0, atol=1e-6)
    capsys.readouterr()
    other = write_prepared(tmp_path / "other")
    voc = Voc("other")
    voc.addWord("a")
    voc.save(other)  # the same pairs, another vocabulary
    for data, extra, message in (
        (data_dir, ["--hidden-size", "32"], "--init-from keeps the checkpoint's network; drop --hidden-size"),
        (other, [], "was trained with another tokenizer than this dataset's"),
    ):
        code = cli_main(["train", str(data), "--out", str(tmp_path / "run"), *init, *extra, *quiet])
        err = capsys.readouterr().err
        assert code == 1 and len(err.strip().splitlines()) == 1 and message in err, err
        assert not (tmp_path / "run" / "last.pt").exists()
    before = snapshot(second)  # --init-from with --resume: refused before any work, the run untouched
    assert cli_main(["train", str(data_dir), "--out", str(second), "--resume", *init, *quiet]) == 1
    err = capsys.readouterr().err
    assert err.startswith("chatbot train: error: --init-from starts a new run") and len(err.splitlines()) == 1, err
    assert snapshot(second) == before


def test_a_factorized_output_layer_trains_from_the_cli_and_loads(tmp_path):
    data_dir = write_prepared(tmp_path / "data")
    run = tmp_path / "run"
    quick = ["--max-steps", "30", "--eval-every", "10", "--batch-size", "16", "--learning-rate", "3e-3", "--no-progress"]
    assert cli_main(["train", str(data_dir), "--out", str(run), *TINY_MODEL, "--output-rank", "8", *quick]) == 0
    model, _, state = load_model(run / "best.pt")
    assert state["model_config"]["output_rank"] == 8 and model.decoder.out.down.weight.shape == (8, 16)
    losses = records(run)
    assert losses[30] < losses[min(losses)]  # it learnt through the factorized layer
