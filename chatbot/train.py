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
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
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
from chatbot.checkpoint import load_checkpoint, save_checkpoint
from chatbot.cli import add_dataclass_flags, add_device_flag, float_in, int_in, resolve_device
from chatbot.errors import ChatbotError
from chatbot.files import atomic_write, check_out_dir
from chatbot.model.network import ModelConfig, Seq2Seq, select_positions
from chatbot.scoring import batch_nll


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
    # bf16 autocast on a CPU with bf16 instructions: more pairs/s, but a worse validation loss per pair
    # seen than fp32 (README, "Quality: the shipped bot", bf16 on the CPU), so off.
    cpu_amp: bool = False
    label_smoothing: float = 0.0  # not in the tutorial; OpenNMT-py's --label_smoothing (0 = plain NLL)
    bucket: int = 0  # not in the tutorial: sort each run of this many batches by length (0 = plain shuffle)
    init_from: str = ""  # not in the tutorial: a checkpoint whose weights a new run starts from ("" = random)


MODEL_HELP = {
    "hidden_size": "GRU hidden size = embedding size",
    "encoder_n_layers": "encoder GRU layers",
    "decoder_n_layers": "decoder GRU layers (at most the encoder's)",
    "dropout": "dropout on the decoder's embeddings and between GRU layers",
    "attn_model": "Luong attention score: dot, general or concat",
    "output_rank": "0: the tutorial's output layer; r: factorized through r (H x r, then r x V), fewer weights "
    "per decoding step (scripts/factorize_model.py makes one from a trained model)",
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
    "init_from": "start from this checkpoint's weights (same tokenizer; a fresh optimizer and step 0): to train "
    "on with other settings, e.g. a lower learning rate; the network is the checkpoint's",
}


# What each flag accepts (checked by argparse, before any work starts). Steps and intervals may be 0 = off.
FLAG_TYPES = {
    "hidden_size": int_in(1, 8192),
    "encoder_n_layers": int_in(1, 16),
    "decoder_n_layers": int_in(1, 16),
    "dropout": float_in(0, 1, high_open=True),
    "attn_model": str,
    "output_rank": int_in(0, 8192),
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
    "init_from": str,
}
CHOICES = {"attn_model": ["dot", "general", "concat"]}


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


def learning_rates(config: TrainConfig) -> tuple[float, float]:
    """(encoder + shared embedding, decoder): the decoder's is decoder_learning_ratio times the encoder's."""
    return config.learning_rate, config.learning_rate * config.decoder_learning_ratio


def make_optimizer(model: Seq2Seq, config: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with two groups: encoder (+ shared embedding) at lr, decoder at lr * decoder_learning_ratio."""
    # named_parameters() lists the shared embedding once, as "embedding.weight".
    encoder = [p for n, p in model.named_parameters() if not n.startswith("decoder.")]
    decoder = [p for n, p in model.named_parameters() if n.startswith("decoder.")]
    encoder_lr, decoder_lr = learning_rates(config)
    groups = [{"params": encoder, "lr": encoder_lr}, {"params": decoder, "lr": decoder_lr}]
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
    stop: Callable[[], bool] | None = None,
) -> tuple[float, int]:
    """Teacher-forced mean NLL per target token over `examples` (all ranks together) -> (loss, tokens).

    `stop()` is asked before each batch (one process only); when it says yes the result is (nan, 0).
    """
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # [summed NLL, tokens]
    for batch in iterate_batches(examples, eval_order(examples, rank, world_size), batch_size):
        if stop is not None and world_size == 1 and stop():
            model.train(was_training)
            return float("nan"), 0
        batch = batch.to(device)
        with autocast:
            total[0] += batch_nll(model, batch).sum()
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
# Run state: where a run is, its checkpoints, log, plot, running sums and stop requests
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


@dataclass
class Progress:
    """Where a run is; last.pt records it, so a resumed run goes on exactly from there."""

    step: int = 0
    epoch: int = 0
    batch_index: int = 0  # batches of this epoch already trained on
    best_val_loss: float = math.inf
    val_loss: float = math.nan
    validated_at: int | None = None  # the step of the last validation (None: not yet in this process)


def resume(
    state: dict[str, Any],
    model: Seq2Seq,
    optimizer: torch.optim.Optimizer,
    tf_gen: torch.Generator,
    config: TrainConfig,
    world_size: int,
) -> Progress:
    """Load last.pt's weights, optimizer and random streams -> where the run stopped."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    for group, lr in zip(optimizer.param_groups, learning_rates(config), strict=True):
        group["lr"] = lr  # a --learning-rate given on resume takes effect
    position = state["data_position"]
    # Same batch size and world size: exact. Otherwise start where the same pairs were consumed.
    pairs_done = position["batch"] * position["batch_size"] * position["world_size"]
    if world_size == 1:
        set_rng_state(state["rng"], tf_gen)
    return Progress(
        step=state["step"],
        epoch=position["epoch"],
        batch_index=pairs_done // (config.batch_size * world_size),
        best_val_loss=state["metrics"].get("best_val_loss", math.inf),
        val_loss=state["metrics"].get("val_loss", math.nan),
        validated_at=state["step"],
    )


def checkpoint_state(
    model: Seq2Seq,
    dataset: Any,
    config: TrainConfig,
    at: Progress,
    resumable: tuple[torch.optim.Optimizer, torch.Generator, int] | None = None,
) -> dict[str, Any]:
    """A checkpoint as plain data. best.pt is for inference; last.pt also carries what resuming needs
    (`resumable` = the optimizer, the teacher-forcing generator and the world size)."""
    state = {
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        "tokenizer": dataset.tokenizer.state_dict(),
        "normalize": dataset.normalize,
        "max_length": int(dataset.max_length),
        "train_config": asdict(config),
        "step": at.step,
        "epoch": at.epoch,
        "metrics": {"val_loss": at.val_loss, "val_ppl": perplexity(at.val_loss), "best_val_loss": at.best_val_loss},
    }
    if resumable is not None:
        optimizer, tf_gen, world_size = resumable
        state["optimizer"] = optimizer.state_dict()
        state["scheduler"] = None  # the tutorial uses a constant learning rate
        state["rng"] = rng_state(tf_gen)
        state["data_position"] = {
            "epoch": at.epoch,
            "batch": at.batch_index,
            "batch_size": config.batch_size,
            "world_size": world_size,
        }
    return state


class RunningSums:
    """Summed NLL and tokens since the last log record, kept on the device so a GPU never waits on .item()."""

    def __init__(self, device: torch.device, step: int):
        self.device = device
        self.since_step = step  # the step of the last record
        self.nll = torch.zeros((), dtype=torch.float32, device=device)
        self.tokens, self.steps, self.start = 0, 0, time.perf_counter()

    def add(self, nll: torch.Tensor, tokens: int) -> None:
        self.nll += nll
        self.tokens += tokens
        self.steps += 1

    def restart_clock(self) -> None:
        """tokens/s counts training time only: call after validating or saving."""
        self.start = time.perf_counter()

    def take(self, distributed: bool, step: int) -> tuple[float, float] | None:
        """-> (mean loss per token, tokens/s) since the last call, over all ranks, and reset; None if no step ran."""
        if self.steps == 0:
            return None
        totals = torch.stack(
            [self.nll.double(), torch.tensor(float(self.tokens), dtype=torch.float64, device=self.device)]
        )
        if distributed:
            dist.all_reduce(totals)  # every rank sees a NaN anywhere, and the log covers all shards
        nll, tokens = totals.tolist()
        tokens_per_s = tokens / (time.perf_counter() - self.start)
        self.nll.zero_()
        self.tokens, self.steps, self.since_step = 0, 0, step
        self.restart_clock()
        return nll / max(tokens, 1), tokens_per_s


def planned_steps(config: TrainConfig, n_pairs: int, world_size: int) -> int | None:
    """The step the run stops at: the sooner of --max-steps and --epochs (None: neither is set)."""
    per_epoch = num_batches(n_pairs, config.batch_size, world_size)
    planned = [n for n in (config.max_steps, config.epochs * per_epoch) if n > 0]
    return min(planned) if planned else None


def train_order(examples: PairTensors, epoch: int, config: TrainConfig, rank: int, world_size: int) -> torch.Tensor:
    """This rank's order of the training pairs in `epoch`: shuffled, then length-bucketed if --bucket."""
    order = epoch_order(len(examples), epoch, config.seed, rank, world_size)
    if config.bucket > 0:
        order = bucket_order(examples, order, config.batch_size, config.bucket, epoch, config.seed)
    return order


def agree(
    n_tokens: int, stop_requested: bool, time_up: bool, world_size: int, device: torch.device
) -> tuple[float, str | None]:
    """The loss normalizer (the batch's tokens) and why to stop now (None: go on), agreed by all ranks.

    One small collective per step under torchrun: the global token count (so the loss is the mean
    over the combined batch) and whether any rank must stop.
    """
    normalizer, flags = float(n_tokens), [float(stop_requested), float(time_up)]
    if world_size > 1:
        shared = torch.tensor([normalizer, *flags], dtype=torch.float64, device=device)
        dist.all_reduce(shared)
        normalizer = shared[0].item() / world_size  # DDP averages gradients over ranks
        flags = shared[1:].tolist()
    return normalizer, ("interrupt" if flags[0] else "time" if flags[1] else None)


@dataclass
class Checkpointer:
    """Writes a run's last.pt (everything resuming needs) and best.pt (for inference); only rank 0 writes."""

    out_dir: Path
    model: Seq2Seq
    dataset: Any
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    tf_gen: torch.Generator
    world_size: int
    enabled: bool

    def save(self, name: str, at: Progress) -> None:
        if self.enabled:
            resumable = (self.optimizer, self.tf_gen, self.world_size) if name == "last.pt" else None
            save_checkpoint(self.out_dir / name, checkpoint_state(self.model, self.dataset, self.config, at, resumable))


def log_training(sums: RunningSums, at: Progress, log: RunLog, bar: tqdm, distributed: bool) -> None:
    """Write the training record since the last one (loss, tokens/s); stop, raising, on a NaN/inf loss,
    before anything can be saved."""
    since = sums.since_step
    taken = sums.take(distributed, at.step)
    if taken is None:
        return
    loss, tokens_per_s = taken
    if not math.isfinite(loss):
        raise ChatbotError(
            f"loss became {loss} between steps {since + 1} and {at.step}; stopped without saving, so "
            f"{log.path.parent / 'last.pt'} (if any) still holds the last good state"
        )
    log.write({"step": at.step, "epoch": at.epoch, "loss": loss, "ppl": perplexity(loss), "tokens_per_s": tokens_per_s})
    bar.set_postfix(loss=f"{loss:.3f}", ppl=f"{perplexity(loss):.1f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)


@dataclass
class Validator:
    """Validation loss and perplexities (per token, per word) at a step -> the log and the plot; best.pt
    when the loss is the best so far. Always fp32, so runs with and without amp compare."""

    model: Seq2Seq
    valid: PairTensors
    valid_words: int  # the validation replies' words + 1 EOS each: perplexity per word compares tokenizers
    config: TrainConfig
    log: RunLog
    checkpoints: Checkpointer
    start: float  # time.monotonic() at the start of the run
    rank: int = 0
    world_size: int = 1

    def __call__(self, at: Progress, stop: StopRequest | None = None) -> None:
        """Validate at this step; a stop request (Ctrl-C) abandons it, so stopping never waits for it."""
        at.validated_at = at.step
        if not self.valid:
            return
        device, batch_size = self.model.device, self.config.eval_batch_size
        fp32 = autocast_for(device, False)
        asked = None if stop is None else (lambda: stop.requested)
        loss, tokens = evaluate(self.model, self.valid, batch_size, device, fp32, self.rank, self.world_size, asked)
        if tokens == 0:
            return  # abandoned: the last validation's loss stands
        at.val_loss = loss
        self.log.write(
            {
                "step": at.step,
                "epoch": at.epoch,
                "pairs_seen": at.step * self.config.batch_size * self.world_size,
                "seconds": round(time.monotonic() - self.start, 1),
                "val_loss": at.val_loss,
                "val_ppl": perplexity(at.val_loss),
                "val_ppl_word": perplexity(at.val_loss * tokens / self.valid_words),
            }
        )
        if at.val_loss < at.best_val_loss:
            at.best_val_loss = at.val_loss
            self.checkpoints.save("best.pt", at)
        self.log.plot()


def training_data(dataset: Any, world_size: int) -> tuple[PairTensors, PairTensors, int]:
    """-> the training and validation pairs as padded tensors (padded once: batches are then slices), and
    the validation replies' word count (+ 1 for EOS, an event in every tokenizer)."""
    examples = tensorize(encode_pairs(dataset.train, dataset.tokenizer))
    if len(examples) < world_size:
        raise ChatbotError(f"the training split has {len(examples)} pairs; need at least {world_size}")
    valid = tensorize(encode_pairs(dataset.valid, dataset.tokenizer))
    return examples, valid, sum(len(r.split()) + 1 for _, r in dataset.valid)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def train(
    dataset: Any,  # a PreparedDataset: train, valid, tokenizer, normalize, max_length
    out_dir: str | Path,
    model_config: ModelConfig,
    config: TrainConfig,
    device: str | torch.device = "cpu",
    resume_state: dict[str, Any] | None = None,
    progress: bool = True,
    init_state: dict[str, Any] | None = None,  # config.init_from's checkpoint, if the caller has loaded it
) -> TrainResult:
    """Train on `dataset` into `out_dir`; a new run starts from `config.init_from`'s weights if set."""
    device, out_dir = torch.device(device), Path(out_dir)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    main_process = rank == 0
    examples, valid, valid_words = training_data(dataset, world_size)
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = Seq2Seq(replace(model_config, vocab_size=len(dataset.tokenizer))).to(device)
    if resume_state is None and config.init_from:
        model.load_state_dict((init_state or load_init_state(config.init_from, dataset.tokenizer))["model"])
    optimizer = make_optimizer(model, config, device)
    tf_gen = torch.Generator().manual_seed(config.seed)
    at = Progress() if resume_state is None else resume(resume_state, model, optimizer, tf_gen, config, world_size)
    if distributed:
        # Dropout differs per rank (as with independent workers); reseeded from the step so a
        # distributed resume is repeatable too, though only single-process resume is bit-exact.
        torch.manual_seed(config.seed + 1_000_003 * rank + at.step)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    net.train()
    autocast = autocast_for(device, config.amp, config.cpu_amp)
    total_steps = planned_steps(config, len(examples), world_size)
    log = RunLog(out_dir, main_process, at.step if resume_state is not None else None)
    checkpoints = Checkpointer(out_dir, model, dataset, config, optimizer, tf_gen, world_size, main_process)
    sums, start = RunningSums(device, at.step), time.monotonic()
    deadline = start + config.time_budget_minutes * 60 if config.time_budget_minutes > 0 else math.inf
    validate = Validator(model, valid, valid_words, config, log, checkpoints, start, rank, world_size)
    stopped_by = None
    bar = tqdm(
        total=total_steps, initial=at.step, unit="step", disable=not (progress and main_process), dynamic_ncols=True
    )
    with bar, StopRequest() as stop:
        while stopped_by is None and (total_steps is None or at.step < total_steps):
            order = train_order(examples, at.epoch, config, rank, world_size)
            for batch in iterate_batches(examples, order, config.batch_size, start=at.batch_index):
                batch = batch.to(device)
                teacher_forcing = bool(torch.rand((), generator=tf_gen) < config.teacher_forcing_ratio)
                time_up = time.monotonic() > deadline
                normalizer, stopped_by = agree(batch.n_tokens, stop.requested, time_up, world_size, device)
                if stopped_by is not None:
                    break
                nll = train_step(
                    net, batch, optimizer, config.clip, teacher_forcing, normalizer, autocast, config.label_smoothing
                )
                sums.add(nll, batch.n_tokens)
                at.step, at.batch_index = at.step + 1, at.batch_index + 1
                bar.update()
                eval_due = config.eval_every > 0 and at.step % config.eval_every == 0
                save_due = config.save_every > 0 and at.step % config.save_every == 0
                if at.step % config.log_every == 0 or eval_due or save_due:
                    log_training(sums, at, log, bar, distributed)
                if eval_due:
                    validate(at, stop)
                if save_due:
                    checkpoints.save("last.pt", at)
                if eval_due or save_due:
                    sums.restart_clock()
                if total_steps is not None and at.step >= total_steps:
                    break
            else:
                at.epoch, at.batch_index = at.epoch + 1, 0
                if config.epochs and at.epoch >= config.epochs:
                    break
        log_training(sums, at, log, bar, distributed)
        if at.step != at.validated_at:
            validate(at, stop)
        checkpoints.save("last.pt", at)
        if not valid or not (out_dir / "best.pt").exists():
            checkpoints.save("best.pt", at)  # no validation split: the last model is the best we know
        log.plot()
    return TrainResult(at.step, at.epoch, at.best_val_loss, at.val_loss, stopped_by or "done")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `chatbot train`."""
    parser.add_argument("data_dir", help="prepared dataset folder (written by `chatbot prepare`)")
    parser.add_argument("--out", required=True, help="run folder for last.pt, best.pt, log.jsonl and loss.png")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out exactly from its last.pt")
    add_device_flag(parser)
    parser.add_argument(
        "--num-threads", type=int_in(0, 1024), default=0, help="CPU threads for torch (0 = torch's default)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (the JSONL log still runs)")
    model_title = "model (ignored with --resume: the checkpoint's is used)"
    add_dataclass_flags(parser, ModelConfig, MODEL_HELP, FLAG_TYPES, model_title, CHOICES, only_given=True)
    add_dataclass_flags(parser, TrainConfig, TRAIN_HELP, FLAG_TYPES, "training", only_given=True)


# What --init-from may change about the checkpoint's network: not its shape, so its weights fit.
INIT_FROM_MAY_CHANGE = ("dropout",)


def configs_from_args(
    args: argparse.Namespace, resume_state: dict | None, init_state: dict | None = None
) -> tuple[ModelConfig, TrainConfig]:
    """Dataclass defaults (or the checkpoint's configs on --resume), overridden by the flags given.

    With --init-from the network is `init_state`'s (its dropout may be changed), the training settings
    the defaults and the flags."""
    given = vars(args)
    if init_state is not None and resume_state is None:
        model_config = ModelConfig.from_dict(init_state["model_config"])
        changed = [
            k for k in MODEL_HELP if k in given and given[k] != getattr(model_config, k) and k not in INIT_FROM_MAY_CHANGE
        ]
        if changed:
            raise ChatbotError(f"--init-from keeps the checkpoint's network; drop --{changed[0].replace('_', '-')}")
        model_config = replace(model_config, **{k: given[k] for k in INIT_FROM_MAY_CHANGE if k in given})
        train_config = TrainConfig()
    elif resume_state is None:
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


def load_init_state(path: str | Path, tokenizer: Any) -> dict[str, Any]:
    """The checkpoint --init-from names, checked to hold weights for this dataset's tokenizer."""
    state = load_checkpoint(path)
    if "model" not in state or "model_config" not in state:
        raise ChatbotError(f"{path} holds no model weights to start from")
    if state.get("tokenizer") != tokenizer.state_dict():
        raise ChatbotError(f"{path} was trained with another tokenizer than this dataset's: prepare its data alike")
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
        device = resolve_device(args.device, local_rank)
        if device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 matmuls for whatever autocast leaves in fp32
        out_dir = Path(args.out)
        if args.resume and getattr(args, "init_from", ""):
            raise ChatbotError("--init-from starts a new run; --resume continues one from its last.pt: drop one")
        if not args.resume:  # before loading anything: a refusal costs nothing
            if (out_dir / "last.pt").exists():
                raise ChatbotError(
                    f"{out_dir} already holds a run; pass --resume to continue it, or pick another --out"
                )
            # A new run starts in a new or empty folder: never among notes, the dataset or another run's files.
            check_out_dir(out_dir, None, [args.data_dir])
        dataset = load_prepared(args.data_dir)
        resume_state = load_resume_state(out_dir, dataset.tokenizer) if args.resume else None
        init_state = load_init_state(args.init_from, dataset.tokenizer) if getattr(args, "init_from", "") else None
        model_config, config = configs_from_args(args, resume_state, init_state)
        result = train(
            dataset, out_dir, model_config, config, device, resume_state, not args.no_progress, init_state
        )
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
