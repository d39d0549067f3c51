"""The math every form of the network shares, written once: the encoder-to-decoder `bridge` and `gru_cell`."""

from __future__ import annotations

import torch


def bridge(encoder_hidden: torch.Tensor, decoder_n_layers: int) -> torch.Tensor:
    """The encoder's final states -> the decoder's first state: encoder_hidden (2 * L_enc, B, H), laid out
    as nn.GRU lays out a bidirectional GRU's (layer by layer, forward then backward) -> (L_dec, B, H).

    The tutorial takes encoder_hidden[:decoder.n_layers], i.e. layer 0's forward and backward states.
    We give each decoder layer the summed directions of an encoder layer instead (the last L_dec
    layers), matching how the encoder's outputs are summed.
    """
    two_layers, B, H = encoder_hidden.shape
    per_layer = encoder_hidden.view(two_layers // 2, 2, B, H).sum(dim=1)  # (L_enc, B, H)
    return per_layer[per_layer.size(0) - decoder_n_layers :].contiguous()  # (L_dec, B, H)


def gru_cell(gates_x: torch.Tensor, gates_h: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """nn.GRU's cell: the input's and the hidden state's projections gates_x, gates_h (..., 3H) (biases
    included, gates in r, z, n order) and the state h (..., H) -> the next state (..., H)."""
    x_r, x_z, x_n = gates_x.chunk(3, dim=-1)
    h_r, h_z, h_n = gates_h.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return n + z * (h - n)  # (1 - z) * n + z * h
