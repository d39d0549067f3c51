"""`chatbot evaluate`: an honest report card per decoding strategy, for one model or several side by side.

For each strategy, on the test pairs: BLEU (sacrebleu, against the one reference reply), distinct-1
and distinct-2 (unique n-grams / all n-grams over every reply: low means repetitive), mean reply
length in words, the share of replies that are one of the ten most frequent ones (a dullness
measure: "i don t know ." everywhere scores high), and hits@1 of 20 (ConvAI2's relevance measure:
the true reply ranked first by the strategy's own score among it and 19 replies of other test
pairs). Perplexity is the model's, teacher-forced on the same pairs, per token and per word (a
reply's summed NLL over its words + 1 for the end of the reply, so word and subword models
compare). The tutorial's 10-prompt conversation and a fixed list of everyday prompts show the
replies. Pairs found in a given training split (`--exclude-train`) are dropped first and counted:
no model is scored on what it (or the model it is compared with) trained on. Written as report.json
and report.md into `--out`, which may only be new, empty, or an earlier report folder (see `chatbot.files`).
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections import Counter
from dataclasses import asdict, replace
from importlib import resources
from pathlib import Path

import sacrebleu
import torch
from tqdm import tqdm

from chatbot.cli import add_checkpoint_flags, int_in
from chatbot.corpus import tsv_pairs
from chatbot.decode import STRATEGIES, DecodeSettings
from chatbot.errors import ChatbotError
from chatbot.files import check_out_dir, replace_dir
from chatbot.reply import Chatbot, add_decode_arguments, settings_from_args
from chatbot.scoring import sequence_log_probs, words

MARKER = ".chatbot-evaluate"  # lists what `chatbot evaluate` wrote, so a later run may replace that and nothing else
HITS_CANDIDATES = 20  # ConvAI2's hits@1/20: the true reply and 19 others


def _probe_file(name: str) -> list[str]:
    return [line for line in resources.files("chatbot.probes").joinpath(name).read_text("utf-8").splitlines() if line]


# Asked of every model, so reports of different models can be read side by side; kept out of training
# (`chatbot prepare --exclude-queries chatbot/probes/tutorial.tsv,chatbot/probes/everyday.txt`).
PROBES = _probe_file("everyday.txt")
# The PyTorch chatbot tutorial's sample conversation: (prompt, the tutorial bot's reply).
TUTORIAL = [tuple(line.split("\t")) for line in _probe_file("tutorial.tsv")]


def read_pairs(data: str | Path, split: str = "test") -> list[tuple[str, str]]:
    """Pairs from a prepared dataset folder (its `split`) or from a `query<TAB>response` TSV file."""
    data = Path(data)
    if data.is_file():
        pairs = [pair for _, pair in tsv_pairs(data, strict=False) if pair is not None]
        if not pairs:
            raise ChatbotError(f"{data} holds no query<TAB>response lines")
        return pairs
    from chatbot.prepare import load_prepared

    dataset = load_prepared(data)
    if split not in ("train", "valid", "test"):
        raise ChatbotError(f"unknown split {split!r} (train, valid or test)")
    return getattr(dataset, split)


def train_pairs(path: str | Path) -> set[tuple[str, str]]:
    """The training pairs of a prepared dataset folder (its train split), or every pair of a TSV file."""
    return set(read_pairs(path, "train"))


def exclude_trained(pairs: list[tuple[str, str]], trained: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """`pairs` without those in `trained` (as text, after normalization)."""
    return [p for p in pairs if p not in trained]


def candidate_sets(n_pairs: int, k: int = HITS_CANDIDATES, seed: int = 0) -> list[list[int]]:
    """For each pair i: [i] + (k - 1) other pair indices drawn without replacement (the true reply first)."""
    if n_pairs < k or k < 2:
        raise ChatbotError(f"hits@1 of {k} needs at least {k} pairs (and k >= 2); got {n_pairs}")
    rng = random.Random(seed)
    sets = []
    for i in range(n_pairs):
        others = rng.sample(range(n_pairs - 1), k - 1)
        sets.append([i] + [j if j < i else j + 1 for j in others])  # skip i itself
    return sets


def hits_at_1(scores: torch.Tensor) -> float:
    """scores (N, k), the true reply in column 0 -> share of rows where it scores highest.

    A tie with c others counts 1 / (c + 1) (what a random tie-break gets on average), so a model that
    scores every candidate alike gets 1 / k, not 0 or 1.
    """
    true = scores[:, :1]
    beaten = (scores[:, 1:] > true).any(dim=1)
    ties = (scores[:, 1:] == true).sum(dim=1)
    return float(torch.where(beaten, 0.0, 1.0 / (ties + 1).double()).mean())


class PairScores:
    """Teacher-forced log-probabilities of each pair's true reply and its hits@1 distractors, computed
    once and shared by every strategy's score."""

    def __init__(self, bot: Chatbot, pairs: list[tuple[str, str]], k: int = HITS_CANDIDATES, seed: int = 0):
        self.sets = candidate_sets(len(pairs), k, seed)
        replies = [r for _, r in pairs]
        src = [bot.query_ids(q) for q, _ in pairs]
        tgt = [bot.target_ids(r) for r in replies]
        flat = [(i, j) for i, row in enumerate(self.sets) for j in row]
        self.forward = sequence_log_probs(bot.model, [src[i] for i, _ in flat], [tgt[j] for _, j in flat]).view(
            len(pairs), k
        )  # (N, k): log p(reply_j | query_i)
        self.tokens = torch.tensor([[len(tgt[j]) for j in row] for row in self.sets])  # (N, k), EOS included
        self.words = torch.tensor([[len(replies[j].split()) for j in row] for row in self.sets])  # (N, k)
        self.backward = None
        if bot.backward is not None:
            b = bot.backward
            b_src = [b.query_ids(r) for r in replies]  # the reply is the backward model's query
            b_tgt = [b.target_ids(q) for q, _ in pairs]
            self.backward = sequence_log_probs(b.model, [b_src[j] for _, j in flat], [b_tgt[i] for i, _ in flat])
            self.backward = self.backward.view(len(pairs), k)  # (N, k): log p(query_i | reply_j)
        self.relevance = None
        if bot.relevance is not None:
            rel = bot.relevance_scores([pairs[i][0] for i, _ in flat], [replies[j] for _, j in flat])
            self.relevance = rel.view(len(pairs), k)  # (N, k): the relevance model's score
        self.overlap = None
        if bot.overlap is not None:
            over = bot.overlap_scores([pairs[i][0] for i, _ in flat], [replies[j] for _, j in flat])
            self.overlap = over.view(len(pairs), k)  # (N, k): tf-idf cosine of query i and reply j
        self.n_words = sum(words(r) for r in replies)

    def perplexity(self) -> tuple[float, float]:
        """(per token, per word) perplexity of the true replies."""
        nll = -float(self.forward[:, 0].sum())
        return _exp(nll / int(self.tokens[:, 0].sum())), _exp(nll / self.n_words)

    def strategy_scores(self, settings: DecodeSettings) -> torch.Tensor:
        """(N, k) scores each candidate gets from the strategy's own ranking rule."""
        from chatbot.scoring import mmi_scores

        if settings.strategy == "beam":
            return self.forward / self.tokens.double() ** settings.length_penalty
        if settings.strategy == "rerank":
            return mmi_scores(
                self.forward,
                self.backward,
                self.words,
                settings.mmi_lambda,
                settings.length_bonus,
                self.relevance,
                settings.relevance_weight,
                self.overlap,
                settings.overlap_weight,
            )
        return self.forward  # greedy and sampling follow the model's own likelihood


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else float("inf")


def distinct_n(replies: list[str], n: int) -> float:
    """Unique word n-grams over all replies / all word n-grams (Li et al., 2016)."""
    grams = [tuple(words[i : i + n]) for words in (r.split() for r in replies) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def top10_share(replies: list[str]) -> float:
    """Share of replies that are one of the ten most frequent replies."""
    return sum(c for _, c in Counter(replies).most_common(10)) / len(replies) if replies else 0.0


def score_strategy(
    bot: Chatbot, pairs: list[tuple[str, str]], settings: DecodeSettings, bleu_tokenize: str = "13a"
) -> tuple[dict, list[str]]:
    """Decode every query with `settings` -> (metrics, replies as normalized text)."""
    replies = []
    for i, (query, _) in enumerate(tqdm(pairs, desc=settings.strategy, unit="pair", leave=False)):
        replies.append(bot.tokenizer.decode(bot.reply_ids(query, _seeded(settings, i))))
    references = [response for _, response in pairs]
    # force: both sides are normalized, space-tokenized text on purpose (sacrebleu warns about that otherwise).
    bleu = sacrebleu.corpus_bleu(replies, [references], tokenize=bleu_tokenize, force=True)
    metrics = {
        "bleu": round(bleu.score, 2),
        "distinct_1": round(distinct_n(replies, 1), 4),
        "distinct_2": round(distinct_n(replies, 2), 4),
        "mean_length": round(sum(len(r.split()) for r in replies) / len(replies), 2),
        "top10_share": round(top10_share(replies), 4),
    }
    return metrics, replies


def _seeded(settings: DecodeSettings, i: int) -> DecodeSettings:
    """Sampling: a different (but fixed) seed per item, so the draws are independent yet repeatable."""
    return replace(settings, seed=settings.seed + i) if settings.seed is not None else settings


def evaluate(
    bot: Chatbot,
    pairs: list[tuple[str, str]],
    strategies: list[str],
    settings: DecodeSettings | None = None,
    bleu_tokenize: str = "13a",
    excluded: int = 0,
) -> dict:
    """The whole report as plain data: model, perplexity, per-strategy metrics, probe replies."""
    settings = settings or DecodeSettings()
    k = min(HITS_CANDIDATES, len(pairs))  # a small test set ranks among all its replies
    scores = PairScores(bot, pairs, k)
    ppl, ppl_word = scores.perplexity()
    report = {
        "model": bot.description,
        "backward": bot.backward.description if bot.backward is not None else None,
        "relevance": bot.relevance is not None,
        "pairs": len(pairs),
        "excluded_as_trained": excluded,
        "hits_candidates": k,
        "perplexity": round(ppl, 3),
        "perplexity_per_word": round(ppl_word, 3),
        "settings": asdict(settings),
        "strategies": {},
        "tutorial": [{"prompt": p, "tutorial": r} for p, r in TUTORIAL],
        "probes": {p: {} for p in PROBES},
        "examples": [],
    }
    replies_by_strategy = {}
    for strategy in strategies:
        s = replace(settings, strategy=strategy)
        if strategy == "rerank" and bot.backward is None and s.mmi_lambda:
            raise ChatbotError("--mmi-lambda weighs a backward model's score: pass --backward PATH (or --mmi-lambda 0)")
        metrics, replies = score_strategy(bot, pairs, s, bleu_tokenize)
        metrics["hits_at_1"] = round(hits_at_1(scores.strategy_scores(s)), 4)
        report["strategies"][strategy] = {"perplexity": report["perplexity"], **metrics}
        replies_by_strategy[strategy] = replies
        for i, row in enumerate(report["tutorial"]):
            row[strategy] = bot.reply(row["prompt"], _seeded(s, i))
        for i, probe in enumerate(PROBES):
            report["probes"][probe][strategy] = bot.reply(probe, _seeded(s, i))
    for i, (query, response) in enumerate(pairs[:10]):
        row = {"query": query, "reference": response}
        row.update({s: replies_by_strategy[s][i] for s in strategies})
        report["examples"].append(row)
    return report


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or " "


METRICS = ("hits_at_1", "bleu", "distinct_1", "distinct_2", "top10_share", "mean_length")


def metrics_table(reports: list[dict]) -> list[str]:
    """One row per (model, strategy): the figures of the report card."""
    lines = [
        f"| model | strategy | hits@1/{reports[0]['hits_candidates']} | ppl/word | ppl/token | BLEU | distinct-1 | distinct-2 | top-10 share | mean length |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, report in enumerate(reports):
        for name, m in report["strategies"].items():
            lines.append(
                f"| {_model_label(report, n)} | {name} | {m['hits_at_1']:.3f} | {report['perplexity_per_word']:.2f} "
                f"| {report['perplexity']:.2f} | {m['bleu']:.2f} | {m['distinct_1']:.3f} | {m['distinct_2']:.3f} "
                f"| {m['top10_share']:.3f} | {m['mean_length']:.2f} |"
            )
    return lines


def _model_label(report: dict, n: int) -> str:
    return report.get("label") or f"model {chr(ord('A') + n)}"


def to_markdown(report: dict | list[dict]) -> str:
    """The report(s) as Markdown: one metrics table, then the tutorial's conversation and the probes."""
    reports = report if isinstance(report, list) else [report]
    lines = []
    for n, r in enumerate(reports):
        lines.append(
            f"{_model_label(r, n)}: {r['model']}"
            + (f" (rerank's backward model: {r['backward']})" if r["backward"] else "")
            + "  "
        )
    first = reports[0]
    lines += [
        f"Pairs: {first['pairs']} ({first['excluded_as_trained']} more were in a training split and were left out); "
        "perplexity is teacher-forced, the same for every strategy",
        "",
        *metrics_table(reports),
    ]
    columns = [(n, s) for n, r in enumerate(reports) for s in r["strategies"]]
    head = " | ".join(f"{_model_label(reports[n], n)} {s}" if len(reports) > 1 else s for n, s in columns)
    lines += [
        "",
        "The tutorial's conversation:",
        "",
        f"| prompt | tutorial bot | {head} |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for i, row in enumerate(first["tutorial"]):
        cells = " | ".join(_cell(reports[n]["tutorial"][i][s]) for n, s in columns)
        lines.append(f"| {_cell(row['prompt'])} | {_cell(row['tutorial'])} | {cells} |")
    lines += ["", "Everyday prompts:", "", f"| prompt | {head} |", "|---" * (len(columns) + 1) + "|"]
    for probe in first["probes"]:
        cells = " | ".join(_cell(reports[n]["probes"][probe][s]) for n, s in columns)
        lines.append(f"| {_cell(probe)} | {cells} |")
    return "\n".join(lines) + "\n"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_flags(parser, many=True, rerank_models=True)
    parser.add_argument(
        "--label", action="append", default=None, help="a name for each --checkpoint in the report (in order)"
    )
    parser.add_argument(
        "--data", required=True, help="prepared dataset folder (from `chatbot prepare`) or a query<TAB>response TSV"
    )
    parser.add_argument("--split", default="test", help="which split of a prepared folder: train, valid or test")
    parser.add_argument(
        "--exclude-train",
        action="append",
        default=[],
        help="a dataset folder (its train split) or TSV whose pairs are dropped from the evaluation pairs; "
        "give each compared model's training data",
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=None,
        choices=STRATEGIES,
        help="decoding strategies to score (default: all; rerank only with a backward model)",
    )
    parser.add_argument(
        "--limit", type=int_in(1), default=None, help="score only the first N pairs (after --exclude-train)"
    )
    parser.add_argument("--out", default="runs/evaluate", help="folder for report.json and report.md")
    parser.add_argument(
        "--bleu-tokenize",
        default="13a",
        choices=list(sacrebleu.BLEU.TOKENIZERS),
        metavar="NAME",
        help=f"sacrebleu tokenizer: {', '.join(sacrebleu.BLEU.TOKENIZERS)} (13a; char or zh for Chinese)",
    )
    add_decode_arguments(parser, exclude=("strategy",))
    parser.set_defaults(seed=0)  # a report card is repeatable: sampling seeds 0, 1, 2, ... per pair


def run(args: argparse.Namespace) -> int:
    checkpoints = args.checkpoint or [None]
    labels = args.label or []
    out = Path(args.out)
    inputs = [*checkpoints, args.backward, args.relevance, args.data, *args.exclude_train]
    check_out_dir(out, MARKER, inputs)  # before minutes of decoding, not after
    pairs = read_pairs(args.data, args.split)
    trained: set[tuple[str, str]] = set()
    for path in args.exclude_train:
        trained |= train_pairs(path)
    kept = exclude_trained(pairs, trained)
    excluded = len(pairs) - len(kept)
    pairs = kept[: args.limit]
    if len(pairs) < 2:
        raise ChatbotError(f"{len(pairs)} pair(s) to evaluate; hits@1 needs at least 2")
    if args.exclude_train:
        print(f"left out {excluded} pairs found in the training data of {', '.join(args.exclude_train)}")
    reports = []
    for n, checkpoint in enumerate(checkpoints):
        bot = Chatbot.from_checkpoint(checkpoint, backward=args.backward, relevance=args.relevance)
        can_rerank = bot.backward is not None or bot.relevance is not None
        strategies = args.strategies or [s for s in STRATEGIES if s != "rerank" or can_rerank]
        if "rerank" in strategies and args.retrieve:
            bot.require_index()
        report = evaluate(bot, pairs, strategies, settings_from_args(args), args.bleu_tokenize, excluded)
        report["label"] = labels[n] if n < len(labels) else _model_label(report, n)
        reports.append(report)
    data = reports[0] if len(reports) == 1 else {"models": reports}
    markdown = to_markdown(reports)

    def build(tmp: Path) -> None:
        (tmp / "report.json").write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        (tmp / "report.md").write_text(markdown, encoding="utf-8")

    replace_dir(out, build, MARKER, inputs)
    print(markdown)
    print(f"wrote {out / 'report.json'} and {out / 'report.md'}")
    return 0
