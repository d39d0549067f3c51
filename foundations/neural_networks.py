"""Lesson 3: neural networks (神经网络) with torch.nn — the notes' LeNet for 1x32x32 images.

A typical training procedure (典型训练过程): define a net with learnable parameters, iterate over
inputs, run the net, compute the loss, backpropagate gradients into the parameters, update them with
weight = weight - learning_rate * gradient.

Run: `python -m foundations.neural_networks`
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim


class Net(nn.Module):
    """The notes' LeNet: 1x32x32 image -> 10 scores; 61,706 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)  # 1 input image channel, 6 output channels, 5x5 kernel
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)  # an affine operation: y = Wx + b
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, 32, 32) -> scores (B, 10)."""
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))  # (B, 6, 14, 14): max pooling over a 2x2 window
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 16, 5, 5): a square window can be one number
        x = x.view(-1, self.num_flat_features(x))  # (B, 400)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)  # (B, 10)

    def num_flat_features(self, x: torch.Tensor) -> int:
        """Features per sample: the product of every dimension except the batch."""
        num_features = 1
        for s in x.size()[1:]:
            num_features *= s
        return num_features


def count_parameters(net: nn.Module) -> int:
    """Number of learnable scalars."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def grad_fn_chain(loss: torch.Tensor, depth: int = 3) -> list[str]:
    """Names of the backward nodes from the loss: MSELoss -> Linear (addmm) -> ReLU."""
    names, node = [], loss.grad_fn
    for _ in range(depth):
        names.append(type(node).__name__)
        # next_functions[0] of addmm is its bias; the input ReLU is the second entry. Follow the first
        # entry that leads on into the network, as the notes' printout suggests.
        nexts = [f for f, _ in node.next_functions if f is not None and type(f).__name__ != "AccumulateGrad"]
        if not nexts:
            break
        node = nexts[0]
    return names


def bias_grad_before_after(net: Net, input: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1.bias.grad after zero_grad and after backward (returns copies)."""
    criterion = nn.MSELoss()
    loss = criterion(net(input), target)
    net.zero_grad()  # zero the gradient buffers of all parameters (清零, else gradients accumulate)
    # set_to_none=True is the modern default; show zeros as the notes expect.
    before = torch.zeros_like(net.conv1.bias) if net.conv1.bias.grad is None else net.conv1.bias.grad.clone()
    # Fix: the notes print "before" and "after" with no loss.backward() between them, so both print the
    # same (empty) gradient. Backpropagate here.
    loss.backward()
    after = net.conv1.bias.grad.clone()
    return before, after


def hand_sgd_step(net: nn.Module, learning_rate: float = 0.01) -> None:
    """weight = weight - learning_rate * gradient, by hand, for every parameter."""
    with torch.no_grad():
        for f in net.parameters():
            f.sub_(f.grad * learning_rate)


def training_step(
    net: nn.Module, optimizer: optim.Optimizer, criterion: nn.Module, input: torch.Tensor, target: torch.Tensor
) -> float:
    """The standard idiom: zero_grad, forward, loss, backward, step. Returns the loss before the step."""
    optimizer.zero_grad()  # zero the gradient buffers
    output = net(input)
    loss = criterion(output, target)
    loss.backward()
    optimizer.step()  # does the update
    return loss.item()


def hand_sgd_matches_optim(seed: int = 0, lr: float = 0.01) -> float:
    """Largest parameter difference between a hand SGD step and optim.SGD(lr).step() from the same state."""
    torch.manual_seed(seed)
    net = Net()
    input, target = torch.randn(1, 1, 32, 32), torch.randn(1, 10)
    twin = copy.deepcopy(net)
    for model in (net, twin):
        model.zero_grad()
        nn.MSELoss()(model(input), target).backward()
    hand_sgd_step(net, lr)
    optim.SGD(twin.parameters(), lr=lr).step()
    return max((a - b).abs().max().item() for a, b in zip(net.parameters(), twin.parameters(), strict=True))


def main(argv: list[str] | None = None) -> int:
    """Print each step of the neural-networks lesson."""
    parser = argparse.ArgumentParser(description="Lesson 3: a LeNet, a loss, backprop, and weight updates.")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the weights and data (default 0)")
    parser.add_argument("--steps", type=int, default=5, help="training steps to show the loss falling (default 5)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    net = Net()
    print(net)
    print("learnable parameters:", count_parameters(net))

    input = torch.randn(1, 1, 32, 32)  # a random 32x32 input (one sample, one channel)
    output = net(input)
    print("output:", tuple(output.shape))
    net.zero_grad()
    output.backward(torch.randn(1, 10))  # backprop with random gradients, as the notes do

    target = torch.randn(10).view(1, -1)  # same shape as the output
    loss = nn.MSELoss()(net(input), target)
    print("loss:", round(loss.item(), 4), "grad_fn chain:", " -> ".join(grad_fn_chain(loss)))

    before, after = bias_grad_before_after(net, input, target)
    print("conv1.bias.grad before backward:", before.tolist())
    print("conv1.bias.grad after backward: ", [round(v, 5) for v in after.tolist()])

    print("hand SGD vs optim.SGD, max difference:", hand_sgd_matches_optim(args.seed))

    optimizer = optim.SGD(net.parameters(), lr=0.01)
    losses = [training_step(net, optimizer, nn.MSELoss(), input, target) for _ in range(args.steps)]
    print("training-step losses:", [round(v, 4) for v in losses])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
