"""Benchmark: the notes' CIFAR-10 loop (batch 4, PIL transforms through a DataLoader) vs the fast path.

Both train the same net from the same initialisation on the same .npz data, in one run, one after
the other. Wall and CPU (process) seconds are both reported: on a shared machine the wall clock
also measures the neighbours. Training time excludes test evaluation (after every epoch for the tutorial loop, after every quarter epoch for
the fast path). The fast path's time includes turning the uint8 arrays into one normalised tensor.

Run: `python scripts/bench_cifar10.py --data ../shared/data/cifar10/cifar10_subset_uint8.npz`
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from foundations.cifar10 import (  # noqa: E402
    CIFAR10Config,
    FastConfig,
    Net,
    accuracy_report,
    load_datasets,
    make_fast_optimizer,
    make_optimizer,
    pick_device,
    predict,
    predict_tensors,
    to_normalized_tensor,
    train_epoch,
    train_fast_steps,
    tutorial_loaders,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "cifar10_subset_uint8.npz"


def bench_tutorial(trainset, testset, cfg: CIFAR10Config, device: torch.device) -> list[tuple[float, float, float]]:
    """(wall seconds, CPU seconds, test accuracy) per epoch of the notes' loop."""
    trainloader, testloader = tutorial_loaders(trainset, testset, cfg)
    torch.manual_seed(cfg.seed)
    net = Net().to(device)
    optimizer = make_optimizer(net, cfg)
    rows = []
    for epoch in range(cfg.epochs):
        start, cpu = time.perf_counter(), time.process_time()
        train_epoch(net, trainloader, optimizer, device, epoch, cfg.log_every, log=lambda s: print("  tutorial", s))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        accuracy, _ = accuracy_report(*predict(net, testloader, device))
        print(
            f"  tutorial epoch {epoch + 1}: {seconds:.1f} s ({cpu:.1f} s CPU), test accuracy {100 * accuracy:.1f} %",
            flush=True,
        )
        rows.append((seconds, cpu, accuracy))
    return rows


def bench_fast(trainset, testset, cfg: FastConfig, device: torch.device) -> list[tuple[float, float, float]]:
    """(wall seconds, CPU seconds, test accuracy) per 1/cfg.evals_per_epoch epoch of the fast path.

    The first part includes data preparation; test evaluation between parts is not counted.
    """
    start, cpu = time.perf_counter(), time.process_time()
    x = to_normalized_tensor(trainset.images, device)  # (N, 3, 32, 32) float, once
    y = torch.from_numpy(trainset.labels).to(device)
    prep, prep_cpu = time.perf_counter() - start, time.process_time() - cpu
    x_test, y_test = to_normalized_tensor(testset.images, device), torch.from_numpy(testset.labels)
    torch.manual_seed(cfg.seed)  # the same initial weights as the tutorial run
    net = Net().to(device)
    steps = -(-len(y) // cfg.batch_size)  # batches per epoch
    optimizer, scheduler = make_fast_optimizer(net, cfg, steps)
    g = torch.Generator().manual_seed(cfg.seed)
    bounds = [round(steps * k / cfg.evals_per_epoch) * cfg.batch_size for k in range(cfg.evals_per_epoch + 1)]
    rows = []
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(y), generator=g).to(device)  # the same shuffle train_fast_epoch does
        for part in range(cfg.evals_per_epoch):
            start, cpu = time.perf_counter(), time.process_time()
            train_fast_steps(net, optimizer, x, y, order[bounds[part] : bounds[part + 1]], cfg.batch_size, scheduler)
            if device.type == "cuda":
                torch.cuda.synchronize()
            first = epoch == 0 and part == 0
            seconds = time.perf_counter() - start + (prep if first else 0.0)
            cpu = time.process_time() - cpu + (prep_cpu if first else 0.0)
            accuracy, _ = accuracy_report(predict_tensors(net, x_test), y_test)
            print(
                f"  fast epoch {epoch + (part + 1) / cfg.evals_per_epoch:.2f}: {seconds:.1f} s ({cpu:.1f} s CPU), "
                f"test accuracy {100 * accuracy:.1f} %",
                flush=True,
            )
            rows.append((seconds, cpu, accuracy))
    return rows


def time_to_reach(rows: list[tuple[float, float, float]], target: float) -> tuple[float, float, int] | None:
    """(cumulative wall seconds, CPU seconds, rows used) until the accuracy first reaches target, or None."""
    wall = cpu = 0.0
    for used, (seconds, cpu_seconds, accuracy) in enumerate(rows, 1):
        wall, cpu = wall + seconds, cpu + cpu_seconds
        if accuracy >= target:
            return wall, cpu, used
    return None


def main(argv: list[str] | None = None) -> int:
    """Run both paths and print the side-by-side table and the time ratio."""
    t, f = CIFAR10Config(), FastConfig()
    parser = argparse.ArgumentParser(description="CIFAR-10: the notes' training loop vs the fast path, side by side.")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help=f"the .npz subset (default {DEFAULT_DATA})")
    parser.add_argument(
        "--tutorial-epochs", type=int, default=t.epochs, help=f"epochs of the notes' loop (default {t.epochs})"
    )
    parser.add_argument(
        "--fast-epochs",
        type=int,
        default=f.epochs,
        help=f"fast-path epochs = its schedule's length (default {f.epochs})",
    )
    parser.add_argument(
        "--fast-batch-size", type=int, default=f.batch_size, help=f"fast-path batch (default {f.batch_size})"
    )
    parser.add_argument(
        "--fast-lr",
        type=float,
        default=f.learning_rate,
        help=f"fast-path one-cycle peak rate (default {f.learning_rate})",
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training images (default all)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=t.seed, help=f"seed for both runs (default {t.seed})")
    args = parser.parse_args(argv)

    if not Path(args.data).is_file():
        print(f"error: {args.data} not found; pass --data path/to/cifar10_subset_uint8.npz", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    trainset, testset = load_datasets(args.data)
    if args.limit is not None:
        trainset.images, trainset.labels = trainset.images[: args.limit], trainset.labels[: args.limit]
    device = pick_device()
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, {len(trainset)} train / {len(testset)} test images"
    )

    tcfg = CIFAR10Config(epochs=args.tutorial_epochs, seed=args.seed)
    fcfg = FastConfig(
        batch_size=args.fast_batch_size, learning_rate=args.fast_lr, epochs=args.fast_epochs, seed=args.seed
    )
    tutorial = bench_tutorial(trainset, testset, tcfg, device)
    fast = bench_fast(trainset, testset, fcfg, device)

    tutorial_time, tutorial_cpu, target = sum(r[0] for r in tutorial), sum(r[1] for r in tutorial), tutorial[-1][2]
    reached = time_to_reach(fast, target)
    print()
    print(
        "| path | batch | s/epoch (wall) | s/epoch (CPU) | test accuracy by epoch | time to the tutorial's final accuracy |"
    )
    print("|---|---|---|---|---|---|")
    for name, batch, rows, per_epoch, hit in (
        (
            "tutorial loop (PIL + DataLoader)",
            tcfg.batch_size,
            tutorial,
            1,
            (tutorial_time, tutorial_cpu, len(tutorial)),
        ),
        ("fast path (tensors on the device)", fcfg.batch_size, fast, fcfg.evals_per_epoch, reached),
    ):
        epochs = len(rows) / per_epoch
        wall, cpu = sum(r[0] for r in rows) / epochs, sum(r[1] for r in rows) / epochs
        accs = ", ".join(f"{(i + 1) / per_epoch:g}: {100 * r[2]:.1f}%" for i, r in enumerate(rows))
        when = f"{hit[0]:.1f} s wall, {hit[1]:.1f} s CPU ({hit[2] / per_epoch:g} epochs)" if hit else "not reached"
        print(f"| {name} | {batch} | {wall:.1f} | {cpu:.1f} | {accs} | {when} |")
    if reached:
        print(
            f"\nratio (fast-path time to {100 * target:.1f}% / tutorial's 2-epoch time): "
            f"wall {reached[0] / tutorial_time:.3f}, CPU {reached[1] / tutorial_cpu:.3f} (target <= 0.2)"
        )
    else:
        print(f"\nthe fast path did not reach {100 * target:.1f}% in {fcfg.epochs} epochs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
