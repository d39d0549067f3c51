"""The tutorial's seq2seq network for training: `EncoderRNN`, Luong `Attn`, `LuongAttnDecoderRNN`, `Seq2Seq`.

Shapes follow the tutorial's time-major convention: T = time steps, B = batch, H = hidden size,
V = vocabulary size. Tutorial bugs fixed here, each marked "fix:" where it happens:
- padded source positions received attention weight (softmax over pad outputs);
- `concat` attention's vector `v` was uninitialised memory (`torch.FloatTensor(hidden_size)`);
- the decoder returned softmax probabilities that the loss then logged (unstable); we return logits;
- the encoder needed batches sorted by length (unsorted ones are packed with `enforce_sorted=False`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from chatbot.model.shared import bridge
from chatbot.tokenizers.base import PAD_token


@dataclass
class ModelConfig:
    """Network shape. Defaults are the tutorial's."""

    vocab_size: int = 7826  # set from the tokenizer; the tutorial's trimmed Voc has 7,826 words
    hidden_size: int = 500
    encoder_n_layers: int = 2
    decoder_n_layers: int = 2
    dropout: float = 0.1
    attn_model: str = "dot"  # "dot", "general" or "concat"
    output_rank: int = 0  # not in the tutorial: 0 = its output layer, nn.Linear(H, V); r = `FactorizedLinear` through r

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def select_positions(x: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """x (T, B, ...) at the positions `where`: a (T, B) bool mask, or the (N,) flat indices t * B + b
    of its True entries -> (N, ...), in the same (row-major) order either way."""
    if where.dtype == torch.bool:
        return x[where]
    return x.flatten(0, 1).index_select(0, where)


class EncoderRNN(nn.Module):
    """Bidirectional GRU over packed sequences; the two directions are summed."""

    def __init__(self, hidden_size: int, embedding: nn.Embedding, n_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.n_layers = n_layers
        self.hidden_size = hidden_size
        self.embedding = embedding
        # GRU dropout only acts between layers, so it must be 0 for one layer (PyTorch warns otherwise).
        self.gru = nn.GRU(
            hidden_size, hidden_size, n_layers, dropout=(0.0 if n_layers == 1 else dropout), bidirectional=True
        )

    def forward(
        self, input_seq: torch.Tensor, input_lengths: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """input_seq (T, B) ids, input_lengths (B,) on the CPU -> outputs (T, B, H), hidden (2*L, B, H)."""
        embedded = self.embedding(input_seq)  # (T, B, H)
        lengths = input_lengths.cpu()  # pack_padded_sequence wants them on the CPU
        # fix: the tutorial's batches had to be sorted by length; unsorted ones are packed with
        # enforce_sorted=False. Sorted ones (as `make_batch` makes) skip that sort, whose index
        # round trip to the device and back would make a GPU step wait for the host twice.
        is_sorted = bool((lengths[:-1] >= lengths[1:]).all())
        packed = pack_padded_sequence(embedded, lengths, enforce_sorted=is_sorted)
        outputs, hidden = self.gru(packed, hidden)
        outputs, _ = pad_packed_sequence(outputs, total_length=input_seq.size(0))  # (T, B, 2H)
        outputs = outputs[:, :, : self.hidden_size] + outputs[:, :, self.hidden_size :]  # sum directions
        return outputs, hidden


class Attn(nn.Module):
    """Luong attention with the `dot`, `general` and `concat` scores, batched over decoder steps."""

    def __init__(self, method: str, hidden_size: int):
        super().__init__()
        if method not in ("dot", "general", "concat"):
            raise ValueError(f"{method!r} is not an appropriate attention method (dot, general, concat)")
        self.method = method
        self.hidden_size = hidden_size
        if method == "general":
            self.attn = nn.Linear(hidden_size, hidden_size)
        elif method == "concat":
            self.attn = nn.Linear(hidden_size * 2, hidden_size)
            # fix: the tutorial's `nn.Parameter(torch.FloatTensor(hidden_size))` is uninitialised memory.
            self.v = nn.Parameter(
                torch.empty(hidden_size).uniform_(-1 / math.sqrt(hidden_size), 1 / math.sqrt(hidden_size))
            )

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query (B, Tq, H), keys (B, Ts, H) -> energies (B, Tq, Ts)."""
        if self.method == "dot":
            return query @ keys.transpose(1, 2)
        if self.method == "general":
            return query @ self.attn(keys).transpose(1, 2)
        # concat: W [q; k] + b == W_q q + W_k k + b, so the (Tq x Ts) pairs never get materialised twice.
        w_q, w_k = self.attn.weight[:, : self.hidden_size], self.attn.weight[:, self.hidden_size :]
        energy = torch.tanh((query @ w_q.T).unsqueeze(2) + (keys @ w_k.T + self.attn.bias).unsqueeze(1))
        return energy @ self.v  # (B, Tq, Ts, H) @ (H,) -> (B, Tq, Ts)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, src_mask: torch.Tensor | None) -> torch.Tensor:
        """query (B, Tq, H), keys (B, Ts, H), src_mask (B, Ts) True on real tokens -> weights (B, Tq, Ts)."""
        energies = self.score(query, keys)
        if src_mask is not None:
            # fix: the tutorial softmaxes over padded positions too; they must get exactly zero weight.
            energies = energies.masked_fill(~src_mask.unsqueeze(1), float("-inf"))
        return F.softmax(energies, dim=-1)


class FactorizedLinear(nn.Module):
    """x (..., in) -> x D^T U^T + b (..., out): nn.Linear(in, out) with its weight factorized as U D, D (rank, in)
    and U (out, rank). Not in the tutorial. For the output layer (in = H, out = V): a decoding step reads
    (H + V) * rank weights instead of H * V, a third of them at rank 128 for H 384. `factorized` makes one
    from a trained nn.Linear by SVD (`scripts/factorize_model.py`)."""

    def __init__(self, in_features: int, out_features: int, rank: int):
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)  # D: (rank, in)
        self.up = nn.Linear(rank, out_features)  # U: (out, rank), and the bias b (out,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def factorized(linear: nn.Linear, rank: int) -> FactorizedLinear:
    """The rank-`rank` `FactorizedLinear` closest to `linear` (truncated SVD: W ~ U_r S_r V_r^T, the best rank-r
    approximation in the Frobenius norm; Eckart-Young), its singular values split evenly between the factors."""
    out_features, in_features = linear.weight.shape
    if not 1 <= rank <= min(out_features, in_features):
        raise ValueError(f"rank must be 1 to {min(out_features, in_features)}, not {rank}")
    u, s, vh = torch.linalg.svd(linear.weight.detach().double(), full_matrices=False)  # (out, k), (k,), (k, in)
    root = s[:rank].sqrt()
    layer = FactorizedLinear(in_features, out_features, rank)
    with torch.no_grad():
        layer.down.weight.copy_(root.unsqueeze(1) * vh[:rank])  # (rank, in)
        layer.up.weight.copy_(u[:, :rank] * root)  # (out, rank)
        layer.up.bias.copy_(linear.bias.detach())
    return layer.to(linear.weight.device)


class LuongAttnDecoderRNN(nn.Module):
    """GRU -> attention over encoder outputs -> concat layer with tanh -> output layer (logits).

    One forward serves both the step-by-step decoder (Tt = 1) and the teacher-forced fast path
    (Tt = the whole target): the GRU is causal, so running it over the target in one call gives
    the same outputs as feeding it one step at a time.
    """

    def __init__(
        self,
        attn_model: str,
        embedding: nn.Embedding,
        hidden_size: int,
        output_size: int,
        n_layers: int = 1,
        dropout: float = 0.1,
        output_rank: int = 0,
    ):
        super().__init__()
        self.attn_model = attn_model
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.n_layers = n_layers
        self.embedding = embedding
        self.embedding_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden_size, hidden_size, n_layers, dropout=(0.0 if n_layers == 1 else dropout))
        self.concat = nn.Linear(hidden_size * 2, hidden_size)
        # (.., H) -> (.., V): the tutorial's nn.Linear, or a `FactorizedLinear` through output_rank
        if output_rank:
            self.out: nn.Module = FactorizedLinear(hidden_size, output_size, output_rank)
        else:
            self.out = nn.Linear(hidden_size, output_size)
        self.attn = Attn(attn_model, hidden_size)

    def features(
        self,
        input_seq: torch.Tensor,
        last_hidden: torch.Tensor,
        encoder_outputs: torch.Tensor,
        src_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Everything but the output layer: -> concat_output (Tt, B, H), hidden (L, B, H), attention (B, Tt, Ts)."""
        embedded = self.embedding_dropout(self.embedding(input_seq))  # (Tt, B, H)
        rnn_output, hidden = self.gru(embedded, last_hidden)  # (Tt, B, H), (L, B, H)
        query = rnn_output.transpose(0, 1)  # (B, Tt, H)
        keys = encoder_outputs.transpose(0, 1)  # (B, Ts, H)
        attn_weights = self.attn(query, keys, src_mask)  # (B, Tt, Ts)
        context = attn_weights @ keys  # (B, Tt, H)
        concat_output = torch.tanh(self.concat(torch.cat((query, context), dim=2)))  # (B, Tt, H)
        return concat_output.transpose(0, 1), hidden, attn_weights

    def forward(
        self,
        input_seq: torch.Tensor,
        last_hidden: torch.Tensor,
        encoder_outputs: torch.Tensor,
        src_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_seq (Tt, B), last_hidden (L, B, H), encoder_outputs (Ts, B, H), src_mask (B, Ts)
        -> logits (Tt, B, V), hidden (L, B, H), attention weights (B, Tt, Ts)."""
        concat_output, hidden, attn_weights = self.features(input_seq, last_hidden, encoder_outputs, src_mask)
        # fix: logits, not softmax probabilities; callers use log_softmax / cross_entropy.
        logits = self.out(concat_output)  # (Tt, B, V)
        return logits, hidden, attn_weights


class Seq2Seq(nn.Module):
    """Embedding shared by `EncoderRNN` and `LuongAttnDecoderRNN`, built from a `ModelConfig`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.decoder_n_layers > config.encoder_n_layers:
            raise ValueError("decoder_n_layers must not exceed encoder_n_layers (its state starts from theirs)")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.encoder = EncoderRNN(config.hidden_size, self.embedding, config.encoder_n_layers, config.dropout)
        self.decoder = LuongAttnDecoderRNN(
            config.attn_model,
            self.embedding,
            config.hidden_size,
            config.vocab_size,
            config.decoder_n_layers,
            config.dropout,
            config.output_rank,
        )

    @property
    def device(self) -> torch.device:
        """Where the weights live (what `chatbot.decode` puts its tensors on)."""
        return self.embedding.weight.device

    def encode(
        self, input_seq: torch.Tensor, input_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_seq (Ts, B), input_lengths (B,) -> encoder_outputs (Ts, B, H),
        decoder_hidden (L_dec, B, H), src_mask (B, Ts)."""
        encoder_outputs, encoder_hidden = self.encoder(input_seq, input_lengths)  # (Ts, B, H), (2L, B, H)
        decoder_hidden = bridge(encoder_hidden, self.config.decoder_n_layers)  # (L_dec, B, H)
        src_mask = (input_seq != PAD_token).transpose(0, 1)  # (B, Ts)
        return encoder_outputs, decoder_hidden, src_mask

    def forward(
        self,
        input_seq: torch.Tensor,
        input_lengths: torch.Tensor,
        decoder_input: torch.Tensor,
        target_mask: torch.Tensor | None = None,
        teacher_forcing: bool = True,
        encoded: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """input_seq (Ts, B), decoder_input (Tt, B) = SOS + target[:-1] -> logits (Tt, B, V),
        or (N, V) for the N positions where target_mask (Tt, B) is True. target_mask may also be
        those positions' (N,) flat indices t * B + b (`Batch.token_index`), which a GPU can gather
        without waiting for the host to count them.

        With teacher forcing (the fast path) the decoder runs over the whole target in one call.
        Without it, the decoder runs step by step on its own greedy output, as the tutorial's
        non-teacher-forced branch does; only decoder_input[0] (SOS) is read then.

        `encoded`: `encode`'s output for a batch of 1, when every pair has that one query (rerank scoring
        many replies to one message): it is used for every column instead of encoding B copies.
        """
        if encoded is None:
            encoder_outputs, hidden, src_mask = self.encode(input_seq, input_lengths)
        else:
            b = decoder_input.size(1)
            encoder_outputs, hidden, src_mask = encoded  # (Ts, 1, H), (L, 1, H), (1, Ts)
            encoder_outputs, src_mask = encoder_outputs.expand(-1, b, -1), src_mask.expand(b, -1)
            hidden = hidden.expand(-1, b, -1).contiguous()  # (L, B, H)
        if teacher_forcing:
            features, _, _ = self.decoder.features(decoder_input, hidden, encoder_outputs, src_mask)  # (Tt, B, H)
            if target_mask is not None:
                # Skip the output layer (the biggest matmul) on padded target positions.
                features = select_positions(features, target_mask)  # (N, H)
            return self.decoder.out(features)
        steps = []
        step_input = decoder_input[:1]  # (1, B)
        for _ in range(decoder_input.size(0)):
            step_logits, hidden, _ = self.decoder(step_input, hidden, encoder_outputs, src_mask)  # (1, B, V)
            steps.append(step_logits)
            step_input = step_logits.argmax(dim=-1).detach()  # (1, B)
        logits = torch.cat(steps)  # (Tt, B, V)
        return logits if target_mask is None else select_positions(logits, target_mask)
