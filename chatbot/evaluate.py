"""`chatbot evaluate`: an honest report card per decoding strategy.

For each strategy, on the test pairs: BLEU (sacrebleu, against the one reference reply), distinct-1
and distinct-2 (unique n-grams / all n-grams over every reply: low means repetitive), mean reply
length in words, and the share of replies that are one of the ten most frequent ones (a dullness
measure: "i don t know ." everywhere scores high). Perplexity is the model's, teacher-forced on the
same pairs, so it is the same for every strategy. A fixed list of probe prompts shows the replies
side by side. Written as report.json and report.md.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import sacrebleu
import torch
import torch.nn.functional as F
from tqdm import tqdm

from chatbot.checkpoint import atomic_write
from chatbot.decode import STRATEGIES, DecodeSettings
from chatbot.errors import ChatbotError
from chatbot.reply import Chatbot, add_decode_arguments, settings_from_args
from chatbot.tokenizer import EOS_token, PAD_token, SOS_token

# Asked of every model, so reports of different models can be read side by side.
PROBES = [
    "Hello.",
    "How are you?",
    "What is your name?",
    "Where are you going?",
    "Are you hungry?",
    "I love you.",
    "What time is it?",
    "Do you want to dance?",
    "Who are you?",
    "Can you help me?",
    "Where do you live?",
    "Why did you do that?",
    "I'm sorry.",
    "Good night.",
    "What do you want?",
    "Is he dead?",
    "Let's go.",
    "Are you a robot?",
    "Tell me a joke.",
    "Goodbye.",
]


def read_pairs(data: str | Path, split: str = "test") -> list[tuple[str, str]]:
    """Pairs from a prepared dataset folder (its `split`) or from a `query<TAB>response` TSV file."""
    data = Path(data)
    if data.is_file():
        pairs = []
        for line in data.read_text(encoding="utf-8").splitlines():
            query, sep, response = line.partition("\t")
            if sep:
                pairs.append((query, response))
        if not pairs:
            raise ChatbotError(f"{data} holds no query<TAB>response lines")
        return pairs
    from chatbot.prepare import load_prepared

    dataset = load_prepared(data)
    if split not in ("train", "valid", "test"):
        raise ChatbotError(f"unknown split {split!r} (train, valid or test)")
    return getattr(dataset, split)


@torch.inference_mode()
def perplexity(bot: Chatbot, pairs: list[tuple[str, str]], batch_size: int = 64) -> float:
    """exp(mean negative log-likelihood per target token, EOS included), teacher-forced."""
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        src = [bot.query_ids(q) for q, _ in chunk]
        tgt = [bot.tokenizer.encode(r) + [EOS_token] for _, r in chunk]
        input_seq = torch.full((max(map(len, src)), len(chunk)), PAD_token)  # (Ts, B)
        target = torch.full((max(map(len, tgt)), len(chunk)), PAD_token)  # (Tt, B)
        for b, (s, t) in enumerate(zip(src, tgt, strict=True)):
            input_seq[: len(s), b] = torch.tensor(s)
            target[: len(t), b] = torch.tensor(t)
        decoder_input = torch.cat((torch.full((1, len(chunk)), SOS_token), target[:-1]))  # (Tt, B)
        logits = bot.model(input_seq, torch.tensor([len(s) for s in src]), decoder_input)  # (Tt, B, V)
        nll = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD_token, reduction="sum")
        total_nll += float(nll)
        total_tokens += int((target != PAD_token).sum())
    return math.exp(total_nll / max(total_tokens, 1))


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
        # Sampling: a different (but fixed) seed per pair, so the draws are independent yet repeatable.
        s = replace(settings, seed=settings.seed + i) if settings.seed is not None else settings
        replies.append(bot.tokenizer.decode(bot.reply_ids(query, s)))
    references = [response for _, response in pairs]
    bleu = sacrebleu.corpus_bleu(replies, [references], tokenize=bleu_tokenize)
    metrics = {
        "bleu": round(bleu.score, 2),
        "distinct_1": round(distinct_n(replies, 1), 4),
        "distinct_2": round(distinct_n(replies, 2), 4),
        "mean_length": round(sum(len(r.split()) for r in replies) / len(replies), 2),
        "top10_share": round(top10_share(replies), 4),
    }
    return metrics, replies


def evaluate(
    bot: Chatbot,
    pairs: list[tuple[str, str]],
    strategies: list[str],
    settings: DecodeSettings | None = None,
    bleu_tokenize: str = "13a",
) -> dict:
    """The whole report as plain data: model, perplexity, per-strategy metrics, probe replies."""
    settings = settings or DecodeSettings()
    report = {
        "model": bot.description,
        "pairs": len(pairs),
        "perplexity": round(perplexity(bot, pairs), 3),
        "settings": asdict(settings),
        "strategies": {},
        "probes": {p: {} for p in PROBES},
        "examples": [],
    }
    replies_by_strategy = {}
    for strategy in strategies:
        s = replace(settings, strategy=strategy)
        metrics, replies = score_strategy(bot, pairs, s, bleu_tokenize)
        report["strategies"][strategy] = {"perplexity": report["perplexity"], **metrics}
        replies_by_strategy[strategy] = replies
        for probe in PROBES:
            report["probes"][probe][strategy] = bot.reply(probe, s)
    for i, (query, response) in enumerate(pairs[:10]):
        row = {"query": query, "reference": response}
        row.update({s: replies_by_strategy[s][i] for s in strategies})
        report["examples"].append(row)
    return report


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or " "


def to_markdown(report: dict) -> str:
    """The report as Markdown: one metrics table, then the probes side by side."""
    strategies = list(report["strategies"])
    lines = [
        f"Model: {report['model']}  ",
        f"Pairs: {report['pairs']}; perplexity (teacher-forced, same for every strategy): {report['perplexity']}",
        "",
        "| strategy | perplexity | BLEU | distinct-1 | distinct-2 | mean length | top-10 share |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in report["strategies"].items():
        lines.append(
            f"| {name} | {m['perplexity']:.2f} | {m['bleu']:.2f} | {m['distinct_1']:.3f} | {m['distinct_2']:.3f} "
            f"| {m['mean_length']:.2f} | {m['top10_share']:.3f} |"
        )
    lines += ["", "| probe | " + " | ".join(strategies) + " |", "|---" * (len(strategies) + 1) + "|"]
    for probe, replies in report["probes"].items():
        lines.append(f"| {_cell(probe)} | " + " | ".join(_cell(replies[s]) for s in strategies) + " |")
    return "\n".join(lines) + "\n"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped model)")
    parser.add_argument(
        "--data", required=True, help="prepared dataset folder (from `chatbot prepare`) or a query<TAB>response TSV"
    )
    parser.add_argument("--split", default="test", help="which split of a prepared folder: train, valid or test")
    parser.add_argument(
        "--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES, help="decoding strategies to score"
    )
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs")
    parser.add_argument("--out", default="runs/evaluate", help="folder for report.json and report.md")
    parser.add_argument("--bleu-tokenize", default="13a", help="sacrebleu tokenizer (13a; char or zh for Chinese)")
    add_decode_arguments(parser, exclude=("strategy",))


def run(args: argparse.Namespace) -> int:
    bot = Chatbot.from_checkpoint(args.checkpoint)
    pairs = read_pairs(args.data, args.split)[: args.limit]
    if not pairs:
        raise ChatbotError("no pairs to evaluate")
    report = evaluate(bot, pairs, args.strategies, settings_from_args(args), args.bleu_tokenize)
    out = Path(args.out)
    atomic_write(out / "report.json", lambda f: f.write(json.dumps(report, indent=2, ensure_ascii=False).encode()))
    markdown = to_markdown(report)
    atomic_write(out / "report.md", lambda f: f.write(markdown.encode()))
    print(markdown)
    print(f"wrote {out / 'report.json'} and {out / 'report.md'}")
    return 0
