"""Benchmark: the notes' CIFAR-10 loop (batch 4, PIL transforms through a DataLoader) vs the fast path.

Both train the same net from the same initialisation on the same .npz data, in one run, one after
the other. Training time excludes test evaluation (done after every epoch for both). The fast path's
time includes turning the uint8 arrays into one normalised tensor.

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
    make_optimizer,
    pick_device,
    predict,
    predict_tensors,
    to_normalized_tensor,
    train_epoch,
    train_fast_epoch,
    tutorial_loaders,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "cifar10_subset_uint8.npz"


def bench_tutorial(trainset, testset, cfg: CIFAR10Config, device: torch.device) -> list[tuple[float, float]]:
    """(seconds, test accuracy) per epoch of the notes' loop."""
    trainloader, testloader = tutorial_loaders(trainset, testset, cfg)
    torch.manual_seed(cfg.seed)
    net = Net().to(device)
    optimizer = make_optimizer(net, cfg)
    rows = []
    for epoch in range(cfg.epochs):
        start = time.perf_counter()
        train_epoch(net, trainloader, optimizer, device, epoch, cfg.log_every, log=lambda s: print("  tutorial", s))
        seconds = time.perf_counter() - start
        accuracy, _ = accuracy_report(*predict(net, testloader, device))
        print(f"  tutorial epoch {epoch + 1}: {seconds:.1f} s, test accuracy {100 * accuracy:.1f} %", flush=True)
        rows.append((seconds, accuracy))
    return rows


def bench_fast(trainset, testset, cfg: FastConfig, device: torch.device) -> list[tuple[float, float]]:
    """(seconds, test accuracy) per epoch of the fast path; the first epoch's seconds include data preparation."""
    start = time.perf_counter()
    x = to_normalized_tensor(trainset.images, device)  # (N, 3, 32, 32) float, once
    y = torch.from_numpy(trainset.labels).to(device)
    prep = time.perf_counter() - start
    x_test, y_test = to_normalized_tensor(testset.images, device), torch.from_numpy(testset.labels)
    torch.manual_seed(cfg.seed)  # the same initial weights as the tutorial run
    net = Net().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum)
    g = torch.Generator().manual_seed(cfg.seed)
    rows = []
    for epoch in range(cfg.epochs):
        start = time.perf_counter()
        train_fast_epoch(net, optimizer, x, y, cfg.batch_size, g)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start + (prep if epoch == 0 else 0.0)
        accuracy, _ = accuracy_report(predict_tensors(net, x_test), y_test)
        print(f"  fast epoch {epoch + 1}: {seconds:.1f} s, test accuracy {100 * accuracy:.1f} %", flush=True)
        rows.append((seconds, accuracy))
    return rows


def time_to_reach(rows: list[tuple[float, float]], target: float) -> tuple[float, int] | None:
    """(cumulative seconds, epochs) until the accuracy first reaches target, or None."""
    total = 0.0
    for epoch, (seconds, accuracy) in enumerate(rows, 1):
        total += seconds
        if accuracy >= target:
            return total, epoch
    return None


def main(argv: list[str] | None = None) -> int:
    """Run both paths and print the side-by-side table and the time ratio."""
    t, f = CIFAR10Config(), FastConfig()
    parser = argparse.ArgumentParser(description="CIFAR-10: the notes' training loop vs the fast path, side by side.")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help=f"the .npz subset (default {DEFAULT_DATA})")
    parser.add_argument(
        "--tutorial-epochs", type=int, default=t.epochs, help=f"epochs of the notes' loop (default {t.epochs})"
    )
    parser.add_argument("--fast-epochs", type=int, default=6, help="most epochs the fast path may take (default 6)")
    parser.add_argument(
        "--fast-batch-size", type=int, default=f.batch_size, help=f"fast-path batch (default {f.batch_size})"
    )
    parser.add_argument(
        "--fast-lr", type=float, default=f.learning_rate, help=f"fast-path SGD rate (default {f.learning_rate})"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=t.seed, help=f"seed for both runs (default {t.seed})")
    args = parser.parse_args(argv)

    if not Path(args.data).is_file():
        print(f"error: {args.data} not found; pass --data path/to/cifar10_subset_uint8.npz", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    trainset, testset = load_datasets(args.data)
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

    tutorial_time, target = sum(s for s, _ in tutorial), tutorial[-1][1]
    reached = time_to_reach(fast, target)
    print()
    print("| path | batch | seconds/epoch | test accuracy by epoch | time to the tutorial's final accuracy |")
    print("|---|---|---|---|---|")
    for name, batch, rows, hit in (
        ("tutorial loop (PIL + DataLoader)", tcfg.batch_size, tutorial, (tutorial_time, len(tutorial))),
        ("fast path (tensors on the device)", fcfg.batch_size, fast, reached),
    ):
        per_epoch = sum(s for s, _ in rows) / len(rows)
        accs = ", ".join(f"{100 * a:.1f}%" for _, a in rows)
        when = f"{hit[0]:.1f} s ({hit[1]} epochs)" if hit else "not reached"
        print(f"| {name} | {batch} | {per_epoch:.1f} | {accs} | {when} |")
    if reached:
        print(
            f"\nratio (fast-path time to {100 * target:.1f}% / tutorial time): {reached[0] / tutorial_time:.3f} (target <= 0.2)"
        )
    else:
        print(f"\nthe fast path did not reach {100 * target:.1f}% in {fcfg.epochs} epochs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
