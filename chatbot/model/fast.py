"""The network's fast CPU inference form: `InferenceSeq2Seq` = `QueryEncoder` + `DecoderStep`.

The same math as `chatbot.model.network` (nn.GRU's documented cell equations in `gru_cell`, the
shared `bridge`, the model's own `Attn`), for one query at a time and without dropout, with every
matrix stored transposed so each product is `addmm(bias, x, W^T)` on a contiguous copy. At batch 1,
nn.Linear and nn.GRU take a matrix-vector path that is slower on a CPU than this matrix-matrix one
(README, "Decoding latency"). Because the weights are copies, `InferenceSeq2Seq.is_stale()` tells when
the model has changed since (an optimizer step, `load_state_dict`); `chatbot.reply.Chatbot` then
rebuilds it, so a reply always comes from the live weights.
"""

from __future__ import annotations

import torch

from chatbot.model.network import LuongAttnDecoderRNN, Seq2Seq
from chatbot.model.shared import bridge, gru_cell
from chatbot.tokenizers.base import PAD_token


def _transposed(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().T.contiguous()


class DecoderStep(torch.nn.Module):
    """One step of `LuongAttnDecoderRNN`, on transposed copies of its matrices."""

    def __init__(self, decoder: LuongAttnDecoderRNN):
        super().__init__()
        self.embedding = decoder.embedding
        self.attn = decoder.attn
        self.n_layers = decoder.n_layers
        gru = decoder.gru
        for layer in range(self.n_layers):
            self.register_buffer(f"w_ih_{layer}", _transposed(getattr(gru, f"weight_ih_l{layer}")))  # (H, 3H)
            self.register_buffer(f"w_hh_{layer}", _transposed(getattr(gru, f"weight_hh_l{layer}")))  # (H, 3H)
            self.register_buffer(f"b_ih_{layer}", getattr(gru, f"bias_ih_l{layer}").detach().clone())
            self.register_buffer(f"b_hh_{layer}", getattr(gru, f"bias_hh_l{layer}").detach().clone())
        self.register_buffer("w_concat", _transposed(decoder.concat.weight))  # (2H, H)
        self.register_buffer("b_concat", decoder.concat.bias.detach().clone())
        self.register_buffer("w_out", _transposed(decoder.out.weight))  # (H, V)
        self.register_buffer("b_out", decoder.out.bias.detach().clone())

    def forward(
        self,
        input_step: torch.Tensor,
        last_hidden: torch.Tensor,
        encoder_outputs: torch.Tensor,
        src_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_step (1, K), last_hidden (L, K, H), encoder_outputs (Ts, K, H), src_mask (K, Ts)
        -> logits (1, K, V), hidden (L, K, H), attention weights (K, 1, Ts)."""
        x = self.embedding(input_step[0])  # (K, H)
        hidden = []
        for layer in range(self.n_layers):
            h = last_hidden[layer]  # (K, H)
            gates_x = torch.addmm(getattr(self, f"b_ih_{layer}"), x, getattr(self, f"w_ih_{layer}"))  # (K, 3H)
            gates_h = torch.addmm(getattr(self, f"b_hh_{layer}"), h, getattr(self, f"w_hh_{layer}"))  # (K, 3H)
            x = gru_cell(gates_x, gates_h, h)  # (K, H)
            hidden.append(x)
        query = x.unsqueeze(1)  # (K, 1, H)
        keys = encoder_outputs.transpose(0, 1)  # (K, Ts, H)
        attn_weights = self.attn(query, keys, src_mask)  # (K, 1, Ts)
        context = (attn_weights @ keys).squeeze(1)  # (K, H)
        concat_output = torch.tanh(torch.addmm(self.b_concat, torch.cat((x, context), dim=1), self.w_concat))
        logits = torch.addmm(self.b_out, concat_output, self.w_out)  # (K, V)
        return logits.unsqueeze(0), torch.stack(hidden), attn_weights


class QueryEncoder(torch.nn.Module):
    """`Seq2Seq.encode` for one unpadded query (batch 1), on transposed copies of the encoder's matrices.

    No padding, so no packing: the input projections of all time steps are one matrix product per
    direction, and each recurrent step runs both directions in one batched product.
    """

    def __init__(self, model: Seq2Seq):
        super().__init__()
        gru = model.encoder.gru
        self.embedding = model.embedding
        self.n_layers = gru.num_layers
        self.decoder_n_layers = model.config.decoder_n_layers
        for layer in range(self.n_layers):
            names = [f"l{layer}", f"l{layer}_reverse"]  # forward, backward direction
            for i, name in enumerate(names):
                self.register_buffer(f"w_ih_{layer}_{i}", _transposed(getattr(gru, f"weight_ih_{name}")))
                self.register_buffer(f"b_ih_{layer}_{i}", getattr(gru, f"bias_ih_{name}").detach().clone())
            w_hh = torch.stack([getattr(gru, f"weight_hh_{n}").detach().T for n in names])  # (2, H, 3H)
            b_hh = torch.stack([getattr(gru, f"bias_hh_{n}").detach() for n in names]).unsqueeze(1)  # (2, 1, 3H)
            self.register_buffer(f"w_hh_{layer}", w_hh.contiguous())
            self.register_buffer(f"b_hh_{layer}", b_hh.contiguous())

    def forward(self, input_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_seq (Ts, 1) -> encoder_outputs (Ts, 1, H), decoder_hidden (L_dec, 1, H), src_mask (1, Ts)."""
        x = self.embedding(input_seq[:, 0])  # (Ts, H)
        finals = []
        for layer in range(self.n_layers):
            gates_f = torch.addmm(getattr(self, f"b_ih_{layer}_0"), x, getattr(self, f"w_ih_{layer}_0"))  # (Ts, 3H)
            gates_b = torch.addmm(getattr(self, f"b_ih_{layer}_1"), x, getattr(self, f"w_ih_{layer}_1"))
            # (Ts, 2, 1, 3H): the backward direction reads the query reversed
            gates_x = torch.stack((gates_f, gates_b.flip(0)), dim=1).unsqueeze(2)
            w_hh, b_hh = getattr(self, f"w_hh_{layer}"), getattr(self, f"b_hh_{layer}")
            h = x.new_zeros(2, 1, w_hh.size(1))  # (2, 1, H): both directions start from zeros
            steps = []
            for t in range(x.size(0)):
                h = gru_cell(gates_x[t], torch.baddbmm(b_hh, h, w_hh), h)  # (2, 1, H)
                steps.append(h)
            out = torch.stack(steps)  # (Ts, 2, 1, H)
            forward, backward = out[:, 0, 0], out[:, 1, 0].flip(0)  # (Ts, H) each, in source order
            x = torch.cat((forward, backward), dim=1)  # (Ts, 2H): the next layer's input
            finals.append(h)  # (2, 1, H): this layer's final forward and backward states
        encoder_outputs = (forward + backward).unsqueeze(1)  # (Ts, 1, H), the directions summed
        decoder_hidden = bridge(torch.cat(finals), self.decoder_n_layers)  # (2L, 1, H) -> (L_dec, 1, H)
        return encoder_outputs, decoder_hidden, (input_seq != PAD_token).transpose(0, 1)


def weights_version(model: torch.nn.Module) -> tuple[int, ...]:
    """A fingerprint that changes whenever any weight is changed in place (autograd's version counters)."""
    return tuple(p._version for p in model.parameters())


class InferenceSeq2Seq:
    """A `Seq2Seq` for decoding one query: `QueryEncoder` as `encode`, `DecoderStep` as `decoder`.

    Other calls (a padded batch, as rerank's scoring makes) go to the model itself.
    """

    def __init__(self, model: Seq2Seq):
        self.model = model
        self.query_encoder = QueryEncoder(model)
        self.decoder = DecoderStep(model.decoder)
        self.device = model.device
        self._built_from = (id(model), weights_version(model))

    def is_stale(self) -> bool:
        """Whether the model's weights have changed since these copies were made (rebuild then)."""
        return self._built_from != (id(self.model), weights_version(self.model))

    def encode(self, input_seq: torch.Tensor, input_lengths: torch.Tensor):
        """input_seq (Ts, B), input_lengths (B,) -> as `Seq2Seq.encode`; one query takes the fast path."""
        if input_seq.size(1) == 1 and int(input_lengths[0]) == input_seq.size(0):
            return self.query_encoder(input_seq)
        return self.model.encode(input_seq, input_lengths)
