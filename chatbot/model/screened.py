"""`ScreenedArgmax`: greedy search's argmax over the output layer, exactly, from an int8 copy of it.

Greedy search needs only the likeliest next token, yet the output layer `logits = x W^T + b` reads all of
W at every step: 12,361 x 384 fp32 weights (19 MB) for the shipped model, a third of a greedy reply's time
on the dev CPU. Here a copy of W in int8 (one scale per row, 4.7 MB) gives every logit to within a bound
that is computed alongside it, so only the few tokens whose bound reaches the best token's are computed
again from the fp32 weights. The answer is the fp32 argmax (up to float rounding of exact ties): the
screening only decides which rows to compute exactly, never which token wins.

The bound, for row j, with x the fp32 input, x~ = bf16(x), W~_j = s_j q_j the int8 row times its scale:

    |W_j . x - out_j| <= |W_j . (x - x~)|        <= |W_j|_1 * max|x - x~|     (rounding x to bf16)
                       + |(W_j - W~_j) . x~|     <= max|W_j - W~_j| * |x~|_1  (rounding W to int8)
                       + |out_j| * 2^-8                                        (the kernel's bf16 output)

doubled, plus 1e-4, as a margin for the kernel's own fp32 sums. A test checks that it holds.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# The CPU kernel reads each row in blocks of 16: with torch 2.14.1, a row length that is not a multiple of
# 16 gave wrong numbers or a crash, so such layers keep the plain fp32 product.
INT8_BLOCK = 16


def _has_int8_product() -> bool:
    """Whether this torch has the int8-weight product (`torch._weight_int8pack_mm`) on the CPU."""
    try:
        out = torch._weight_int8pack_mm(
            torch.ones(1, 2 * INT8_BLOCK, dtype=torch.bfloat16),
            torch.ones(4, 2 * INT8_BLOCK, dtype=torch.int8),
            torch.ones(4, dtype=torch.bfloat16),
        )
        return bool(torch.equal(out.float(), torch.full((1, 4), 2.0 * INT8_BLOCK)))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


INT8_PRODUCT = _has_int8_product()


class ScreenedArgmax:
    """argmax over `x weight^T + bias` for one row x (1, H), after `ban` has set forbidden logits to -inf.

    `weight` is nn.Linear's (V, H). Copies are made: fp32 rows for the exact products, and the int8 form.
    Without the int8 product (or for H not a multiple of 16) it is the plain fp32 layer and its argmax.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        w = weight.detach().float().clone()  # (V, H)
        self.weight, self.bias = w, bias.detach().float().clone()  # (V, H), (V,)
        self.screened = INT8_PRODUCT and w.device.type == "cpu" and w.size(1) % INT8_BLOCK == 0
        if not self.screened:
            return
        self.scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-12).bfloat16()  # (V,) one scale per row
        self.int8 = (w / self.scale.float().unsqueeze(1)).round().clamp(-127, 127).to(torch.int8)  # (V, H)
        self.weight_error = (w - self.scale.float().unsqueeze(1) * self.int8.float()).abs().amax(dim=1)  # (V,)
        self.row_l1 = w.abs().sum(dim=1)  # (V,)
        # A kernel that computes something else (another torch, another CPU) must not decide replies: check
        # the bound on a few inputs once, and keep the plain product if it fails.
        probe = torch.randn(4, w.size(1), generator=torch.Generator().manual_seed(0))
        for x in probe.split(1):
            approx, bound = self.screen(x)
            if not bool(((torch.addmm(self.bias, x, w.T) - approx).abs() <= bound).all()):
                self.screened = False
                break

    def __call__(self, x: torch.Tensor, ban: Callable[[torch.Tensor], None]) -> torch.Tensor:
        """x (1, H) -> the winning token id (1, 1)."""
        if not self.screened:
            logits = torch.addmm(self.bias, x, self.weight.T)  # (1, V)
            ban(logits)
            return logits.argmax(dim=-1, keepdim=True)
        approx, bound = self.screen(x)
        ban(approx)
        floor = (approx - bound).max()  # the best token's logit is at least this
        rows = (approx + bound >= floor).nonzero()[:, 1]  # (C,) the only tokens that can reach it
        exact = torch.addmm(self.bias[rows], x, self.weight[rows].T)  # (1, C) fp32, as the full layer's
        return rows[exact.argmax(dim=-1, keepdim=True)]  # (1, 1)

    def screen(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (1, H) -> the int8 form's logits (1, V) and the bound on how far each is from fp32's (1, V)."""
        x_bf16 = x.bfloat16()
        product = torch._weight_int8pack_mm(x_bf16, self.int8, self.scale).float()  # (1, V), ~ x W^T
        bound = (
            self.row_l1 * (x - x_bf16.float()).abs().max()
            + self.weight_error * x_bf16.float().abs().sum()
            + product.abs() * 2**-8
        ) * 2 + 1e-4  # (1, V)
        return product + self.bias, bound
