"""Lesson 2: autograd (自动微分) — the core of every PyTorch network: derivatives of tensor operations.

Run: `python -m foundations.autograd`
"""

from __future__ import annotations

import argparse

import torch


def notes_example() -> tuple[torch.Tensor, torch.Tensor]:
    """x = ones(2,2); out = mean(3 (x+2)^2); backward. Returns (out, x.grad); x.grad is 4.5 everywhere."""
    x = torch.ones(2, 2, requires_grad=True)
    y = x + 2  # y.grad_fn is AddBackward: y was made by an operation
    z = y * y * 3
    out = z.mean()
    # d(out)/dx_i = (1/4) * 6 (x_i + 2) = 1.5 * 3 = 4.5 at x_i = 1
    out.backward()
    return out.detach(), x.grad


def vector_jacobian_product(x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y = 2x (elementwise, a non-scalar output); y.backward(v) gives v^T J = 2v in x.grad."""
    x = x.detach().requires_grad_(True)
    y = x * 2  # J = 2 I
    # A non-scalar y has no single gradient; backward(v) computes the vector-Jacobian product v^T J.
    y.backward(v)
    return y.detach(), x.grad


def no_grad_and_detach(x: torch.Tensor) -> tuple[bool, bool, bool]:
    """(requires_grad of x**2, of x**2 under no_grad, of x.detach())."""
    x = x.detach().requires_grad_(True)
    tracked = (x**2).requires_grad
    with torch.no_grad():  # evaluation: no graph is built, no memory kept for backward
        untracked = (x**2).requires_grad
    detached = x.detach().requires_grad  # same data, cut from the graph
    return tracked, untracked, detached


def main(argv: list[str] | None = None) -> int:
    """Print each step of the autograd lesson."""
    parser = argparse.ArgumentParser(description="Lesson 2: autograd, vector-Jacobian products, no_grad, detach.")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the vector-Jacobian example (default 0)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    out, grad = notes_example()
    print(f"out = mean(3 (x+2)^2) = {out.item():.1f}; x.grad (expect 4.5 everywhere):\n{grad}")

    x, v = torch.randn(3), torch.tensor([0.1, 1.0, 0.0001])
    y, g = vector_jacobian_product(x, v)
    print("y = 2x; y.backward(v) -> x.grad = 2v:", g.tolist())

    tracked, untracked, detached = no_grad_and_detach(torch.ones(2))
    print(f"requires_grad: x**2 {tracked}, under no_grad {untracked}, x.detach() {detached}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
