"""Lesson 2: the notes' 4.5 gradient, a vector-Jacobian product, no_grad and detach."""

import torch

from foundations import autograd


def test_notes_gradient_is_four_and_a_half_everywhere():
    out, grad = autograd.notes_example()
    assert out.item() == 27.0  # 3 * (1 + 2)^2
    assert torch.equal(grad, torch.full((2, 2), 4.5))


def test_vector_jacobian_product_of_doubling_is_twice_v():
    v = torch.tensor([0.1, 1.0, 0.0001])
    y, g = autograd.vector_jacobian_product(torch.randn(3), v)
    assert torch.allclose(g, 2 * v)


def test_no_grad_and_detach_stop_tracking():
    assert autograd.no_grad_and_detach(torch.ones(2)) == (True, False, False)


def test_main_prints_the_lesson(capsys):
    assert autograd.main([]) == 0
    assert "4.5" in capsys.readouterr().out
