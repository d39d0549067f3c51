"""Lesson 7: data parallelism (数据并行处理) — the lesson the notes left empty.

Two tools split a batch across workers:
- `nn.DataParallel(model)`: one process, several GPUs on one machine. Each forward scatters the batch
  along dim 0 to the GPUs, runs a replica of the model on each, and gathers the outputs on the first
  GPU. Easy (one line), but one Python process drives every GPU, so it is slowed by the GIL and by
  re-copying the model every step; PyTorch recommends DDP instead, even on one machine.
- `DistributedDataParallel` (DDP): one process per device (GPU or CPU), each with its own replica and
  its own slice of the data. backward() all-reduces (averages) the gradients across processes, so every
  replica takes the same optimizer step and the parameters stay identical. Launch it with `torchrun
  --nproc_per_node=N script.py` on each machine (add --nnodes/--rdzv-endpoint to scale past one machine);
  use the `nccl` backend for GPUs and `gloo` for CPUs.

This lesson runs DDP for real on the CPU with gloo and 2 processes, and checks that it ends with the
same parameters as one process training on the combined batch.

Run: `python -m foundations.data_parallel`
     `torchrun --nproc_per_node=2 -m foundations.data_parallel`   (the same DDP run, launched by torchrun)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP


@dataclass
class DDPConfig:
    """A toy regression: batch 20 (10 per process), 10 -> 10 -> 5, SGD, a few steps."""

    batch_size: int = 20
    steps: int = 10
    learning_rate: float = 0.1
    world_size: int = 2
    seed: int = 0


class ToyModel(nn.Module):
    """The DDP tutorial's toy model: (B, 10) -> (B, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.net1 = nn.Linear(10, 10)
        self.relu = nn.ReLU()
        self.net2 = nn.Linear(10, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 10) -> (B, 5)."""
        return self.net2(self.relu(self.net1(x)))


class SizeReportingModel(nn.Module):
    """The DataParallel tutorial's model: prints the batch size each replica sees."""

    def __init__(self, input_size: int = 5, output_size: int = 2) -> None:
        super().__init__()
        self.fc = nn.Linear(input_size, output_size)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """input (B_replica, input_size) -> (B_replica, output_size)."""
        output = self.fc(input)
        print(f"\tIn Model: input size {tuple(input.size())} output size {tuple(output.size())}")
        return output


def wrap_data_parallel(model: nn.Module) -> nn.Module:
    """nn.DataParallel when there are several GPUs, else the model itself (one device needs no split)."""
    if torch.cuda.device_count() > 1:
        return nn.DataParallel(model)  # splits each batch across all visible GPUs along dim 0
    return model


def make_data(cfg: DDPConfig) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(x (B, 10), y (B, 5), initial state_dict): the combined batch and one shared initialisation."""
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.batch_size, 10, generator=g)
    y = torch.randn(cfg.batch_size, 5, generator=g)
    torch.manual_seed(cfg.seed)
    return x, y, ToyModel().state_dict()


def train_single(cfg: DDPConfig) -> dict[str, torch.Tensor]:
    """One process, the whole batch, MSELoss (mean): the reference DDP must reproduce."""
    x, y, state = make_data(cfg)
    model = ToyModel()
    model.load_state_dict(state)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate)
    for _ in range(cfg.steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    return model.state_dict()


def train_ddp_rank(rank: int, cfg: DDPConfig) -> dict[str, torch.Tensor]:
    """Train this rank's slice of the batch inside an initialised process group; returns its final state."""
    x, y, state = make_data(cfg)  # every rank builds the same data and start; each keeps only its slice
    shard = cfg.batch_size // cfg.world_size
    x, y = x[rank * shard : (rank + 1) * shard], y[rank * shard : (rank + 1) * shard]  # (B/W, 10), (B/W, 5)
    model = ToyModel()
    model.load_state_dict(state)
    ddp_model = DDP(model)  # broadcasts rank 0's parameters, then averages gradients in backward()
    optimizer = torch.optim.SGD(ddp_model.parameters(), lr=cfg.learning_rate)
    for _ in range(cfg.steps):
        optimizer.zero_grad()
        # The mean over equal shards, averaged across ranks by DDP, is the mean over the combined batch.
        nn.functional.mse_loss(ddp_model(x), y).backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _spawned_worker(rank: int, cfg: DDPConfig, init_file: str, out_dir: str) -> None:
    """Entry point of each spawned process: join the gloo group, train, save the final parameters."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=cfg.world_size)
    try:
        torch.set_num_threads(1)  # the processes share the machine's cores
        state = train_ddp_rank(rank, cfg)
        torch.save(state, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_ddp(cfg: DDPConfig) -> list[dict[str, torch.Tensor]]:
    """Spawn cfg.world_size CPU processes with gloo; returns each rank's final state_dict."""
    with tempfile.TemporaryDirectory() as tmp:
        # A file rendezvous needs no free port, so parallel runs (and tests) never collide.
        init_file = os.path.join(tmp, "rendezvous")
        mp.spawn(_spawned_worker, args=(cfg, init_file, tmp), nprocs=cfg.world_size, join=True)
        return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(cfg.world_size)]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference between two state_dicts with the same keys."""
    return max((a[k] - b[k]).abs().max().item() for k in a)


def demo_data_parallel(batch_size: int = 30, data_size: int = 100) -> None:
    """The DataParallel tutorial's loop: with N GPUs each replica sees about batch_size / N rows."""
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    model = wrap_data_parallel(SizeReportingModel()).to(device)
    data = torch.randn(data_size, 5)
    for start in range(0, data_size, batch_size):
        input = data[start : start + batch_size].to(device)
        output = model(input)
        print(f"Outside: input size {tuple(input.size())} output_size {tuple(output.size())}")


def main(argv: list[str] | None = None) -> int:
    """DataParallel on this machine's GPUs (if any), then 2-process DDP on the CPU checked against one process."""
    d = DDPConfig()
    parser = argparse.ArgumentParser(
        description="Lesson 7: DataParallel, and DistributedDataParallel with gloo on CPU."
    )
    parser.add_argument(
        "--world-size", type=int, default=d.world_size, help=f"DDP processes to spawn (default {d.world_size})"
    )
    parser.add_argument("--steps", type=int, default=d.steps, help=f"SGD steps (default {d.steps})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed for data and weights (default {d.seed})")
    args = parser.parse_args(argv)
    cfg = DDPConfig(steps=args.steps, seed=args.seed, world_size=args.world_size)

    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # launched by torchrun: it set up the rendezvous
        dist.init_process_group("gloo")
        cfg = DDPConfig(steps=args.steps, seed=args.seed, world_size=dist.get_world_size())
        state = train_ddp_rank(dist.get_rank(), cfg)
        if dist.get_rank() == 0:
            print(
                f"torchrun DDP vs one process: max parameter difference {max_difference(state, train_single(cfg)):.2e}"
            )
        dist.destroy_process_group()
        return 0

    print(f"GPUs visible: {torch.cuda.device_count()} (DataParallel splits batches only with 2 or more)")
    demo_data_parallel()
    if cfg.batch_size % cfg.world_size:
        parser.error(f"--world-size must divide the batch of {cfg.batch_size}")
    print(f"DDP: {cfg.world_size} CPU processes, gloo, {cfg.batch_size // cfg.world_size} rows each, {cfg.steps} steps")
    states = run_ddp(cfg)
    single = train_single(cfg)
    for rank, state in enumerate(states):
        print(
            f"rank {rank} vs one process on the combined batch: max parameter difference {max_difference(state, single):.2e}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
