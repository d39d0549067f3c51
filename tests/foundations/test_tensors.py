"""Lesson 1: constructors, addition three ways, view, .item(), the numpy bridge."""

import pytest
import torch

from foundations import tensors


def test_constructors_have_the_notes_dtypes_and_sizes():
    made = tensors.construct()
    assert made["zeros_long"].dtype == torch.long and made["zeros_long"].sum().item() == 0
    assert made["rand"].size() == (3, 3) and ((made["rand"] >= 0) & (made["rand"] < 1)).all()
    assert made["tensor"].tolist() == [1, 2, 3]
    assert isinstance(made["empty"].size(), tuple)


def test_three_additions_agree_and_add_out_keeps_shape():
    x, y = torch.rand(3, 3), torch.rand(3, 3)
    a, b, c = tensors.add_three_ways(x, y)
    assert torch.equal(a, b) and torch.equal(b, c)
    assert b.shape == (3, 3)


def test_view_infers_minus_one_and_shares_storage():
    x = torch.randn(4, 4)
    flat, two_rows = tensors.reshape_with_view(x)
    assert flat.shape == (16,) and two_rows.shape == (2, 8)
    x[0, 0] = 100.0
    assert flat[0].item() == 100.0 and two_rows[0, 0].item() == 100.0  # a view, not a copy


def test_item_needs_one_element_which_the_notes_forgot():
    z = torch.randn(4, 4).view(-1, 8)
    with pytest.raises(RuntimeError):
        z.item()  # the notes' call
    assert tensors.one_element_item(z) == pytest.approx(z.sum().item())


def test_numpy_bridge_shares_memory_both_ways():
    a, b, c, d = tensors.numpy_bridge()
    assert b.tolist() == [2.0] * 5 and d.tolist() == [2.0] * 5
    a.add_(1)
    assert b[0] == 3.0


def test_main_prints_the_lesson(capsys):
    assert tensors.main([]) == 0
    out = capsys.readouterr().out
    assert "numpy bridge shares memory" in out and "device:" in out
