"""Lesson 4: the two-layer ReLU network ladder (小试牛刀) — one problem, solved at every level of PyTorch.

A net with one hidden layer fits random data by gradient descent on the squared Euclidean distance
between its output and the target. The notes stop after the numpy rung (numpy knows nothing of graphs,
deep learning or gradients, so backprop is written by hand); this lesson finishes the ladder:
numpy -> torch tensors by hand -> autograd -> a custom autograd.Function -> nn.Sequential + MSELoss ->
optim (Adam) -> a custom nn.Module -> a dynamic graph (weight sharing, random depth per forward).

Run: `python -m foundations.two_layer_net`
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn


@dataclass
class LadderConfig:
    """The notes' sizes: N batch, D_in input, H hidden, D_out output; 500 steps."""

    N: int = 64
    D_in: int = 1000
    H: int = 100
    D_out: int = 10
    steps: int = 500
    seed: int = 0


@dataclass
class Problem:
    """Random data and one shared initialisation, all float64: x (N, D_in), y (N, D_out), w1 (D_in, H), w2 (H, D_out)."""

    x: np.ndarray
    y: np.ndarray
    w1: np.ndarray
    w2: np.ndarray


def make_problem(cfg: LadderConfig) -> Problem:
    """Random inputs, targets and weights from a seeded numpy generator (创建随机输入输出, 随机初始化权重)."""
    rng = np.random.default_rng(cfg.seed)
    return Problem(
        x=rng.standard_normal((cfg.N, cfg.D_in)),
        y=rng.standard_normal((cfg.N, cfg.D_out)),
        w1=rng.standard_normal((cfg.D_in, cfg.H)),
        w2=rng.standard_normal((cfg.H, cfg.D_out)),
    )


def _tensors(p: Problem) -> tuple[torch.Tensor, ...]:
    """The problem as float64 torch tensors (copies, so training never mutates the Problem)."""
    return tuple(torch.tensor(a, dtype=torch.float64) for a in (p.x, p.y, p.w1, p.w2))


# --- rung 1: numpy, backprop by hand (the notes' code) ---------------------------------------------


def numpy_gradients(
    x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Forward and hand-written backward in numpy: (loss, grad_w1 (D_in, H), grad_w2 (H, D_out))."""
    h = x.dot(w1)  # (N, H)
    h_relu = np.maximum(h, 0)
    y_pred = h_relu.dot(w2)  # (N, D_out)
    loss = np.square(y_pred - y).sum()
    # backprop: gradients of the loss with respect to w1 and w2 (反向传播)
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.T.dot(grad_y_pred)
    grad_h = grad_y_pred.dot(w2.T)  # copy-free: the product is already a new array
    grad_h[h < 0] = 0
    grad_w1 = x.T.dot(grad_h)
    return float(loss), grad_w1, grad_w2


def train_numpy(p: Problem, steps: int, learning_rate: float = 1e-6) -> list[float]:
    """The notes' numpy loop; returns the loss at every step."""
    w1, w2 = p.w1.copy(), p.w2.copy()
    losses = []
    for _ in range(steps):
        loss, grad_w1, grad_w2 = numpy_gradients(p.x, p.y, w1, w2)
        losses.append(loss)
        w1 -= learning_rate * grad_w1
        w2 -= learning_rate * grad_w2
    return losses


# --- rung 2: torch tensors, backprop still by hand (runs on a GPU too) --------------------------------


def tensor_gradients(
    x: torch.Tensor, y: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The numpy code, word for word, on torch tensors: (loss, grad_w1, grad_w2)."""
    h = x.mm(w1)
    h_relu = h.clamp(min=0)
    y_pred = h_relu.mm(w2)
    loss = (y_pred - y).pow(2).sum().item()
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.t().mm(grad_y_pred)
    grad_h = grad_y_pred.mm(w2.t())
    grad_h[h < 0] = 0
    grad_w1 = x.t().mm(grad_h)
    return loss, grad_w1, grad_w2


def train_tensors(p: Problem, steps: int, learning_rate: float = 1e-6) -> list[float]:
    """Rung 2's loop."""
    x, y, w1, w2 = _tensors(p)
    losses = []
    for _ in range(steps):
        loss, grad_w1, grad_w2 = tensor_gradients(x, y, w1, w2)
        losses.append(loss)
        w1 -= learning_rate * grad_w1
        w2 -= learning_rate * grad_w2
    return losses


# --- rungs 3 and 4: autograd, with the built-in ReLU or a custom autograd.Function -------------------


class MyReLU(torch.autograd.Function):
    """ReLU written as an autograd.Function: forward computes, backward receives dL/dout."""

    @staticmethod
    def forward(ctx, input: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(input)  # cache what backward needs
        return input.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (input,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input < 0] = 0
        return grad_input


def autograd_gradients(
    x: torch.Tensor, y: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, relu: Callable = torch.relu
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Forward only; loss.backward() fills the gradients: (loss, grad_w1, grad_w2)."""
    w1 = w1.detach().requires_grad_(True)
    w2 = w2.detach().requires_grad_(True)
    loss = (relu(x.mm(w1)).mm(w2) - y).pow(2).sum()
    loss.backward()
    return loss.item(), w1.grad, w2.grad


def train_autograd(p: Problem, steps: int, learning_rate: float = 1e-6, relu: Callable = torch.relu) -> list[float]:
    """Rung 3 (relu=torch.relu) and rung 4 (relu=MyReLU.apply)."""
    x, y, w1, w2 = _tensors(p)
    w1.requires_grad_(True)
    w2.requires_grad_(True)
    losses = []
    for _ in range(steps):
        loss = (relu(x.mm(w1)).mm(w2) - y).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():  # the update itself must not be recorded in the graph
            w1 -= learning_rate * w1.grad
            w2 -= learning_rate * w2.grad
            w1.grad.zero_()  # gradients accumulate; zero them after each update
            w2.grad.zero_()
    return losses


# --- rungs 5-8: nn, optim, custom Module, dynamic graph -------------------------------------------------


def sequential_model(cfg: LadderConfig) -> nn.Sequential:
    """Linear -> ReLU -> Linear, float64."""
    return nn.Sequential(nn.Linear(cfg.D_in, cfg.H), nn.ReLU(), nn.Linear(cfg.H, cfg.D_out)).double()


class TwoLayerNet(nn.Module):
    """The same net as a custom nn.Module: forward(x (N, D_in)) -> (N, D_out)."""

    def __init__(self, D_in: int, H: int, D_out: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(D_in, H)
        self.linear2 = nn.Linear(H, D_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, D_in) -> y_pred (N, D_out)."""
        return self.linear2(self.linear1(x).clamp(min=0))


class DynamicNet(nn.Module):
    """A dynamic graph: each forward reuses the middle layer 0-3 times (weight sharing, random depth)."""

    def __init__(self, D_in: int, H: int, D_out: int, rng: random.Random | None = None) -> None:
        super().__init__()
        self.input_linear = nn.Linear(D_in, H)
        self.middle_linear = nn.Linear(H, H)
        self.output_linear = nn.Linear(H, D_out)
        self.rng = rng or random.Random()  # seeded in tests so the random depths repeat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, D_in) -> y_pred (N, D_out); plain Python control flow builds a new graph every call."""
        h_relu = self.input_linear(x).clamp(min=0)
        for _ in range(self.rng.randint(0, 3)):
            h_relu = self.middle_linear(h_relu).clamp(min=0)
        return self.output_linear(h_relu)


def train_module(
    model: nn.Module, p: Problem, steps: int, make_optimizer: Callable | None = None, learning_rate: float = 1e-4
) -> list[float]:
    """Train any module with MSELoss(reduction='sum'); without an optimizer, update parameters by hand."""
    x, y = _tensors(p)[:2]
    loss_fn = nn.MSELoss(reduction="sum")  # sum, as the numpy rung, so the losses are comparable
    optimizer = make_optimizer(model.parameters()) if make_optimizer else None
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(x), y)
        losses.append(loss.item())
        if optimizer is None:
            model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for param in model.parameters():
                    param -= learning_rate * param.grad
        else:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return losses


def load_shared_init(linears: tuple[nn.Linear, nn.Linear], p: Problem) -> None:
    """Put the shared w1, w2 into two Linear layers (weight = w.T) with zero biases, for parity checks."""
    with torch.no_grad():
        for layer, w in zip(linears, (p.w1, p.w2), strict=True):
            layer.weight.copy_(torch.from_numpy(w.T))
            layer.bias.zero_()


def run_ladder(cfg: LadderConfig) -> dict[str, list[float]]:
    """Every rung on the same data; returns each rung's losses. Rungs 1-4 share the numpy initialisation."""
    p = make_problem(cfg)
    torch.manual_seed(cfg.seed)
    sizes = (cfg.D_in, cfg.H, cfg.D_out)
    return {
        "numpy": train_numpy(p, cfg.steps),
        "tensors": train_tensors(p, cfg.steps),
        "autograd": train_autograd(p, cfg.steps),
        "autograd.Function": train_autograd(p, cfg.steps, relu=MyReLU.apply),
        # nn layers start from PyTorch's default (scaled) init, so they use the tutorial's larger rates.
        "nn.Sequential": train_module(sequential_model(cfg), p, cfg.steps, learning_rate=1e-4),
        "optim.Adam": train_module(
            sequential_model(cfg), p, cfg.steps, make_optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-4)
        ),
        "nn.Module": train_module(
            TwoLayerNet(*sizes).double(), p, cfg.steps, make_optimizer=lambda ps: torch.optim.SGD(ps, lr=1e-4)
        ),
        "dynamic": train_module(
            DynamicNet(*sizes, rng=random.Random(cfg.seed)).double(),
            p,
            cfg.steps,
            make_optimizer=lambda ps: torch.optim.SGD(ps, lr=1e-4, momentum=0.9),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Train every rung and print its first and last loss."""
    defaults = LadderConfig()
    parser = argparse.ArgumentParser(description="Lesson 4: the two-layer ReLU net, from numpy to a dynamic graph.")
    parser.add_argument("--steps", type=int, default=defaults.steps, help=f"steps per rung (default {defaults.steps})")
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help=f"seed for data and weights (default {defaults.seed})"
    )
    args = parser.parse_args(argv)
    cfg = LadderConfig(steps=args.steps, seed=args.seed)

    p = make_problem(cfg)
    loss_np, g1_np, g2_np = numpy_gradients(p.x, p.y, p.w1, p.w2)
    x, y, w1, w2 = _tensors(p)
    _, g1, g2 = autograd_gradients(x, y, w1, w2)
    rel = max(np.abs(g - t.numpy()).max() / np.abs(g).max() for g, t in ((g1_np, g1), (g2_np, g2)))
    print(f"numpy hand-written gradients vs autograd (float64): max relative difference {rel:.1e}")

    print(f"N, D_in, H, D_out = {cfg.N}, {cfg.D_in}, {cfg.H}, {cfg.D_out}; {cfg.steps} steps per rung")
    for name, losses in run_ladder(cfg).items():
        print(f"{name:>18}: loss {losses[0]:12.4g} -> {losses[-1]:10.4g}  ({losses[0] / losses[-1]:.3g}x lower)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
