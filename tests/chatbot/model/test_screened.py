"""chatbot/model/screened.py: greedy's screened argmax is the fp32 argmax, and its bound holds."""

import math

import pytest
import torch

from chatbot.model import screened
from chatbot.model.screened import ScreenedArgmax

needs_int8 = pytest.mark.skipif(not screened.INT8_PRODUCT, reason="this torch has no int8-weight product")


def layer(vocab: int = 3000, hidden: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An output layer whose rows differ in scale (as trained ones do), with a block of near-duplicate rows."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(vocab, hidden, generator=g) * torch.rand(vocab, 1, generator=g) * 0.3
    weight[100:120] = weight[99] + 1e-4 * torch.randn(20, hidden, generator=g)  # ties the int8 form cannot split
    return weight, torch.randn(vocab, generator=g) * 0.1


def no_ban(scores: torch.Tensor) -> None:
    pass


@needs_int8
def test_the_bound_holds_for_every_logit():
    weight, bias = layer()
    argmax = ScreenedArgmax(weight, bias)
    g = torch.Generator().manual_seed(1)
    for scale in (0.1, 1.0, 10.0):
        for _ in range(20):
            x = torch.randn(1, weight.size(1), generator=g) * scale
            approx, bound = argmax.screen(x)
            exact = torch.nn.functional.linear(x, weight, bias)
            assert ((exact - approx).abs() <= bound).all()
            assert (exact - approx).abs().max() > 0  # it is an approximation: the test is not vacuous


@pytest.mark.parametrize("int8", [True, False])
def test_the_winner_is_the_fp32_argmax_with_bans(monkeypatch, int8):
    if int8 and not screened.INT8_PRODUCT:
        pytest.skip("this torch has no int8-weight product")
    monkeypatch.setattr(screened, "INT8_PRODUCT", int8)
    weight, bias = layer(seed=2)
    argmax = ScreenedArgmax(weight, bias)
    assert argmax.screened is int8
    g = torch.Generator().manual_seed(3)
    near_ties = 0
    for i in range(200):
        x = torch.randn(1, weight.size(1), generator=g)
        if i % 2:
            x = weight[99:100] * 20  # points at the near-duplicate block: 21 rows within the bound of each other
        banned = torch.randint(0, weight.size(0), (50,), generator=g)

        def ban(scores, banned=banned):
            scores[:, banned] = -math.inf

        exact = torch.nn.functional.linear(x, weight, bias)
        ban(exact)
        assert int(argmax(x, ban)) == int(exact.argmax())
        if int8:
            approx, bound = argmax.screen(x)
            ban(approx)
            near_ties += int(((approx + bound) >= (approx - bound).max()).sum() > 1)
    if int8:
        assert near_ties >= 100  # the exact recheck decided those, not the screening


def test_a_row_length_the_int8_kernel_cannot_read_keeps_the_fp32_product():
    """torch's int8 kernel reads rows in blocks of 16 (other lengths gave wrong numbers or a crash)."""
    weight, bias = layer(vocab=300, hidden=20)
    argmax = ScreenedArgmax(weight, bias)
    assert not argmax.screened
    x = torch.randn(1, 20)
    assert int(argmax(x, no_ban)) == int(torch.nn.functional.linear(x, weight, bias).argmax())


@needs_int8
def test_a_kernel_that_breaks_the_bound_is_not_used(monkeypatch):
    """The bound is checked once at construction: a product that computes something else is refused."""
    weight, bias = layer()
    monkeypatch.setattr(torch, "_weight_int8pack_mm", lambda x, q, s: torch.zeros(x.size(0), q.size(0), dtype=x.dtype))
    assert not ScreenedArgmax(weight, bias).screened
