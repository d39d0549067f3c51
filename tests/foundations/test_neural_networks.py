"""Lesson 3: LeNet size, the grad_fn chain, backward filling conv1.bias.grad, hand SGD == optim.SGD."""

import copy

import torch
import torch.nn as nn

from foundations import neural_networks as nnl


def test_lenet_has_61706_parameters_and_ten_outputs():
    net = nnl.Net()
    assert nnl.count_parameters(net) == 61706
    assert net(torch.randn(3, 1, 32, 32)).shape == (3, 10)


def test_grad_fn_chain_is_mse_linear_relu():
    torch.manual_seed(0)
    net = nnl.Net()
    loss = nn.MSELoss()(net(torch.randn(1, 1, 32, 32)), torch.randn(1, 10))
    chain = nnl.grad_fn_chain(loss)
    assert chain[0].startswith("MseLoss")
    assert chain[1].startswith("Addmm")  # a Linear layer's forward is addmm
    assert chain[2].startswith("Relu")


def test_bias_grad_is_zero_before_and_filled_after_backward():
    torch.manual_seed(0)
    before, after = nnl.bias_grad_before_after(nnl.Net(), torch.randn(1, 1, 32, 32), torch.randn(1, 10))
    assert torch.equal(before, torch.zeros(6))
    assert after.abs().sum() > 0


def test_hand_sgd_equals_optim_sgd():
    torch.manual_seed(1)
    net = nnl.Net()
    x, t = torch.randn(2, 1, 32, 32), torch.randn(2, 10)
    start, twin = copy.deepcopy(net), copy.deepcopy(net)  # deepcopy does not copy .grad: backprop in each
    for model in (net, twin):
        nn.MSELoss()(model(x), t).backward()
    nnl.hand_sgd_step(net, 0.01)
    torch.optim.SGD(twin.parameters(), lr=0.01).step()
    for a, b, s0 in zip(net.parameters(), twin.parameters(), start.parameters(), strict=True):
        # optim.SGD fuses p + (-lr) * g; the hand form rounds g * lr first: equal up to float32 rounding
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
        torch.testing.assert_close(a, s0 - 0.01 * b.grad, rtol=0, atol=1e-7)
    assert (net.fc3.weight != start.fc3.weight).any()  # the step really moved the weights
    assert nnl.hand_sgd_matches_optim(seed=3) < 1e-7


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    net = nnl.Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x, t = torch.randn(1, 1, 32, 32), torch.randn(1, 10)
    losses = [nnl.training_step(net, opt, nn.MSELoss(), x, t) for _ in range(10)]
    assert losses[-1] < losses[0]
