"""Lesson 1: tensors (张量) — like NumPy's ndarrays, but they can compute on a GPU.

Run: `python -m foundations.tensors`
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def construct() -> dict[str, torch.Tensor]:
    """The notes' constructors: empty, rand, zeros(long), tensor."""
    return {
        "empty": torch.empty(3, 3),  # 3x3, uninitialised (未初始化): whatever was in memory
        "rand": torch.rand(3, 3),  # 3x3, uniform random in [0, 1) (随机初始化)
        "zeros_long": torch.zeros(3, 3, dtype=torch.long),  # 3x3 of zeros, dtype long (全为0, long)
        "tensor": torch.tensor([1, 2, 3]),  # built straight from data (含有数据的张量)
    }


def add_three_ways(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x + y, torch.add(x, y, out=result), and in-place y.add_(x) (on a copy of y)."""
    by_operator = x + y
    # Fix: the notes allocate `result = torch.empty(5, 3)` for 3x3 inputs; `out=` then has to resize it
    # (a warning today, an error in some versions). Allocate the output with the inputs' shape.
    result = torch.empty_like(x)
    torch.add(x, y, out=result)  # 指定输出: write into a tensor you own
    in_place = y.clone()
    in_place.add_(x)  # methods ending in `_` mutate their tensor in place
    return by_operator, result, in_place


def reshape_with_view(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (4, 4) -> view(16) and view(-1, 8): -1 means 'infer this size' (自适应)."""
    flat = x.view(16)  # (16,)
    two_rows = x.view(-1, 8)  # (2, 8): 16 / 8 = 2 rows inferred
    return flat, two_rows


def one_element_item(x: torch.Tensor) -> float:
    """`.item()` turns a one-element tensor into a Python number."""
    # Fix: the notes call `z.item()` on the 16-element z = x.view(-1, 8), which raises
    # "a Tensor with 16 elements cannot be converted to Scalar". Reduce to one element first.
    return x.sum().item()


def numpy_bridge() -> tuple[torch.Tensor, np.ndarray, np.ndarray, torch.Tensor]:
    """tensor.numpy() and torch.from_numpy(array) share memory: changing one changes the other."""
    a = torch.ones(5)
    b = a.numpy()  # a view of the same memory, no copy
    a.add_(1)  # b now shows 2s too
    c = np.ones(5)
    d = torch.from_numpy(c)  # again shared memory
    np.add(c, 1, out=c)  # d now shows 2s too
    return a, b, c, d


def pick_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a tensor with .to(device); `.to` can change dtype in the same call."""
    return x.to(device, torch.double)


def main(argv: list[str] | None = None) -> int:
    """Print each step of the tensors lesson."""
    parser = argparse.ArgumentParser(description="Lesson 1: tensors, operations, the numpy bridge, devices.")
    parser.add_argument("--seed", type=int, default=0, help="random seed for torch.rand/randn (default 0)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    made = construct()
    for name, t in made.items():
        print(f"{name}: dtype={t.dtype} size={tuple(t.size())}")
    print("torch.Size is a tuple:", isinstance(made["rand"].size(), tuple))

    x, y = torch.rand(3, 3), torch.rand(3, 3)
    a, b, c = add_three_ways(x, y)
    print("x + y == torch.add(out=) == y.add_(x):", torch.equal(a, b) and torch.equal(b, c))

    x = torch.randn(4, 4)
    flat, two_rows = reshape_with_view(x)
    print("view sizes:", tuple(x.size()), tuple(flat.size()), tuple(two_rows.size()))
    print("one-element .item():", round(one_element_item(two_rows), 4))

    a, b, c, d = numpy_bridge()
    print("numpy bridge shares memory:", b.tolist(), d.tolist())

    device = pick_device()
    print("device:", device, "->", to_device(torch.ones(2), device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
