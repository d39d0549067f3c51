"""The network's export forms: what `torch.export` traces, and what answers from the traced programs.

Two things export cannot trace in the encoder: `pack_padded_sequence`, and an `nn.GRU` over a
sequence of dynamic length (export unrolls the recurrence, fixing the length). So `ExportEncoder`
takes a single query (batch 1, no padding, where packing changes nothing) and runs its bidirectional
GRU through `chatbot::bigru`, a custom op around `torch.gru` that export keeps whole. Importing this
module registers that op, which loading an exported encoder needs. `ExportedSeq2Seq` answers
`chatbot.model.DecodingModel` from the two loaded programs.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from chatbot.model.shared import bridge
from chatbot.tokenizers.base import PAD_token


@torch.library.custom_op("chatbot::bigru", mutates_args=())
def bigru(input_seq: torch.Tensor, weights: list[torch.Tensor], num_layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A bidirectional multi-layer GRU from zero state: input (T, B, H) -> outputs (T, B, 2H), hidden (2L, B, H)."""
    hidden_size = weights[1].size(1)  # weight_hh_l0 is (3H, H)
    h0 = input_seq.new_zeros(2 * num_layers, input_seq.size(1), hidden_size)
    # torch.gru(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
    outputs, hidden = torch.gru(input_seq, h0, weights, True, num_layers, 0.0, False, True, False)
    return outputs, hidden


@bigru.register_fake
def _bigru_shapes(input_seq, weights, num_layers):
    hidden_size = weights[1].size(1)
    T, B = input_seq.size(0), input_seq.size(1)
    return input_seq.new_empty(T, B, 2 * hidden_size), input_seq.new_empty(2 * num_layers, B, hidden_size)


class ExportEncoder(nn.Module):
    """`Seq2Seq.encode` for one unpadded query, without packing (which torch.export cannot trace)."""

    def __init__(self, model):
        super().__init__()
        self.embedding = model.embedding
        self.gru = model.encoder.gru
        self.hidden_size = model.config.hidden_size
        self.encoder_n_layers = model.config.encoder_n_layers
        self.decoder_n_layers = model.config.decoder_n_layers

    def forward(self, input_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_seq (Ts, 1) -> encoder_outputs (Ts, 1, H), decoder_hidden (L_dec, 1, H), src_mask (1, Ts)."""
        weights = [getattr(self.gru, name) for name in self.gru._flat_weights_names]
        outputs, hidden = bigru(self.embedding(input_seq), weights, self.encoder_n_layers)  # (Ts,1,2H), (2L,1,H)
        H = self.hidden_size
        outputs = outputs[:, :, :H] + outputs[:, :, H:]  # sum directions, as EncoderRNN does
        decoder_hidden = bridge(hidden, self.decoder_n_layers)  # (L_dec, 1, H), as Seq2Seq.encode
        return outputs, decoder_hidden, (input_seq != PAD_token).transpose(0, 1)


class ExportDecoderStep(nn.Module):
    """One decoder step, dropping the attention weights the reply never needs."""

    def __init__(self, model):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, input_step, last_hidden, encoder_outputs, src_mask):
        """input_step (1, K), last_hidden (L, K, H), encoder_outputs (Ts, K, H), src_mask (K, Ts)
        -> logits (1, K, V), hidden (L, K, H)."""
        logits, hidden, _ = self.decoder(input_step, last_hidden, encoder_outputs, src_mask)
        return logits, hidden


class ExportedSeq2Seq:
    """The two calls `chatbot.decode` makes (`encode`, `decoder`), answered by exported programs."""

    device = torch.device("cpu")

    def __init__(self, encoder: torch.export.ExportedProgram, decoder: torch.export.ExportedProgram):
        self._encoder = encoder.module()
        self._decoder = decoder.module()

    def encode(self, input_seq: torch.Tensor, input_lengths: torch.Tensor):
        """input_seq (Ts, 1) (one query; lengths unused) -> encoder_outputs, hidden, src_mask."""
        return self._encoder(input_seq)

    def decoder(self, input_step, last_hidden, encoder_outputs, src_mask):
        """Same signature as `LuongAttnDecoderRNN.forward`; no attention weights (None)."""
        logits, hidden = self._decoder(
            input_step, last_hidden.contiguous(), encoder_outputs.contiguous(), src_mask.contiguous()
        )
        return logits, hidden, None
