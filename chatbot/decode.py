"""Search: turning a `DecodingModel`'s next-token distributions into one reply's ids.

Settings and their checks, the bans and filters, greedy search and sampling (`generate_tokens`),
beam search, rerank (sampled candidates ordered by a caller's score), and `decode_stream`, the one
dispatch over the strategies that whole and streamed replies both use. Everything works on token ids;
`chatbot.reply` turns text into ids and back. Any `chatbot.model.DecodingModel` will do (the
training network, its fast CPU form, the exported programs), so every form decodes with this code.

Fixes to the tutorial's `GreedySearchDecoder` (kept in `chatbot.tutorial`): it always ran MAX_LENGTH
steps and cut the reply at EOS afterwards (we stop at EOS), it could emit PAD/SOS/UNK (we never do),
and it had no beam search or sampling.

A returned sequence holds the generated ids *including* the final EOS when the model produced one;
it is at most `max_length` ids long (the tutorial's MAX_LENGTH counts decoding steps the same way).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F

from chatbot.errors import ChatbotError
from chatbot.model.protocol import DecodingModel
from chatbot.tokenizers import EOS_token, PAD_token, SOS_token, UNK_token

# In the chat tab's order: its default first.
STRATEGIES = ("rerank", "sample", "greedy", "beam")
WHOLE_REPLY = ("beam", "rerank")  # strategies that know their reply only at the end (`decode_stream` yields once)
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
    retrieve: int = field(
        default=0,
        metadata={"help": "rerank: also score this many training replies the relevance model finds for the query"},
    )
    # rerank's score weights, picked on the valid split (README, "Quality: the shipped bot").
    mmi_lambda: float = field(
        default=0.0, metadata={"help": "rerank: weight of a backward model's log p(query | reply) (0 = not used)"}
    )
    length_bonus: float = field(default=1.0, metadata={"help": "rerank: score added per word of the reply"})
    relevance_weight: float = field(
        default=48.0, metadata={"help": "rerank: weight of the relevance model's score (0 = not used)"}
    )
    overlap_weight: float = field(
        default=256.0, metadata={"help": "rerank: weight of the query and reply's tf-idf word overlap (0 = not used)"}
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
            math.isfinite(x)
            for x in (
                self.length_penalty,
                self.mmi_lambda,
                self.length_bonus,
                self.relevance_weight,
                self.overlap_weight,
            )
        ):
            problems.append(
                "length_penalty, mmi_lambda, length_bonus, relevance_weight and overlap_weight must be finite numbers"
            )
        if self.candidates < 1:
            problems.append("candidates must be at least 1")
        if self.retrieve < 0:
            problems.append("retrieve must be >= 0")
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
        logits = logits.masked_fill(outside_nucleus(logits, top_p), -math.inf)
    return logits


def outside_nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Top-p's drop mask: logits (K, V) -> (K, V) True where a token lies outside the smallest set of the
    likeliest tokens that holds `top_p` of the mass (a token is dropped when the tokens before it already
    hold top_p; the likeliest always stays)."""
    _, top_index, drop_top = nucleus(logits.softmax(dim=-1), top_p)
    drop = torch.ones_like(logits, dtype=torch.bool)
    return drop.scatter_(-1, top_index, drop_top)


def nucleus(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """probs (K, V) -> the likeliest k tokens of each row, likeliest first: their probs (K, k), ids (K, k),
    and (K, k) True for those top-p drops; every token after the k is dropped too.

    Only the likeliest k tokens are ranked, k doubling from 64 until every row's set ends inside them: the
    same set as sorting the whole vocabulary, without sorting 10,000 tokens at every step.
    """
    k = min(64, probs.size(-1))
    while True:
        top_probs, top_index = probs.topk(k, dim=-1)  # (K, k), likeliest first
        drop_top = (top_probs.cumsum(dim=-1) - top_probs) >= top_p  # (K, k)
        if k == probs.size(-1) or bool(drop_top[:, -1].all()):  # every row's set ended inside the top k
            return top_probs, top_index, drop_top
        k = min(2 * k, probs.size(-1))


def draw(scores: torch.Tensor, settings: DecodeSettings, generator: torch.Generator) -> torch.Tensor:
    """One token per row from `filter_logits`'s distribution: scores (K, V) -> ids (K,).

    With top-p the draw is among the nucleus's few tokens (their probabilities renormalized, which is
    what the filtered softmax is), not over the whole vocabulary: the same distribution, and a draw over
    12,000 tokens was a fifth of rerank's time.
    """
    logits = filter_logits(scores, settings.temperature, settings.top_k)  # temperature and top-k
    if settings.top_p >= 1.0:
        return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)[:, 0]
    top_probs, top_index, drop_top = nucleus(logits.softmax(dim=-1), settings.top_p)  # (K, k) each
    pick = torch.multinomial(top_probs.masked_fill(drop_top, 0.0), 1, generator=generator)  # (K, 1) in [0, k)
    return top_index.gather(1, pick)[:, 0]


@torch.inference_mode()
def generate_tokens(
    model: DecodingModel,
    src_ids: list[int],
    max_length: int,
    settings: DecodeSettings | None = None,
) -> Iterator[int]:
    """Greedy search or sampling, one id at a time; stops after EOS or `max_length` ids.

    Greedy takes the argmax of the model's logits (through the model's `greedy_step` where it has one,
    as `InferenceSeq2Seq` does); sampling draws from the filtered distribution with
    its own `torch.Generator` seeded from `settings.seed`, so the global RNG is untouched.
    """
    settings = settings or DecodeSettings()
    device = model.device
    sampling = settings.strategy == "sample"
    generator = None
    if sampling:
        generator = make_generator(settings.seed, device)
    input_seq, lengths = source_tensors(src_ids, device)
    encoder_outputs, hidden, src_mask = model.encode(input_seq, lengths)
    token = torch.full((1, 1), SOS_token, dtype=torch.long, device=device)  # (1, 1)
    generated: list[int] = []
    for _ in range(max_length):
        history = torch.tensor([generated], dtype=torch.long, device=device)  # (1, t)
        ban = functools.partial(
            ban_tokens,
            generated=history,
            min_length=settings.min_length,
            no_repeat_ngram_size=settings.no_repeat_ngram_size,
        )
        if not sampling and hasattr(model, "greedy_step"):  # the fast CPU form: the same argmax, sooner
            token, hidden = model.greedy_step(token, hidden, encoder_outputs, src_mask, ban)
        else:
            logits, hidden, _ = model.decoder(token, hidden, encoder_outputs, src_mask)
            scores = logits[0].clone()  # (1, V); clone: exported programs may hand back read-only buffers
            ban(scores)
            if sampling:
                token = draw(scores, settings, generator).unsqueeze(0)  # (1, 1)
            else:
                token = scores.argmax(dim=-1, keepdim=True)  # (1, 1)
        next_id = int(token)
        generated.append(next_id)
        yield next_id
        if next_id == EOS_token:
            return


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
    model: DecodingModel,
    src_ids: list[int],
    max_length: int,
    settings: DecodeSettings,
    n: int,
    encoded: tuple | None = None,
) -> tuple[list[list[int]], list[float]]:
    """`n` replies sampled at once (one batch of n rows), each until its EOS or `max_length` ids, and each
    reply's log p(reply | query) under the model itself (its raw logits: no temperature, filter or ban).

    The same filters as `generate_tokens` (temperature, top-k, top-p, bans) choose the tokens; the rows
    share one encoding of the query (`encoded`, `model.encode`'s output, when the caller has it) and one
    generator seeded from `settings.seed`.
    """
    device = model.device
    generator = make_generator(settings.seed, device)
    if encoded is None:
        encoded = model.encode(*source_tensors(src_ids, device))
    encoder_outputs, hidden, src_mask = encoded  # (Ts, 1, H), (L, 1, H), (1, Ts)
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
        log_normalizer = logits[0].logsumexp(dim=-1)  # (k,): the model's own distribution is logits - this
        ban_tokens(scores, generated, settings.min_length, settings.no_repeat_ngram_size)
        next_ids = draw(scores, settings, generator)  # (k,)
        log_prob += (logits[0].gather(1, next_ids.unsqueeze(1))[:, 0] - log_normalizer).double()
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
    model: DecodingModel,
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
    device = model.device
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
        # as Python numbers once: reading tensor elements one by one costs more than the step's arithmetic
        ranked = zip(top_log_prob.tolist(), top_beam.tolist(), top_token.tolist(), strict=True)
        for rank, (lp, beam, token) in enumerate(ranked):
            if lp == -math.inf:
                break
            if token == EOS_token:
                if rank < K:  # an EOS ranked below the beam width would not have survived this step
                    tokens = generated[beam].tolist() + [EOS_token]
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


# rerank's score: candidate replies (ids), the log p(reply | query) sampling already knows for each (None
# for a reply cut at max_length) and the query's encoding (to score the others) -> one score per reply,
# higher is better.
Scorer = Callable[[list[list[int]], list[float | None], tuple], list[float]]


def rerank(
    model: DecodingModel,
    src_ids: list[int],
    max_length: int,
    settings: DecodeSettings,
    scorer: Scorer,
    extra: Sequence[list[int]] = (),
) -> list[tuple[list[int], float]]:
    """Sample `settings.candidates` replies, score each distinct one with `scorer`, best first: [(ids, score)].

    `extra`: more candidates (ids ending in EOS; `chatbot.retrieval`'s replies) scored with the samples.
    A reply drawn twice is scored once; ties keep the order of the draw, then of `extra`.
    """
    with torch.inference_mode():  # encoded once: the samples are drawn from it and the rest scored with it
        encoded = model.encode(*source_tensors(src_ids, model.device))
    drawn, log_probs = sample_candidates(model, src_ids, max_length, settings, settings.candidates, encoded)
    first: dict[tuple[int, ...], float | None] = {}
    for ids, lp in zip(drawn, log_probs, strict=True):
        first.setdefault(tuple(ids), lp if ids and ids[-1] == EOS_token else None)
    for ids in extra:
        first.setdefault(tuple(ids), None)  # the scorer computes its log p(reply | query)
    replies = [list(ids) for ids in first]
    scores = scorer(replies, list(first.values()), encoded)
    order = sorted(range(len(replies)), key=lambda i: -scores[i])  # stable
    return [(replies[i], scores[i]) for i in order]


def decode_stream(
    model: DecodingModel,
    src_ids: list[int],
    max_length: int,
    settings: DecodeSettings,
    scorer: Scorer | None = None,
    extra: Sequence[list[int]] = (),
) -> Iterator[list[int]]:
    """The one dispatch over the strategies: the reply's ids so far (EOS included once produced).

    Greedy and sampling yield after every token; beam search and rerank know their reply only at the
    end, so they yield it once. Rerank needs `scorer` (`chatbot.reply.Chatbot` passes its MMI score).
    """
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
        yield hypotheses[0].tokens if hypotheses else []
    elif settings.strategy == "rerank":
        if scorer is None:
            raise ChatbotError("strategy rerank needs a scorer (use chatbot.reply.Chatbot, which has one)")
        yield rerank(model, src_ids, max_length, settings, scorer, extra)[0][0]
    else:
        ids: list[int] = []
        for token in generate_tokens(model, src_ids, max_length, settings):
            ids.append(token)
            yield list(ids)


def decode(
    model: DecodingModel,
    src_ids: list[int],
    max_length: int,
    settings: DecodeSettings,
    scorer: Scorer | None = None,
    extra: Sequence[list[int]] = (),
) -> list[int]:
    """One reply's ids (EOS included if produced) by the strategy in `settings`: `decode_stream`'s last
    (`extra`: rerank's candidates besides its samples)."""
    ids: list[int] = []
    for ids in decode_stream(model, src_ids, max_length, settings, scorer, extra):  # noqa: B007 - the last one is the reply
        pass
    return ids
