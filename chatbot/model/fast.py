"""The network's fast CPU inference form: `InferenceSeq2Seq` = `QueryEncoder` + `DecoderStep`.

The same math as `chatbot.model.network` (nn.GRU's documented cell equations in `gru_cell`, the
shared `bridge`, the model's own `Attn`), for one query at a time and without dropout, with every
product `x W^T + b` done by an `Affine` on a copy of W made once: oneDNN's fp32 product on a weight it
has packed for a few rows, or `addmm(bias, x, W^T)` on a contiguous transposed copy where torch has no
oneDNN. Both beat nn.Linear and nn.GRU on a CPU for the 1 to 8 rows a decoder step has (README,
"Decoding latency"). Because the weights are copies, `InferenceSeq2Seq.is_stale()` tells when
the model has changed since (an optimizer step, `load_state_dict`); `chatbot.reply.Chatbot` then
rebuilds it, so a reply always comes from the live weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from chatbot.model.network import FactorizedLinear, LuongAttnDecoderRNN, Seq2Seq
from chatbot.model.screened import ScreenedArgmax
from chatbot.model.shared import bridge, gru_cell
from chatbot.tokenizers.base import PAD_token


def _transposed(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().T.contiguous()


def _has_onednn_linear() -> bool:
    """Whether this torch has oneDNN's packed fp32 linear (x86 builds do; inductor uses it on CPUs)."""
    try:
        w, x = torch.ones(2, 3), torch.ones(1, 3)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 1)
        out = torch.ops.mkldnn._linear_pointwise(x, packed, torch.zeros(2), "none", [], "")
        return bool(torch.equal(out, torch.full((1, 2), 3.0)))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


ONEDNN_LINEAR = _has_onednn_linear()


class Affine:
    """x (K, in) -> x W^T + b (K, out), in fp32, for the few rows of a decoding step, from a copy of
    nn.Linear-shaped `weight` (out, in). With oneDNN: its product on the weight packed once for 8 rows
    (3-4x faster than MKL's for 5 to 8 rows on the AMD dev CPU, where MKL takes a generic path; as fast
    for 1). Without it, or off the CPU: addmm on a contiguous W^T. Same products; only the order in which
    each sum is added up differs (results agree to float rounding, about 1e-6)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        weight = weight.detach()
        self.bias = bias.detach().clone()
        self.onednn = ONEDNN_LINEAR and weight.device.type == "cpu" and weight.dtype == torch.float32
        if self.onednn:
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), 8)
        else:
            self.weight = _transposed(weight)  # (in, out)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.onednn:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return torch.addmm(self.bias, x, self.weight)


class DecoderStep(torch.nn.Module):
    """One step of `LuongAttnDecoderRNN`, on `Affine` copies of its matrices."""

    def __init__(self, decoder: LuongAttnDecoderRNN):
        super().__init__()
        self.embedding = decoder.embedding
        self.attn = decoder.attn
        self.n_layers = decoder.n_layers
        gru = decoder.gru
        # layer -> the input and the hidden state's gates: (K, H) -> (K, 3H) each
        self.gates_x = [
            Affine(getattr(gru, f"weight_ih_l{i}"), getattr(gru, f"bias_ih_l{i}")) for i in range(self.n_layers)
        ]
        self.gates_h = [
            Affine(getattr(gru, f"weight_hh_l{i}"), getattr(gru, f"bias_hh_l{i}")) for i in range(self.n_layers)
        ]
        self.concat = Affine(decoder.concat.weight, decoder.concat.bias)  # (K, 2H) -> (K, H)
        # the output layer as (K, H) -> (K, R) `project`, then `out` (K, R) -> (K, V): R = H and no projection
        # for nn.Linear; for a `FactorizedLinear` its D (no bias) and its U with the bias
        self.project: Affine | None = None
        self.logits_layer = decoder.out  # the nn.Linear whose product gives the logits (greedy screens its copy)
        if isinstance(decoder.out, FactorizedLinear):
            down = decoder.out.down
            self.project = Affine(down.weight, torch.zeros(down.out_features, device=down.weight.device))
            self.logits_layer = decoder.out.up
        self.out = Affine(self.logits_layer.weight, self.logits_layer.bias)

    def forward(
        self,
        input_step: torch.Tensor,
        last_hidden: torch.Tensor,
        encoder_outputs: torch.Tensor,
        src_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_step (1, K), last_hidden (L, K, H), encoder_outputs (Ts, K, H), src_mask (K, Ts)
        -> logits (1, K, V), hidden (L, K, H), attention weights (K, 1, Ts)."""
        concat_output, hidden, attn_weights = self.features(input_step, last_hidden, encoder_outputs, src_mask)
        logits = self.out(self.projected(concat_output))  # (K, V)
        return logits.unsqueeze(0), hidden, attn_weights

    def projected(self, concat_output: torch.Tensor) -> torch.Tensor:
        """concat output (K, H) -> what the output layer's last product reads: itself, or (K, R) through D."""
        return concat_output if self.project is None else self.project(concat_output)

    def features(
        self,
        input_step: torch.Tensor,
        last_hidden: torch.Tensor,
        encoder_outputs: torch.Tensor,
        src_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step up to the output layer: -> concat output (K, H), hidden (L, K, H), attention (K, 1, Ts)."""
        x = self.embedding(input_step[0])  # (K, H)
        hidden = []
        for layer in range(self.n_layers):
            h = last_hidden[layer]  # (K, H)
            x = gru_cell(self.gates_x[layer](x), self.gates_h[layer](h), h)  # (K, H)
            hidden.append(x)
        query = x.unsqueeze(1)  # (K, 1, H)
        keys = encoder_outputs.transpose(0, 1)  # (K, Ts, H)
        attn_weights = self.attn(query, keys, src_mask)  # (K, 1, Ts)
        context = (attn_weights @ keys).squeeze(1)  # (K, H)
        concat_output = torch.tanh(self.concat(torch.cat((x, context), dim=1)))  # (K, H)
        return concat_output, torch.stack(hidden), attn_weights


class QueryEncoder(torch.nn.Module):
    """`Seq2Seq.encode` for one unpadded query (batch 1), on copies of the encoder's matrices.

    No padding, so no packing: the input projections of all time steps are one `Affine` product per
    direction, and each recurrent step runs both directions in one batched product.
    """

    def __init__(self, model: Seq2Seq):
        super().__init__()
        gru = model.encoder.gru
        self.embedding = model.embedding
        self.n_layers = gru.num_layers
        self.decoder_n_layers = model.config.decoder_n_layers
        self.gates_x = []
        for layer in range(self.n_layers):
            names = [f"l{layer}", f"l{layer}_reverse"]  # forward, backward direction
            # (Ts, H or 2H) -> (Ts, 3H), forward and backward direction
            self.gates_x.append([Affine(getattr(gru, f"weight_ih_{n}"), getattr(gru, f"bias_ih_{n}")) for n in names])
            w_hh = torch.stack([getattr(gru, f"weight_hh_{n}").detach().T for n in names])  # (2, H, 3H)
            b_hh = torch.stack([getattr(gru, f"bias_hh_{n}").detach() for n in names]).unsqueeze(1)  # (2, 1, 3H)
            self.register_buffer(f"w_hh_{layer}", w_hh.contiguous())
            self.register_buffer(f"b_hh_{layer}", b_hh.contiguous())

    def forward(self, input_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_seq (Ts, 1) -> encoder_outputs (Ts, 1, H), decoder_hidden (L_dec, 1, H), src_mask (1, Ts)."""
        x = self.embedding(input_seq[:, 0])  # (Ts, H)
        finals = []
        for layer in range(self.n_layers):
            gates_f, gates_b = (affine(x) for affine in self.gates_x[layer])  # (Ts, 3H) each
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
    """A `Seq2Seq` for decoding one query: `QueryEncoder` as `encode`, `DecoderStep` as `decoder`, and
    `greedy_step` (the step and its argmax through `ScreenedArgmax`) for greedy search.

    Other calls (a padded batch, as rerank's scoring makes) go to the model itself.
    """

    def __init__(self, model: Seq2Seq):
        self.model = model
        self.query_encoder = QueryEncoder(model)
        self.decoder = DecoderStep(model.decoder)
        last = self.decoder.logits_layer
        self.argmax = ScreenedArgmax(last.weight, last.bias)  # over the output layer's last product
        self.device = model.device
        self._built_from = (id(model), weights_version(model))

    def is_stale(self) -> bool:
        """Whether the model's weights have changed since these copies were made (rebuild then)."""
        return self._built_from != (id(self.model), weights_version(self.model))

    def greedy_step(
        self,
        input_step: torch.Tensor,
        last_hidden: torch.Tensor,
        encoder_outputs: torch.Tensor,
        src_mask: torch.Tensor,
        ban: Callable[[torch.Tensor], None],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One greedy step for one reply: -> the argmax of the banned logits (1, 1), hidden (L, 1, H)."""
        concat_output, hidden, _ = self.decoder.features(input_step, last_hidden, encoder_outputs, src_mask)
        return self.argmax(self.decoder.projected(concat_output), ban), hidden

    def encode(self, input_seq: torch.Tensor, input_lengths: torch.Tensor):
        """input_seq (Ts, B), input_lengths (B,) -> as `Seq2Seq.encode`; one query takes the fast path."""
        if input_seq.size(1) == 1 and int(input_lengths[0]) == input_seq.size(0):
            return self.query_encoder(input_seq)
        return self.model.encode(input_seq, input_lengths)
