"""Decoding one reply: greedy search, beam search and sampling over a `Seq2Seq`.

Everything here works on token ids; `chatbot.reply` turns text into ids and back. Each function
takes any `model` with the two calls of `chatbot.model.Seq2Seq` it needs, so the exported programs
of `chatbot.export` decode with the very same code:
    model.encode(input_seq (Ts, 1), lengths (1,)) -> encoder_outputs (Ts, 1, H), hidden (L, 1, H), src_mask (1, Ts)
    model.decoder(input (1, K), hidden (L, K, H), encoder_outputs (Ts, K, H), src_mask (K, Ts))
        -> logits (1, K, V), hidden (L, K, H), attention (K, 1, Ts)

Fixes to the tutorial's `GreedySearchDecoder`: it always ran MAX_LENGTH steps and cut the reply at
EOS afterwards (we stop at EOS), it could emit PAD/SOS/UNK (we never do), and it had no beam
search or sampling.

A returned sequence holds the generated ids *including* the final EOS when the model produced one;
it is at most `max_length` ids long (the tutorial's MAX_LENGTH counts decoding steps the same way).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F

from chatbot.errors import ChatbotError
from chatbot.tokenizer import EOS_token, PAD_token, SOS_token, UNK_token

STRATEGIES = ("greedy", "beam", "sample", "rerank")
# Never generated: padding, a second start token, or "UNK" shown to the user.
NEVER_GENERATED = [PAD_token, SOS_token, UNK_token]


@dataclass
class DecodeSettings:
    """How to turn the model's next-token distribution into a reply. Defaults: the tutorial's greedy search."""

    strategy: str = field(
        default="greedy",
        metadata={"help": "greedy, beam, sample, or rerank (draw --candidates samples, keep the best MMI score)"},
    )
    beam_width: int = field(default=5, metadata={"help": "beams kept by beam search"})
    temperature: float = field(default=1.0, metadata={"help": "sampling: divide logits by this (<1 sharper)"})
    top_k: int = field(default=0, metadata={"help": "sampling: keep only the k likeliest tokens (0 = all)"})
    top_p: float = field(default=1.0, metadata={"help": "sampling: keep the smallest set with this much mass"})
    length_penalty: float = field(
        default=1.0, metadata={"help": "beam: score = log-prob / length**this (0 = raw log-prob)"}
    )
    # Not in the tutorial: 1 forbids EOS as the first token, so a reply is never empty.
    min_length: int = field(default=1, metadata={"help": "tokens before EOS is allowed"})
    no_repeat_ngram_size: int = field(default=0, metadata={"help": "never repeat an n-gram of this size (0 = off)"})
    max_length: int | None = field(
        default=None, metadata={"help": "most tokens per reply, EOS included (default: the checkpoint's)"}
    )
    # fix: a fixed default seed gave every turn of a chat the same draw; None draws a fresh seed each reply.
    seed: int | None = field(default=None, metadata={"help": "sampling seed: same seed, same reply (default: fresh)"})
    candidates: int = field(default=8, metadata={"help": "rerank: replies sampled before picking the best"})
    # rerank's score weights, picked on the valid split (README, "Picking rerank's settings").
    mmi_lambda: float = field(
        default=1.0, metadata={"help": "rerank: weight of the backward model's log p(query | reply)"}
    )
    length_bonus: float = field(default=0.5, metadata={"help": "rerank: score added per word of the reply"})
    relevance_weight: float = field(
        default=16.0, metadata={"help": "rerank: weight of the relevance model's score (0 = not used)"}
    )

    def __post_init__(self) -> None:
        problems = []
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        if self.beam_width < 1:
            problems.append("beam_width must be at least 1")
        if not self.temperature > 0:
            problems.append("temperature must be > 0 (use strategy greedy for temperature 0)")
        if self.top_k < 0:
            problems.append("top_k must be >= 0")
        if not 0 < self.top_p <= 1:
            problems.append("top_p must be in (0, 1]")
        if self.min_length < 0 or self.no_repeat_ngram_size < 0:
            problems.append("min_length and no_repeat_ngram_size must be >= 0")
        if not all(
            math.isfinite(x) for x in (self.length_penalty, self.mmi_lambda, self.length_bonus, self.relevance_weight)
        ):
            problems.append("length_penalty, mmi_lambda, length_bonus and relevance_weight must be finite numbers")
        if self.candidates < 1:
            problems.append("candidates must be at least 1")
        if self.max_length is not None and self.max_length < 1:
            problems.append("max_length must be at least 1")
        if problems:
            raise ChatbotError("; ".join(problems))


def decode_fields() -> list:
    """The `DecodeSettings` fields, for generating command-line flags."""
    return list(fields(DecodeSettings))


@dataclass
class Hypothesis:
    """One finished beam: ids (EOS included if produced), summed log-prob, length-penalised score."""

    tokens: list[int]
    log_prob: float
    score: float


def source_tensors(src_ids: list[int], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids (already ending in EOS) -> input_seq (Ts, 1) on `device`, lengths (1,) on the CPU."""
    input_seq = torch.tensor(src_ids, dtype=torch.long, device=device).unsqueeze(1)  # (Ts, 1)
    return input_seq, torch.tensor([len(src_ids)])


def model_device(model) -> torch.device:
    """Where the model's tensors live (`InferenceSeq2Seq.device`; the CPU for anything else)."""
    return getattr(model, "device", torch.device("cpu"))


def ban_tokens(scores: torch.Tensor, generated: torch.Tensor, min_length: int, no_repeat_ngram_size: int) -> None:
    """Set to -inf (in place) every next token the rules forbid. scores (K, V), generated (K, t) ids so far."""
    scores[:, NEVER_GENERATED] = -math.inf
    t = generated.size(1)
    if t < min_length:
        scores[:, EOS_token] = -math.inf
    n = no_repeat_ngram_size
    if n > 0 and t >= n:
        # Every n-gram already generated, per beam, compared with the last n-1 tokens: all beams at once.
        # (For n = 1 the comparison is over an empty prefix, so every token seen so far is banned.)
        grams = generated.unfold(1, n, 1)  # (K, t-n+1, n)
        last = generated[:, t - n + 1 :]  # (K, n-1)
        match = (grams[:, :, :-1] == last.unsqueeze(1)).all(dim=2)  # (K, t-n+1)
        rows, cols = match.nonzero(as_tuple=True)
        scores[rows, grams[rows, cols, -1]] = -math.inf


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) filtering. logits (K, V) -> logits (K, V), cut ones -inf."""
    logits = logits / temperature
    if 0 < top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (K, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens before it already hold top_p of the mass; the likeliest always stays.
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -math.inf)
    return logits


@torch.inference_mode()
def generate_tokens(
    model,
    src_ids: list[int],
    max_length: int,
    settings: DecodeSettings | None = None,
) -> Iterator[int]:
    """Greedy search or sampling, one id at a time; stops after EOS or `max_length` ids.

    Greedy takes the argmax of the model's logits; sampling draws from the filtered distribution with
    its own `torch.Generator` seeded from `settings.seed`, so the global RNG is untouched.
    """
    settings = settings or DecodeSettings()
    device = model_device(model)
    sampling = settings.strategy == "sample"
    generator = None
    if sampling:
        generator = make_generator(settings.seed, device)
    input_seq, lengths = source_tensors(src_ids, device)
    encoder_outputs, hidden, src_mask = model.encode(input_seq, lengths)
    token = torch.full((1, 1), SOS_token, dtype=torch.long, device=device)  # (1, 1)
    generated: list[int] = []
    for _ in range(max_length):
        logits, hidden, _ = model.decoder(token, hidden, encoder_outputs, src_mask)
        scores = logits[0].clone()  # (1, V); clone: exported programs may hand back read-only buffers
        ban_tokens(
            scores,
            torch.tensor([generated], dtype=torch.long, device=device),
            settings.min_length,
            settings.no_repeat_ngram_size,
        )
        if sampling:
            scores = filter_logits(scores, settings.temperature, settings.top_k, settings.top_p)
            token = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator)  # (1, 1)
        else:
            token = scores.argmax(dim=-1, keepdim=True)  # (1, 1)
        next_id = int(token)
        generated.append(next_id)
        yield next_id
        if next_id == EOS_token:
            return


def greedy_search(
    model, src_ids: list[int], max_length: int, min_length: int = 0, no_repeat_ngram_size: int = 0
) -> list[int]:
    """The likeliest next id at every step, until EOS or `max_length` ids."""
    settings = DecodeSettings("greedy", min_length=min_length, no_repeat_ngram_size=no_repeat_ngram_size)
    return list(generate_tokens(model, src_ids, max_length, settings))


def sample(model, src_ids: list[int], max_length: int, settings: DecodeSettings) -> list[int]:
    """One reply drawn from the (temperature, top-k, top-p filtered) distribution, seeded by `settings.seed`."""
    return list(generate_tokens(model, src_ids, max_length, settings))


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded with `seed`, or with fresh entropy when it is None (the global RNG is untouched)."""
    generator = torch.Generator(device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


@torch.inference_mode()
def sample_candidates(
    model, src_ids: list[int], max_length: int, settings: DecodeSettings, n: int
) -> tuple[list[list[int]], list[float]]:
    """`n` replies sampled at once (one batch of n rows), each until its EOS or `max_length` ids, and each
    reply's log p(reply | query) under the model itself (its raw logits: no temperature, filter or ban).

    The same filters as `generate_tokens` (temperature, top-k, top-p, bans) choose the tokens; the rows
    share one encoding of the query and one generator seeded from `settings.seed`.
    """
    device = model_device(model)
    generator = make_generator(settings.seed, device)
    input_seq, lengths = source_tensors(src_ids, device)
    encoder_outputs, hidden, src_mask = model.encode(input_seq, lengths)  # (Ts, 1, H), (L, 1, H), (1, Ts)
    encoder_outputs, src_mask = encoder_outputs.expand(-1, n, -1), src_mask.expand(n, -1)  # (Ts, n, H), (n, Ts)
    hidden = hidden.expand(-1, n, -1).contiguous()  # (L, n, H)
    token = torch.full((1, n), SOS_token, dtype=torch.long, device=device)  # (1, k): the k live rows
    generated = torch.empty(n, 0, dtype=torch.long, device=device)  # (k, t)
    live = torch.arange(n, device=device)  # which of the n replies each live row is
    replies: list[list[int]] = [[] for _ in range(n)]
    log_probs = [0.0] * n
    log_prob = torch.zeros(n, dtype=torch.float64, device=device)  # (k,)
    for _ in range(max_length):
        logits, hidden, _ = model.decoder(token, hidden, encoder_outputs, src_mask)  # (1, k, V)
        scores = logits[0].clone()  # (k, V)
        model_log_probs = F.log_softmax(logits[0].double(), dim=-1)  # (k, V): the model's own distribution
        ban_tokens(scores, generated, settings.min_length, settings.no_repeat_ngram_size)
        scores = filter_logits(scores, settings.temperature, settings.top_k, settings.top_p)
        next_ids = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator)[:, 0]  # (k,)
        log_prob += model_log_probs.gather(1, next_ids.unsqueeze(1))[:, 0]
        generated = torch.cat((generated, next_ids.unsqueeze(1)), dim=1)
        finished = next_ids == EOS_token  # (k,)
        if bool(finished.any()):
            for row in finished.nonzero()[:, 0].tolist():
                replies[int(live[row])], log_probs[int(live[row])] = generated[row].tolist(), float(log_prob[row])
            # A finished reply leaves the batch, so the steps left cost only what the live rows need.
            keep = (~finished).nonzero()[:, 0]
            if keep.numel() == 0:
                break
            live, generated, log_prob, next_ids = live[keep], generated[keep], log_prob[keep], next_ids[keep]
            hidden = hidden[:, keep]
            encoder_outputs, src_mask = encoder_outputs[:, keep], src_mask[keep]
        token = next_ids.unsqueeze(0)
    else:  # rows still live at max_length end without EOS
        for row in range(live.numel()):
            replies[int(live[row])], log_probs[int(live[row])] = generated[row].tolist(), float(log_prob[row])
    return replies, log_probs


def length_normalise(log_prob: float, length: int, length_penalty: float) -> float:
    """A hypothesis's score: its log-probability divided by length**length_penalty."""
    return log_prob / (length**length_penalty)


@torch.inference_mode()
def beam_search(
    model,
    src_ids: list[int],
    max_length: int,
    beam_width: int = 5,
    length_penalty: float = 1.0,
    min_length: int = 0,
    no_repeat_ngram_size: int = 0,
) -> list[Hypothesis]:
    """Beam search with all live beams in one batch; returns up to `beam_width` hypotheses, best score first.

    At each step the 2*beam_width best extensions are ranked; an EOS among the first beam_width
    finishes a hypothesis, and the best beam_width non-EOS extensions stay live, so the beam never
    thins out. The search stops once beam_width hypotheses are finished and no live beam could still
    beat the worst of them (log-probs only fall, so a live beam's best possible score is bounded):
    the result is the same as running to `max_length`, usually in fewer steps.
    """
    K = beam_width
    device = model_device(model)
    input_seq, lengths = source_tensors(src_ids, device)
    encoder_outputs, hidden, src_mask = model.encode(input_seq, lengths)  # (Ts, 1, H), (L, 1, H), (1, Ts)
    generated = torch.empty(1, 0, dtype=torch.long, device=device)  # (k, t): one live beam to start with
    beam_log_prob = torch.zeros(1, device=device)  # (k,)
    last = torch.full((1, 1), SOS_token, dtype=torch.long, device=device)  # (1, k)
    finished: list[Hypothesis] = []
    for t in range(max_length):
        k = generated.size(0)
        logits, hidden, _ = model.decoder(
            last, hidden, encoder_outputs.expand(-1, k, -1), src_mask.expand(k, -1)
        )  # (1, k, V), (L, k, H)
        log_probs = F.log_softmax(logits[0], dim=-1)  # (k, V)
        ban_tokens(log_probs, generated, min_length, no_repeat_ngram_size)
        V = log_probs.size(1)
        candidates = (beam_log_prob.unsqueeze(1) + log_probs).view(-1)  # (k*V,)
        top_log_prob, top_index = candidates.topk(min(2 * K, candidates.numel()))  # best first
        top_beam, top_token = top_index // V, top_index % V
        keep_live = []
        for rank in range(top_index.numel()):
            lp = float(top_log_prob[rank])
            if lp == -math.inf:
                break
            if int(top_token[rank]) == EOS_token:
                if rank < K:  # an EOS ranked below the beam width would not have survived this step
                    tokens = generated[int(top_beam[rank])].tolist() + [EOS_token]
                    finished.append(Hypothesis(tokens, lp, length_normalise(lp, len(tokens), length_penalty)))
            elif len(keep_live) < K:
                keep_live.append(rank)
        if not keep_live:
            break
        keep = torch.tensor(keep_live, device=device)
        beams = top_beam[keep]
        generated = torch.cat((generated[beams], top_token[keep].unsqueeze(1)), dim=1)  # (k', t+1)
        beam_log_prob = top_log_prob[keep]
        hidden = hidden[:, beams]
        last = top_token[keep].unsqueeze(0)  # (1, k')
        if len(finished) >= K and t + 1 < max_length:
            finished.sort(key=lambda h: h.score, reverse=True)
            del finished[K:]
            # Best score any live beam could still reach: its log-prob only falls, its length grows.
            best_divisor = max((t + 2) ** length_penalty, max_length**length_penalty)
            if float(beam_log_prob.max()) / best_divisor <= finished[-1].score:
                generated, beam_log_prob = generated[:0], beam_log_prob[:0]
                break
    # Beams still live at max_length end without EOS; they compete as they are.
    for row, lp in zip(generated.tolist(), beam_log_prob.tolist(), strict=True):
        if len(row) == max_length:
            finished.append(Hypothesis(row, lp, length_normalise(lp, len(row), length_penalty)))
    finished.sort(key=lambda h: h.score, reverse=True)
    return finished[:K]


def decode(model, src_ids: list[int], max_length: int, settings: DecodeSettings) -> list[int]:
    """One reply's ids (EOS included if produced) by the strategy in `settings`."""
    if settings.strategy == "beam":
        hypotheses = beam_search(
            model,
            src_ids,
            max_length,
            settings.beam_width,
            settings.length_penalty,
            settings.min_length,
            settings.no_repeat_ngram_size,
        )
        return hypotheses[0].tokens if hypotheses else []
    return list(generate_tokens(model, src_ids, max_length, settings))


class DecoderStep(torch.nn.Module):
    """One step of `LuongAttnDecoderRNN` for inference, with its matrices stored transposed.

    The same math as the model's decoder (nn.GRU's documented cell equations, then the model's own
    `Attn`, concat and output layers), but every product is `addmm(bias, x, W^T)` on a contiguous
    transposed copy. At batch 1 nn.Linear and nn.GRU take a matrix-vector path that measured about
    3x slower on this project's CPU (AMD EPYC, MKL) than the matrix-matrix one used here. Weights are
    copied when this is built: rebuild it after changing the model. No dropout (inference only).
    """

    def __init__(self, decoder):
        super().__init__()
        self.embedding = decoder.embedding
        self.attn = decoder.attn
        self.n_layers = decoder.n_layers
        gru = decoder.gru
        for layer in range(self.n_layers):
            self.register_buffer(f"w_ih_{layer}", getattr(gru, f"weight_ih_l{layer}").detach().T.contiguous())
            self.register_buffer(f"w_hh_{layer}", getattr(gru, f"weight_hh_l{layer}").detach().T.contiguous())
            self.register_buffer(f"b_ih_{layer}", getattr(gru, f"bias_ih_l{layer}").detach().clone())
            self.register_buffer(f"b_hh_{layer}", getattr(gru, f"bias_hh_l{layer}").detach().clone())
        self.register_buffer("w_concat", decoder.concat.weight.detach().T.contiguous())  # (2H, H)
        self.register_buffer("b_concat", decoder.concat.bias.detach().clone())
        self.register_buffer("w_out", decoder.out.weight.detach().T.contiguous())  # (H, V)
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
            x_r, x_z, x_n = gates_x.chunk(3, dim=1)
            h_r, h_z, h_n = gates_h.chunk(3, dim=1)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
            x = n + z * (h - n)  # (1 - z) * n + z * h
            hidden.append(x)
        query = x.unsqueeze(1)  # (K, 1, H)
        keys = encoder_outputs.transpose(0, 1)  # (K, Ts, H)
        attn_weights = self.attn(query, keys, src_mask)  # (K, 1, Ts)
        context = (attn_weights @ keys).squeeze(1)  # (K, H)
        concat_output = torch.tanh(torch.addmm(self.b_concat, torch.cat((x, context), dim=1), self.w_concat))
        logits = torch.addmm(self.b_out, concat_output, self.w_out)  # (K, V)
        return logits.unsqueeze(0), torch.stack(hidden), attn_weights


class QueryEncoder(torch.nn.Module):
    """`Seq2Seq.encode` for one unpadded query (batch 1), with its matrices stored transposed.

    The same bidirectional GRU math as `EncoderRNN` (no padding, so no packing needed): the input
    projections of all time steps are one matrix product per direction, and each recurrent step runs
    both directions in one batched product on transposed weights (the faster path, as in `DecoderStep`).
    """

    def __init__(self, model):
        super().__init__()
        gru = model.encoder.gru
        self.embedding = model.embedding
        self.n_layers = gru.num_layers
        self.decoder_n_layers = model.config.decoder_n_layers
        for layer in range(self.n_layers):
            names = [f"l{layer}", f"l{layer}_reverse"]  # forward, backward direction
            for i, name in enumerate(names):
                self.register_buffer(f"w_ih_{layer}_{i}", getattr(gru, f"weight_ih_{name}").detach().T.contiguous())
                self.register_buffer(f"b_ih_{layer}_{i}", getattr(gru, f"bias_ih_{name}").detach().clone())
            w_hh = torch.stack([getattr(gru, f"weight_hh_{n}").detach().T for n in names])  # (2, H, 3H)
            b_hh = torch.stack([getattr(gru, f"bias_hh_{n}").detach() for n in names]).unsqueeze(1)  # (2, 1, 3H)
            self.register_buffer(f"w_hh_{layer}", w_hh.contiguous())
            self.register_buffer(f"b_hh_{layer}", b_hh.contiguous())

    def forward(self, input_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_seq (Ts, 1) -> encoder_outputs (Ts, 1, H), decoder_hidden (L_dec, 1, H), src_mask (1, Ts)."""
        x = self.embedding(input_seq[:, 0])  # (Ts, H)
        Ts = x.size(0)
        finals = []
        for layer in range(self.n_layers):
            gates_f = torch.addmm(getattr(self, f"b_ih_{layer}_0"), x, getattr(self, f"w_ih_{layer}_0"))  # (Ts, 3H)
            gates_b = torch.addmm(getattr(self, f"b_ih_{layer}_1"), x, getattr(self, f"w_ih_{layer}_1"))
            gates_x = torch.stack((gates_f, gates_b.flip(0)), dim=1).unsqueeze(
                2
            )  # (Ts, 2, 1, 3H); backward reads t reversed
            w_hh, b_hh = getattr(self, f"w_hh_{layer}"), getattr(self, f"b_hh_{layer}")
            h = x.new_zeros(2, 1, w_hh.size(1))  # (2, 1, H): both directions start from zeros
            steps = []
            for t in range(Ts):
                gates_h = torch.baddbmm(b_hh, h, w_hh)  # (2, 1, 3H)
                x_r, x_z, x_n = gates_x[t].chunk(3, dim=2)
                h_r, h_z, h_n = gates_h.chunk(3, dim=2)
                r = torch.sigmoid(x_r + h_r)
                z = torch.sigmoid(x_z + h_z)
                n = torch.tanh(x_n + r * h_n)
                h = n + z * (h - n)
                steps.append(h)
            out = torch.stack(steps)  # (Ts, 2, 1, H)
            forward, backward = out[:, 0, 0], out[:, 1, 0].flip(0)  # (Ts, H) each, in source order
            x = torch.cat((forward, backward), dim=1)  # (Ts, 2H): the next layer's input
            finals.append(h.sum(dim=0))  # (1, H): the two directions' final states summed, as Seq2Seq.encode
        encoder_outputs = (forward + backward).unsqueeze(1)  # (Ts, 1, H)
        decoder_hidden = torch.stack(finals[self.n_layers - self.decoder_n_layers :])  # (L_dec, 1, H)
        return encoder_outputs, decoder_hidden, (input_seq != PAD_token).transpose(0, 1)


class InferenceSeq2Seq:
    """A `Seq2Seq` for decoding one query: `QueryEncoder` as `encode`, `DecoderStep` as `decoder`."""

    def __init__(self, model):
        self.model = model
        self.query_encoder = QueryEncoder(model)
        self.decoder = DecoderStep(model.decoder)
        self.device = next(model.parameters()).device

    def encode(self, input_seq: torch.Tensor, input_lengths: torch.Tensor):
        """input_seq (Ts, B), input_lengths (B,) -> as `Seq2Seq.encode`; one query takes the fast path."""
        if input_seq.size(1) == 1 and int(input_lengths[0]) == input_seq.size(0):
            return self.query_encoder(input_seq)
        return self.model.encode(input_seq, input_lengths)


class GreedySearchDecoder(torch.nn.Module):
    """The tutorial's greedy decoder, kept as the reference for tests and `scripts/bench_decode.py`.

    As in the tutorial it always runs `max_length` steps (no stop at EOS), takes the max of a softmax
    at each step, and grows its outputs with `torch.cat`; it may emit PAD/SOS/UNK.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_seq: torch.Tensor, input_length: torch.Tensor, max_length: int):
        """input_seq (Ts, 1), input_length (1,) -> all_tokens (max_length,), all_scores (max_length,)."""
        encoder_outputs, decoder_hidden, src_mask = self.model.encode(input_seq, input_length)
        decoder_input = torch.ones(1, 1, dtype=torch.long) * SOS_token
        all_tokens = torch.zeros([0], dtype=torch.long)
        all_scores = torch.zeros([0])
        for _ in range(max_length):
            logits, decoder_hidden, _ = self.model.decoder(decoder_input, decoder_hidden, encoder_outputs, src_mask)
            decoder_output = F.softmax(logits[0], dim=1)  # the tutorial's decoder returned probabilities
            decoder_scores, decoder_input = torch.max(decoder_output, dim=1)
            all_tokens = torch.cat((all_tokens, decoder_input), dim=0)
            all_scores = torch.cat((all_scores, decoder_scores), dim=0)
            decoder_input = torch.unsqueeze(decoder_input, 0)
        return all_tokens, all_scores
