"""`chatbot train`: the tutorial's training loop, made correct, resumable and fast.

One plain loop, top to bottom: shuffled epochs of padded batches -> teacher-forced fast path (the
decoder runs over the whole target in one call) -> masked NLL over real target tokens -> backward ->
gradient clipping -> Adam with the decoder's learning rate 5x the encoder's. Validation loss and
perplexity at an interval; `last.pt` (everything needed to resume exactly) and `best.pt` (the model
with the lowest validation loss); a JSONL log and a PNG curve. Run under
`torchrun --nproc-per-node N -m chatbot train ...` it trains with DistributedDataParallel, each rank
on its own shard of every batch.

Deviations from the tutorial, each for a reason:
- the loss is the mean NLL over all real target tokens of the batch. The tutorial backpropagates
  the sum over time steps of per-step means, which weighs a token in a late (mostly padded) step
  more than one in an early step, and scales the gradient with the target length;
- the shared embedding gets one learning rate (the encoder's). The tutorial puts it in both of its
  optimizers, so it takes two Adam steps per iteration;
- the output layer runs only on real target tokens (padding costs nothing), and there is no
  softmax-then-log (cross_entropy works on logits, which is stable).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from chatbot.batching import (
    Batch,
    PairTensors,
    bucket_order,
    encode_pairs,
    epoch_order,
    eval_order,
    iterate_batches,
    num_batches,
    tensorize,
)
from chatbot.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from chatbot.cli import float_in, int_in
from chatbot.errors import ChatbotError
from chatbot.files import check_out_dir
from chatbot.model import ModelConfig, Seq2Seq, select_positions


@dataclass
class TrainConfig:
    """Optimisation and schedule. Defaults are the tutorial's where it has one."""

    batch_size: int = 64
    learning_rate: float = 1e-4
    decoder_learning_ratio: float = 5.0
    clip: float = 50.0
    teacher_forcing_ratio: float = 1.0
    max_steps: int = 4000  # the tutorial's n_iteration; 0 = no limit
    epochs: int = 0  # 0 = no limit (the tutorial counts iterations, not epochs)
    time_budget_minutes: float = 0.0  # 0 = no limit; otherwise stop, evaluate and save when it is spent
    eval_every: int = 500  # the tutorial has no validation; we check at its save_every
    save_every: int = 500  # the tutorial's save_every
    log_every: int = 10  # the tutorial prints every iteration; 10 keeps a GPU from waiting on .item()
    eval_batch_size: int = 256  # no gradients, so bigger batches fit and run faster
    seed: int = 0  # the tutorial sets none; a seed makes runs repeatable and resumes exact
    amp: bool = True  # bf16 autocast on CUDA
    # bf16 autocast on a CPU with bf16 instructions: 1.5x the pairs/s at hidden 384, but 0.06 nats worse
    # validation loss per pair seen than fp32 after 38,400 pairs (README, "bf16 on the CPU"), so off.
    cpu_amp: bool = False
    label_smoothing: float = 0.0  # not in the tutorial; OpenNMT-py's --label_smoothing (0 = plain NLL)
    bucket: int = 0  # not in the tutorial: sort each run of this many batches by length (0 = plain shuffle)


MODEL_HELP = {
    "hidden_size": "GRU hidden size = embedding size",
    "encoder_n_layers": "encoder GRU layers",
    "decoder_n_layers": "decoder GRU layers (at most the encoder's)",
    "dropout": "dropout on the decoder's embeddings and between GRU layers",
    "attn_model": "Luong attention score: dot, general or concat",
}
TRAIN_HELP = {
    "batch_size": "pairs per step (per process under torchrun)",
    "learning_rate": "Adam learning rate of the encoder and the embedding",
    "decoder_learning_ratio": "the decoder's learning rate is this times --learning-rate",
    "clip": "clip the encoder's and the decoder's gradient norms to this",
    "teacher_forcing_ratio": "chance that a batch is teacher-forced (fast path); otherwise the decoder feeds "
    "back its own greedy output step by step",
    "max_steps": "stop after this many optimizer steps in all (0 = no limit)",
    "epochs": "stop after this many passes over the training pairs (0 = no limit)",
    "time_budget_minutes": "stop cleanly, evaluate and save once this much time has passed (0 = no limit)",
    "eval_every": "compute validation loss/perplexity and update best.pt every this many steps",
    "save_every": "write last.pt every this many steps",
    "log_every": "write a JSONL record and update the progress bar every this many steps",
    "eval_batch_size": "batch size for validation",
    "seed": "random seed (shuffling, dropout, teacher forcing, initial weights)",
    "amp": "bf16 autocast on CUDA",
    "cpu_amp": "bf16 autocast on a CPU with bf16 instructions (AVX512-BF16 or AMX): faster, slightly worse per pair",
    "label_smoothing": "spread this much of each target's probability over the vocabulary in the training loss",
    "bucket": "length bucketing: sort every run of this many batches by target length, then shuffle the "
    "batches, so a batch pads less (0 = off)",
}


# What each flag accepts (checked by argparse, before any work starts). Steps and intervals may be 0 = off.
FLAG_TYPES = {
    "hidden_size": int_in(1, 8192),
    "encoder_n_layers": int_in(1, 16),
    "decoder_n_layers": int_in(1, 16),
    "dropout": float_in(0, 1, high_open=True),
    "attn_model": str,
    "batch_size": int_in(1, 1_000_000),
    "learning_rate": float_in(0, low_open=True),
    "decoder_learning_ratio": float_in(0, low_open=True),
    "clip": float_in(0, low_open=True),
    "teacher_forcing_ratio": float_in(0, 1),
    "max_steps": int_in(0),
    "epochs": int_in(0),
    "time_budget_minutes": float_in(0),
    "eval_every": int_in(0),
    "save_every": int_in(0),
    "log_every": int_in(1),
    "eval_batch_size": int_in(1, 1_000_000),
    "seed": int_in(0),
    "label_smoothing": float_in(0, 1, high_open=True),
    "bucket": int_in(0, 100_000),
}


@dataclass
class TrainResult:
    """What a run ended with."""

    step: int
    epoch: int
    best_val_loss: float
    val_loss: float
    stopped_by: str  # "done", "time", "interrupt"


# --------------------------------------------------------------------------------------------
# The pieces of one step
# --------------------------------------------------------------------------------------------


def make_optimizer(model: Seq2Seq, config: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with two groups: encoder (+ shared embedding) at lr, decoder at lr * decoder_learning_ratio."""
    # named_parameters() lists the shared embedding once, as "embedding.weight".
    encoder = [p for n, p in model.named_parameters() if not n.startswith("decoder.")]
    decoder = [p for n, p in model.named_parameters() if n.startswith("decoder.")]
    groups = [
        {"params": encoder, "lr": config.learning_rate},
        {"params": decoder, "lr": config.learning_rate * config.decoder_learning_ratio},
    ]
    # The fused kernel updates every parameter in one pass instead of a loop of small ops.
    return torch.optim.Adam(groups, lr=config.learning_rate, fused=device.type in ("cpu", "cuda"))


def masked_nll(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed NLL: logits (N, V) of the N real target tokens, target (N,) -> scalar (float32).

    With label_smoothing e > 0 the target is (1 - e) on the true token plus e spread evenly over the
    vocabulary (Szegedy et al. 2016), which keeps the model from putting all its mass on safe replies.
    """
    # fix: the tutorial's maskNLLLoss took -log(gather(softmax)); cross_entropy's log_softmax is stable.
    return F.cross_entropy(logits.float(), target, reduction="sum", label_smoothing=label_smoothing)


def cpu_bf16_supported() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX), without which bf16 autocast is slow."""
    cpu = torch.cpu
    return any(getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def autocast_for(device: torch.device, amp: bool, cpu_amp: bool = False) -> torch.autocast:
    """bf16 autocast: on CUDA when `amp`, on a CPU with bf16 instructions when `cpu_amp`; else disabled (fp32)."""
    enabled = (device.type == "cuda" and amp) or (device.type == "cpu" and cpu_amp and cpu_bf16_supported())
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def train_step(
    model: torch.nn.Module,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    clip: float,
    teacher_forcing: bool,
    normalizer: float,
    autocast: torch.autocast,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """One optimizer step on a (device) batch; returns the batch's summed loss (detached, no sync)."""
    optimizer.zero_grad(set_to_none=True)
    with autocast:
        logits = model(batch.input_seq, batch.lengths, batch.decoder_input, batch.token_index, teacher_forcing)
    target = select_positions(batch.target, batch.token_index)
    nll = masked_nll(logits, target, label_smoothing)  # logits (N, V), target (N,)
    (nll / normalizer).backward()
    # As the tutorial: the encoder's and the decoder's gradients are clipped separately.
    for group in optimizer.param_groups:
        torch.nn.utils.clip_grad_norm_(group["params"], clip)
    optimizer.step()
    return nll.detach()


@torch.no_grad()
def evaluate(
    model: Seq2Seq,
    examples: PairTensors,
    batch_size: int,
    device: torch.device,
    autocast: torch.autocast,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[float, int]:
    """Teacher-forced mean NLL per target token over `examples` (all ranks together) -> (loss, tokens)."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # [summed NLL, tokens]
    for batch in iterate_batches(examples, eval_order(examples, rank, world_size), batch_size):
        batch = batch.to(device)
        with autocast:
            logits = model(batch.input_seq, batch.lengths, batch.decoder_input, batch.token_index)
        total[0] += masked_nll(logits, select_positions(batch.target, batch.token_index))
        total[1] += batch.n_tokens
    if world_size > 1:
        dist.all_reduce(total)
    model.train(was_training)
    nll, tokens = total.tolist()
    return (nll / tokens if tokens else float("nan")), int(tokens)


def perplexity(loss: float) -> float:
    """exp(mean NLL per token), capped so a diverged loss prints as inf rather than overflowing."""
    return math.exp(loss) if loss < 700 else float("inf")


# --------------------------------------------------------------------------------------------
# Run state: checkpoints, log, plot, stop requests
# --------------------------------------------------------------------------------------------


def rng_state(tf_gen: torch.Generator) -> dict[str, Any]:
    """Every random stream the loop draws from, as tensors (plain data)."""
    state = {"torch": torch.get_rng_state(), "teacher_forcing": tf_gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], tf_gen: torch.Generator) -> None:
    """Restore `rng_state()`'s streams."""
    torch.set_rng_state(state["torch"])
    tf_gen.set_state(state["teacher_forcing"])
    if torch.cuda.is_available() and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])


class RunLog:
    """The JSONL log (one record per line) plus the records in memory for the plot."""

    def __init__(self, out_dir: Path, enabled: bool, keep_until_step: int | None):
        self.path = out_dir / "log.jsonl"
        self.plot_path = out_dir / "loss.png"
        self.enabled = enabled
        self.records: list[dict] = []
        if not enabled:
            return
        if keep_until_step is not None and self.path.exists():
            # Resuming: drop what the interrupted run logged after its last checkpoint, since those
            # steps are about to be run again.
            with open(self.path, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f if line.strip()]
            self.records = [r for r in lines if r.get("step", 0) <= keep_until_step]
        text = "".join(json.dumps(r) + "\n" for r in self.records)
        atomic_write(self.path, lambda f: f.write(text.encode("utf-8")))

    def write(self, record: dict) -> None:
        """Append one record."""
        if not self.enabled:
            return
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def plot(self) -> None:
        """Loss (train and valid) and validation perplexity against step, as a PNG."""
        if not self.enabled:
            return
        from matplotlib.figure import Figure  # the object API needs no GUI backend

        train = [(r["step"], r["loss"]) for r in self.records if "loss" in r]
        valid = [(r["step"], r["val_loss"]) for r in self.records if "val_loss" in r]
        fig = Figure(figsize=(10, 4), layout="constrained")
        ax_loss, ax_ppl = fig.subplots(1, 2)
        if train:
            ax_loss.plot([s for s, _ in train], [v for _, v in train], label="train", linewidth=0.8)
        if valid:
            ax_loss.plot([s for s, _ in valid], [v for _, v in valid], "o-", label="valid")
            ax_ppl.plot([s for s, _ in valid], [perplexity(v) for _, v in valid], "o-", color="C1")
        ax_loss.set(xlabel="step", ylabel="NLL per token", title="loss")
        ax_loss.legend()
        ax_ppl.set(xlabel="step", ylabel="perplexity", title="validation perplexity", yscale="log")
        atomic_write(self.plot_path, lambda f: fig.savefig(f, format="png", dpi=100))


class StopRequest:
    """Turns the first Ctrl-C (or SIGTERM) into 'stop after this step and save'; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step to save a checkpoint (Ctrl-C again to abort)", flush=True)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def train(
    dataset: Any,
    out_dir: str | Path,
    model_config: ModelConfig,
    config: TrainConfig,
    device: str | torch.device = "cpu",
    resume_state: dict[str, Any] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train on `dataset` (a PreparedDataset: train, valid, tokenizer, normalize, max_length) into `out_dir`."""
    device = torch.device(device)
    out_dir = Path(out_dir)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    main_process = rank == 0

    tokenizer = dataset.tokenizer
    examples = tensorize(encode_pairs(dataset.train, tokenizer))  # padded once: batches are then slices
    valid = tensorize(encode_pairs(dataset.valid, tokenizer))
    if len(examples) < world_size:
        raise ChatbotError(f"the training split has {len(examples)} pairs; need at least {world_size}")
    model_config.vocab_size = len(tokenizer)

    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = Seq2Seq(model_config).to(device)
    optimizer = make_optimizer(model, config, device)
    tf_gen = torch.Generator().manual_seed(config.seed)
    step, epoch, batch_index = 0, 0, 0
    best_val_loss, val_loss = math.inf, math.nan
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        for group, lr in zip(optimizer.param_groups, (1.0, config.decoder_learning_ratio), strict=True):
            group["lr"] = config.learning_rate * lr  # a --learning-rate given on resume takes effect
        step = resume_state["step"]
        position = resume_state["data_position"]
        epoch = position["epoch"]
        # Same batch size and world size: exact. Otherwise start where the same pairs were consumed.
        batch_index = position["batch"] * position["batch_size"] * position["world_size"]
        batch_index //= config.batch_size * world_size
        best_val_loss = resume_state["metrics"].get("best_val_loss", math.inf)
        val_loss = resume_state["metrics"].get("val_loss", math.nan)
        if world_size == 1:
            set_rng_state(resume_state["rng"], tf_gen)
    if world_size > 1:
        # Dropout differs per rank (as with independent workers); reseeded from the step so a
        # distributed resume is repeatable too, though only single-process resume is bit-exact.
        torch.manual_seed(config.seed + 1_000_003 * rank + step)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    net.train()

    autocast = autocast_for(device, config.amp, config.cpu_amp)
    valid_words = sum(len(r.split()) + 1 for _, r in dataset.valid)  # + 1: EOS, an event in every tokenizer
    per_epoch = num_batches(len(examples), config.batch_size, world_size)
    planned = [n for n in (config.max_steps, config.epochs * per_epoch) if n > 0]
    total_steps = min(planned) if planned else None
    budget_s = config.time_budget_minutes * 60
    log = RunLog(out_dir, main_process, step if resume_state is not None else None)

    def save(name: str, full: bool) -> None:
        if not main_process:
            return
        state = {
            "model_config": model_config.to_dict(),
            "model": model.state_dict(),
            "tokenizer": tokenizer.state_dict(),
            "normalize": dataset.normalize,
            "max_length": int(dataset.max_length),
            "train_config": asdict(config),
            "step": step,
            "epoch": epoch,
            "metrics": {"val_loss": val_loss, "val_ppl": perplexity(val_loss), "best_val_loss": best_val_loss},
        }
        if full:  # best.pt is for inference; only last.pt carries what resuming needs
            state["optimizer"] = optimizer.state_dict()
            state["scheduler"] = None  # the tutorial uses a constant learning rate
            state["rng"] = rng_state(tf_gen)
            state["data_position"] = {
                "epoch": epoch,
                "batch": batch_index,
                "batch_size": config.batch_size,
                "world_size": world_size,
            }
        save_checkpoint(out_dir / name, state)

    validated_at = step if resume_state is not None else None

    def validate() -> None:
        nonlocal val_loss, best_val_loss, validated_at
        validated_at = step
        if not valid:
            return
        # Validation in fp32, whatever training runs in, so runs with and without amp compare.
        fp32 = autocast_for(device, False)
        val_loss, tokens = evaluate(model, valid, config.eval_batch_size, device, fp32, rank, world_size)
        val_ppl_word = perplexity(val_loss * tokens / valid_words)  # summed NLL over words: tokenizers compare
        pairs_seen = step * config.batch_size * world_size
        log.write(
            {
                "step": step,
                "epoch": epoch,
                "pairs_seen": pairs_seen,
                "seconds": round(time.monotonic() - start, 1),
                "val_loss": val_loss,
                "val_ppl": perplexity(val_loss),
                "val_ppl_word": val_ppl_word,
            }
        )
        if val_loss < best_val_loss:
            best_val_loss = val_loss
            save("best.pt", full=False)
        log.plot()

    # Running sums since the last log record, kept on the device so a GPU never waits on .item().
    run_nll = torch.zeros((), dtype=torch.float32, device=device)
    run_tokens, run_steps, run_start = 0, 0, time.perf_counter()
    start = time.monotonic()
    last_logged = step

    def flush_log() -> None:
        """Write a record; stop (raising) on a NaN/inf loss, before anything can be saved."""
        nonlocal run_nll, run_tokens, run_steps, run_start, last_logged
        if run_steps == 0:
            return
        totals = torch.stack([run_nll.double(), torch.tensor(float(run_tokens), dtype=torch.float64, device=device)])
        if distributed:
            dist.all_reduce(totals)  # every rank sees a NaN anywhere, and the log covers all shards
        nll, tokens = totals.tolist()
        if not math.isfinite(nll):
            raise ChatbotError(
                f"loss became {nll} between steps {last_logged + 1} and {step}; stopped without saving, so "
                f"{out_dir / 'last.pt'} (if any) still holds the last good state"
            )
        elapsed = time.perf_counter() - run_start
        loss = nll / max(tokens, 1)
        tps = tokens / elapsed
        log.write({"step": step, "epoch": epoch, "loss": loss, "ppl": perplexity(loss), "tokens_per_s": tps})
        bar.set_postfix(loss=f"{loss:.3f}", ppl=f"{perplexity(loss):.1f}", tok_s=f"{tps:,.0f}", refresh=False)
        run_nll.zero_()
        run_tokens, run_steps, run_start, last_logged = 0, 0, time.perf_counter(), step

    stopped_by = "done"
    bar = tqdm(
        total=total_steps, initial=step, unit="step", disable=not (progress and main_process), dynamic_ncols=True
    )
    with bar, StopRequest() as stop:
        while stopped_by == "done" and (total_steps is None or step < total_steps):
            order = epoch_order(len(examples), epoch, config.seed, rank, world_size)
            if config.bucket > 0:
                order = bucket_order(examples, order, config.batch_size, config.bucket, epoch, config.seed)
            for batch in iterate_batches(examples, order, config.batch_size, start=batch_index):
                batch = batch.to(device)
                teacher_forcing = bool(torch.rand((), generator=tf_gen) < config.teacher_forcing_ratio)
                normalizer = float(batch.n_tokens)
                time_up = budget_s > 0 and time.monotonic() - start > budget_s
                stop_flags = [float(stop.requested), float(time_up)]
                if distributed:
                    # One small collective per step: the global token count (so the loss is the
                    # mean over the combined batch) and whether any rank must stop.
                    shared = torch.tensor([normalizer, *stop_flags], dtype=torch.float64, device=device)
                    dist.all_reduce(shared)
                    normalizer = shared[0].item() / world_size  # DDP averages gradients over ranks
                    stop_flags = shared[1:].tolist()
                if stop_flags[0] or stop_flags[1]:
                    stopped_by = "interrupt" if stop_flags[0] else "time"
                    break
                nll = train_step(
                    net, batch, optimizer, config.clip, teacher_forcing, normalizer, autocast, config.label_smoothing
                )
                run_nll += nll
                run_tokens += batch.n_tokens
                run_steps += 1
                step += 1
                batch_index += 1
                bar.update()
                eval_due = config.eval_every > 0 and step % config.eval_every == 0
                save_due = config.save_every > 0 and step % config.save_every == 0
                if step % config.log_every == 0 or eval_due or save_due:
                    flush_log()
                if eval_due:
                    validate()
                if save_due:
                    save("last.pt", full=True)
                if eval_due or save_due:
                    run_start = time.perf_counter()  # tokens/s counts training time only
                if total_steps is not None and step >= total_steps:
                    break
            else:
                epoch, batch_index = epoch + 1, 0
                if config.epochs and epoch >= config.epochs:
                    break
        flush_log()
        if step != validated_at:
            validate()
        save("last.pt", full=True)
        if not valid or not (out_dir / "best.pt").exists():
            save("best.pt", full=False)  # no validation split: the last model is the best we know
        log.plot()
    return TrainResult(step, epoch, best_val_loss, val_loss, stopped_by)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, helps: dict[str, str], title: str) -> None:
    """One `--field-name` flag per documented field of `cls`, defaulted (and typed) by the dataclass."""
    group = parser.add_argument_group(title)
    defaults = cls()
    for f in fields(cls):
        if f.name not in helps:
            continue
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        # SUPPRESS: a flag not given leaves no attribute, so --resume can tell "given" from "default".
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": f"{helps[f.name]} (default: {default})"}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = FLAG_TYPES.get(f.name, type(default))
        if f.name == "attn_model":
            kwargs["choices"] = ["dot", "general", "concat"]
        group.add_argument(flag, **kwargs)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `chatbot train`."""
    parser.add_argument("data_dir", help="prepared dataset folder (written by `chatbot prepare`)")
    parser.add_argument("--out", required=True, help="run folder for last.pt, best.pt, log.jsonl and loss.png")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out exactly from its last.pt")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    parser.add_argument(
        "--num-threads", type=int_in(0, 1024), default=0, help="CPU threads for torch (0 = torch's default)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (the JSONL log still runs)")
    add_dataclass_flags(parser, ModelConfig, MODEL_HELP, "model (ignored with --resume: the checkpoint's is used)")
    add_dataclass_flags(parser, TrainConfig, TRAIN_HELP, "training")


def pick_device(name: str, local_rank: int) -> torch.device:
    """'auto' -> this rank's GPU when CUDA is present, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ChatbotError(f"--device {name!r} is not a torch device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ChatbotError("--device cuda was asked for, but torch sees no CUDA device")
    return device


def configs_from_args(args: argparse.Namespace, resume_state: dict | None) -> tuple[ModelConfig, TrainConfig]:
    """Dataclass defaults (or the checkpoint's configs on --resume), overridden by the flags given."""
    given = vars(args)
    if resume_state is None:
        model_config = ModelConfig(**{k: given[k] for k in MODEL_HELP if k in given})
        if model_config.decoder_n_layers > model_config.encoder_n_layers:  # the decoder starts from their state
            raise ChatbotError(
                f"--decoder-n-layers ({model_config.decoder_n_layers}) must not exceed --encoder-n-layers "
                f"({model_config.encoder_n_layers}): the decoder's initial state is the encoder's last layers"
            )
        train_config = TrainConfig()
    else:
        model_config = ModelConfig.from_dict(resume_state["model_config"])
        changed = [k for k in MODEL_HELP if k in given and given[k] != getattr(model_config, k)]
        if changed:
            raise ChatbotError(f"--resume keeps the checkpoint's model; drop --{changed[0].replace('_', '-')}")
        saved = resume_state.get("train_config", {})
        train_config = TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__})
    for k in TRAIN_HELP:
        if k in given:
            setattr(train_config, k, given[k])
    return model_config, train_config


def load_resume_state(out_dir: Path, tokenizer: Any) -> dict[str, Any]:
    """last.pt of the run in `out_dir`, checked to be a resumable state for this dataset."""
    state = load_checkpoint(out_dir / "last.pt")
    missing = [k for k in ("optimizer", "rng", "data_position", "step") if k not in state]
    if missing:
        raise ChatbotError(f"{out_dir / 'last.pt'} cannot be resumed: it has no {missing[0]}")
    if state["tokenizer"] != tokenizer.state_dict():
        raise ChatbotError(f"{out_dir / 'last.pt'} was trained with another tokenizer than this dataset's")
    return state


def init_distributed(device_arg: str) -> tuple[int, int]:
    """Join the torchrun process group when launched by torchrun -> (rank, local_rank)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_arg != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank(), local_rank


def run(args: argparse.Namespace) -> int:
    """Entry point of `chatbot train`."""
    from chatbot.prepare import load_prepared

    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    rank, local_rank = init_distributed(args.device)
    try:
        device = pick_device(args.device, local_rank)
        if device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 matmuls for whatever autocast leaves in fp32
        dataset = load_prepared(args.data_dir)
        out_dir = Path(args.out)
        if args.resume:
            resume_state = load_resume_state(out_dir, dataset.tokenizer)
        elif (out_dir / "last.pt").exists():
            raise ChatbotError(f"{out_dir} already holds a run; pass --resume to continue it, or pick another --out")
        else:  # a new run starts in a new or empty folder: never among notes, the dataset or another run's files
            check_out_dir(out_dir, None, [args.data_dir])
            resume_state = None
        model_config, config = configs_from_args(args, resume_state)
        result = train(dataset, out_dir, model_config, config, device, resume_state, progress=not args.no_progress)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        how = {"done": "finished", "time": "time budget spent", "interrupt": "interrupted"}[result.stopped_by]
        print(
            f"{how} at step {result.step} (epoch {result.epoch}): validation loss {result.val_loss:.4f}, "
            f"perplexity {perplexity(result.val_loss):.2f}; best {result.best_val_loss:.4f}. "
            f"Saved {out_dir / 'last.pt'} and {out_dir / 'best.pt'}"
        )
    return 130 if result.stopped_by == "interrupt" else 0
