"""Lesson 5: an image classifier for CIFAR-10 (图像分类器), then what makes its training fast.

Steps (as the notes): load and normalise CIFAR-10 with torchvision; define a CNN; define a loss;
train on the training set; test on the test set. Then move to the GPU when there is one. Finally a
fast path for the same net: big batches, data kept as one tensor on the device, no per-image PIL work.

Run: `python -m foundations.cifar10 --data path/to/cifar10_subset_uint8.npz`
     `python -m foundations.cifar10 --data data/cifar10 --download`   (torchvision, about 170 MB)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from PIL import Image
from torch.utils.data import DataLoader, Dataset

CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
WHERE_TO_GET = (
    "CIFAR-10 not found at {path}: use --data DIR --download to fetch it with torchvision (about 170 MB) into DIR, "
    "or --data FILE.npz with arrays x_train (N,32,32,3) uint8, y_train, x_test, y_test"
)


@dataclass
class CIFAR10Config:
    """The notes' recipe: batch 4, SGD lr 0.001 momentum 0.9, 2 epochs, loss printed every 2000 batches."""

    batch_size: int = 4
    learning_rate: float = 0.001
    momentum: float = 0.9
    epochs: int = 2
    log_every: int = 2000
    num_workers: int = 0
    seed: int = 0


@dataclass
class FastConfig:
    """The fast path: same net and loss; batch 64 with a one-cycle rate (warm up to 0.08, then anneal)."""

    batch_size: int = 64  # 16x the notes' batch: 16x fewer Python steps per epoch
    learning_rate: float = 0.08  # the one-cycle peak; a bigger batch takes a bigger step
    momentum: float = 0.9
    warmup: float = 0.25  # fraction of the steps spent rising to the peak rate (a high rate at step 0 diverges)
    epochs: int = 2  # the schedule's length: it anneals to ~0 at the end of the last epoch
    evals_per_epoch: int = 4  # the benchmark checks test accuracy this often (2,000 images: ~0.1 s CPU)
    seed: int = 0


class Net(nn.Module):
    """The notes' CNN changed to 3-channel images: (B, 3, 32, 32) -> (B, 10); 62,006 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, 32, 32) -> scores (B, 10)."""
        x = self.pool(F.relu(self.conv1(x)))  # (B, 6, 14, 14)
        x = self.pool(F.relu(self.conv2(x)))  # (B, 16, 5, 5)
        x = x.view(-1, 16 * 5 * 5)  # (B, 400)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def tutorial_transform():
    """ToTensor ([0,1], C x H x W) then Normalize(0.5, 0.5): PIL images become tensors in [-1, 1]."""
    import torchvision.transforms as transforms  # torchvision is slow to import; only the loaders need it

    # Fix: the notes assign this to the name `transforms`, shadowing the module it was built from.
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])


class ArrayCIFAR10(Dataset):
    """CIFAR-10 held in uint8 arrays, served like torchvision's CIFAR10: (PIL image -> transform, label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None) -> None:
        self.images = images  # (N, 32, 32, 3) uint8
        self.labels = labels.astype(np.int64)  # (N,)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.images[idx])  # the same per-image PIL step torchvision's dataset does
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[idx])


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train (N,32,32,3) uint8, y_train (N,), x_test, y_test) from an .npz file."""
    with np.load(path) as z:
        return z["x_train"], z["y_train"], z["x_test"], z["y_test"]


def load_datasets(data: str | Path, download: bool = False) -> tuple[Dataset, Dataset]:
    """Train and test datasets from an .npz file, or torchvision's CIFAR-10 under a folder (download=True fetches it)."""
    path = Path(data)
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(WHERE_TO_GET.format(path=path))
        x_train, y_train, x_test, y_test = load_npz(path)
        transform = tutorial_transform()
        return ArrayCIFAR10(x_train, y_train, transform), ArrayCIFAR10(x_test, y_test, transform)
    if not download and not (path / "cifar-10-batches-py").is_dir():
        raise FileNotFoundError(WHERE_TO_GET.format(path=path))
    import torchvision

    # The notes pass download=False, which fails on a fresh machine; users need download=True once.
    train = torchvision.datasets.CIFAR10(root=str(path), train=True, download=download, transform=tutorial_transform())
    test = torchvision.datasets.CIFAR10(root=str(path), train=False, download=download, transform=tutorial_transform())
    return train, test


def pick_device() -> torch.device:
    """cuda:0 when a GPU is present, else the CPU (转移到 GPU 上)."""
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def make_optimizer(net: Net, cfg: CIFAR10Config) -> optim.SGD:
    """Momentum SGD (动量SGD), the notes' optimizer."""
    return optim.SGD(net.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum)


def train_epoch(
    net: Net,
    trainloader: DataLoader,
    optimizer: optim.Optimizer,
    device: torch.device,
    epoch: int = 0,
    log_every: int = 2000,
    log=print,
) -> float:
    """One pass of the notes' loop: per batch zero_grad, forward, CrossEntropyLoss, backward, step. Returns the mean loss."""
    criterion = nn.CrossEntropyLoss()  # classification cross entropy (分类交叉熵)
    net.train()
    running_loss, total_loss, batches = 0.0, 0.0, 0
    for i, (inputs, labels) in enumerate(trainloader):
        # inputs and targets must go to the device at every step, as the net did once
        inputs, labels = inputs.to(device), labels.to(device)  # (B, 3, 32, 32), (B,)
        optimizer.zero_grad()
        loss = criterion(net(inputs), labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        total_loss += loss.item()
        batches += 1
        if i % log_every == log_every - 1:  # print the mean loss every log_every mini-batches
            log(f"[{epoch + 1}, {i + 1:5d}] loss: {running_loss / log_every:.3f}")
            running_loss = 0.0
    return total_loss / max(batches, 1)


def train(net: Net, trainloader: DataLoader, cfg: CIFAR10Config, device: torch.device, log=print) -> list[float]:
    """cfg.epochs passes of the notes' loop with one optimizer; returns the mean loss per epoch."""
    optimizer = make_optimizer(net, cfg)
    return [train_epoch(net, trainloader, optimizer, device, epoch, cfg.log_every, log) for epoch in range(cfg.epochs)]


@torch.no_grad()
def predict(net: Net, loader: DataLoader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted (N,), labels (N,)) over a loader, on the CPU."""
    net.eval()
    preds, targets = [], []
    for images, labels in loader:
        preds.append(net(images.to(device)).argmax(1).cpu())
        targets.append(labels)
    return torch.cat(preds), torch.cat(targets)


def accuracy_report(predicted: torch.Tensor, labels: torch.Tensor) -> tuple[float, list[float]]:
    """(overall accuracy, per-class accuracy) as fractions."""
    # Fix: the notes' per-class loop indexes `for i in range(4)` over every batch, which breaks on a
    # last batch smaller than 4 and `.squeeze()` of a one-element batch; count over all predictions.
    correct = predicted == labels
    per_class = []
    for c in range(len(CLASSES)):
        mask = labels == c
        per_class.append(correct[mask].float().mean().item() if mask.any() else float("nan"))
    return correct.float().mean().item(), per_class


# --- the fast path ------------------------------------------------------------------------------------


def to_normalized_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) -> float (N, 3, 32, 32) in [-1, 1] on the device: ToTensor + Normalize, all at once."""
    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().contiguous()  # (N, 3, 32, 32)
    return (x / 255.0 - 0.5) / 0.5


def make_fast_optimizer(
    net: Net, cfg: FastConfig, steps_per_epoch: int
) -> tuple[optim.SGD, optim.lr_scheduler.OneCycleLR]:
    """Nesterov momentum SGD with a one-cycle schedule over cfg.epochs: short warmup, then cosine down to ~0."""
    optimizer = optim.SGD(net.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum, nesterov=True)
    # OneCycleLR divides by (warmup * total - 1): a tiny run (a test's 4 batches) needs a few more steps
    # in its schedule than it takes; it then simply stops before the rate has fully annealed.
    total = max(steps_per_epoch * cfg.epochs, math.ceil(2 / cfg.warmup) + 1)
    scheduler = optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.learning_rate, total_steps=total, pct_start=cfg.warmup
    )
    return optimizer, scheduler


def train_fast_steps(
    net: Net,
    optimizer: optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
    scheduler: optim.lr_scheduler.LRScheduler | None = None,
) -> float:
    """Train on x[order] (order (M,) indices on the device) in batches by index slicing; returns the mean loss."""
    net.train()
    criterion = nn.CrossEntropyLoss()
    total = torch.zeros((), device=x.device)  # summed on the device: no .item() sync per step
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(net(x[idx]), y[idx])  # x[idx] (b, 3, 32, 32)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()  # one-cycle steps per batch, not per epoch
        total += loss.detach() * len(idx)
    return total.item() / max(len(order), 1)


def train_fast_epoch(
    net: Net,
    optimizer: optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    scheduler: optim.lr_scheduler.LRScheduler | None = None,
) -> float:
    """One epoch over tensors already on the device, shuffled by index slicing; returns the mean loss."""
    order = torch.randperm(len(y), generator=generator).to(x.device)
    return train_fast_steps(net, optimizer, x, y, order, batch_size, scheduler)


@torch.inference_mode()  # cheaper than no_grad: no version counters, so the benchmark can test often
def predict_tensors(net: Net, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted classes (N,) for a float tensor (N, 3, 32, 32), on the CPU."""
    net.eval()
    return torch.cat([net(x[i : i + batch_size]).argmax(1).cpu() for i in range(0, len(x), batch_size)])


def save_prediction_grid(
    images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor, path: str | Path, ncols: int = 8
) -> Path:
    """Save normalised images (B, 3, 32, 32) with 'label / prediction' titles as a PNG (headless)."""
    import matplotlib

    matplotlib.use("Agg")  # never open a window; the notes' plt.show() blocks a script
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(images)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.9 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, lab, pred in zip(axes.flat, images, labels, predicted, strict=False):
        ax.imshow((img / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).cpu().numpy())  # unnormalize (反归一化)
        ax.set_title(f"{CLASSES[lab]} / {CLASSES[pred]}", fontsize=8, color="green" if lab == pred else "red")
    fig.suptitle("label / prediction")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")  # write then rename: no half-written PNG on failure
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def tutorial_loaders(trainset: Dataset, testset: Dataset, cfg: CIFAR10Config) -> tuple[DataLoader, DataLoader]:
    """The notes' loaders: batch 4, training set shuffled (seeded), test set in order."""
    g = torch.Generator().manual_seed(cfg.seed)
    trainloader = DataLoader(
        trainset, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, generator=g
    )
    testloader = DataLoader(testset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers)
    return trainloader, testloader


def run_tutorial(
    trainset: Dataset, testset: Dataset, cfg: CIFAR10Config, device: torch.device, grid_path: str | Path | None = None
) -> tuple[Net, float, list[float]]:
    """The whole recipe: loaders, train, test; returns (net, accuracy, per-class accuracy)."""
    trainloader, testloader = tutorial_loaders(trainset, testset, cfg)
    torch.manual_seed(cfg.seed)
    net = Net().to(device)
    train(net, trainloader, cfg, device)
    predicted, labels = predict(net, testloader, device)
    accuracy, per_class = accuracy_report(predicted, labels)
    if grid_path is not None:
        images = torch.stack([testset[i][0] for i in range(16)])  # (16, 3, 32, 32)
        save_prediction_grid(images, labels[:16], predicted[:16], grid_path)
    return net, accuracy, per_class


def main(argv: list[str] | None = None) -> int:
    """Train the notes' CIFAR-10 classifier (or the fast path) and print its test accuracy."""
    d, fd = CIFAR10Config(), FastConfig()
    parser = argparse.ArgumentParser(
        description="Lesson 5: a CIFAR-10 image classifier, the notes' recipe and a fast path."
    )
    parser.add_argument(
        "--data", default="data/cifar10", help="an .npz file, or torchvision's CIFAR-10 folder (default data/cifar10)"
    )
    parser.add_argument(
        "--download", action="store_true", help="download CIFAR-10 with torchvision into --data if missing"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help=f"epochs (default {d.epochs}; {fd.epochs} with --fast)"
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help=f"the fast path: batch {fd.batch_size}, one-cycle lr peak {fd.learning_rate}, tensors on the device, no PIL",
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training images (default all)")
    parser.add_argument("--grid", default="runs/cifar10_predictions.png", help="PNG of test images with predictions")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: this small net loses more to thread hand-offs than it gains)",
    )
    args = parser.parse_args(argv)
    # Measured here on 2 shared cores: --fast trained in 18-52 s with torch's default 2 threads, 8 s with 1.
    torch.set_num_threads(args.threads)

    try:
        trainset, testset = load_datasets(args.data, args.download)
    except (FileNotFoundError, OSError, KeyError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.limit is not None:
        trainset = torch.utils.data.Subset(trainset, range(min(args.limit, len(trainset))))
    device = pick_device()
    print(f"device: {device}; {len(trainset)} training and {len(testset)} test images")

    start = time.perf_counter()
    if args.fast:
        if not isinstance(testset, ArrayCIFAR10):
            print("error: --fast needs --data FILE.npz (arrays it can keep on the device)", file=sys.stderr)
            return 1
        base = trainset.dataset if isinstance(trainset, torch.utils.data.Subset) else trainset
        n = len(trainset)
        x, y = to_normalized_tensor(base.images[:n], device), torch.from_numpy(base.labels[:n]).to(device)
        torch.manual_seed(args.seed)
        net = Net().to(device)
        fcfg = FastConfig(epochs=args.epochs or fd.epochs, seed=args.seed)
        opt, scheduler = make_fast_optimizer(net, fcfg, steps_per_epoch=-(-n // fcfg.batch_size))
        g = torch.Generator().manual_seed(args.seed)
        for epoch in range(fcfg.epochs):
            loss = train_fast_epoch(net, opt, x, y, fcfg.batch_size, g, scheduler)
            print(f"epoch {epoch + 1} loss {loss:.3f}")
        x_test = to_normalized_tensor(testset.images, device)
        predicted, labels = predict_tensors(net, x_test), torch.from_numpy(testset.labels)
        accuracy, per_class = accuracy_report(predicted, labels)
        save_prediction_grid(x_test[:16].cpu(), labels[:16], predicted[:16], args.grid)
    else:
        cfg = CIFAR10Config(epochs=args.epochs or d.epochs, seed=args.seed)
        net, accuracy, per_class = run_tutorial(trainset, testset, cfg, device, grid_path=args.grid)
    print(f"Finished Training in {time.perf_counter() - start:.1f} s")
    print(f"Accuracy of the network on the {len(testset)} test images: {100 * accuracy:.1f} %")
    for name, acc in zip(CLASSES, per_class, strict=True):
        print(f"Accuracy of {name:>5s} : {100 * acc:5.1f} %")
    print(f"sample predictions saved to {args.grid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
