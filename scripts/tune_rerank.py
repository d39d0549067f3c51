"""Pick rerank's settings on the valid split: hits@1/20 over a (lambda, gamma, kappa, mu) grid, then the replies'
variety (distinct-2, top-10 share, mean length) for sampling settings, all on pairs no model trained on.

    python scripts/tune_rerank.py corpus/prepared/w20 --checkpoint runs/fwd/best.pt --backward runs/bwd/best.pt

hits@1 depends only on the score (its weights), not on how candidates are drawn, so the grid costs one
pass of teacher-forced scoring. The variety figures decode every pair once per sampling setting.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.decode import DecodeSettings  # noqa: E402
from chatbot.errors import ChatbotError  # noqa: E402
from chatbot.evaluate import PairScores, hits_at_1, read_pairs, score_strategy  # noqa: E402
from chatbot.reply import Chatbot  # noqa: E402


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="prepared dataset folder (its valid split is used) or a TSV")
    parser.add_argument("--checkpoint", required=True, help="forward model")
    parser.add_argument("--backward", help="backward (reply -> query) model (none: lambda is not used)")
    parser.add_argument("--relevance", help="relevance model (scripts/train_relevance.py)")
    parser.add_argument("--kappas", type=floats, default=floats("0,0.5,1,2,4"), help="weights of the relevance score")
    parser.add_argument("--mus", type=floats, default=floats("0"), help="weights of the tf-idf word overlap")
    parser.add_argument("--split", default="valid", help="split of a prepared folder to tune on")
    parser.add_argument("--limit", type=int, default=500, help="pairs used")
    parser.add_argument("--lambdas", type=floats, default=floats("0,0.25,0.5,1,1.5"), help="weights of log p(S|T)")
    parser.add_argument("--gammas", type=floats, default=floats("0,0.5,1,1.5"), help="bonuses per reply word")
    parser.add_argument(
        "--sampling",
        default="1.0:0.9:16,0.7:0.9:16,1.0:1.0:16",
        help="TEMPERATURE:TOP_P:CANDIDATES,... to decode with (empty: the hits@1 grid only)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        bot = Chatbot.from_checkpoint(args.checkpoint, backward=args.backward, relevance=args.relevance)
        pairs = read_pairs(args.data, args.split)[: args.limit]
    except ChatbotError as err:
        print(f"tune_rerank: error: {err}", file=sys.stderr)
        return 1
    scores = PairScores(bot, pairs)
    kappas = args.kappas if bot.relevance is not None else [0.0]
    mus = args.mus if bot.overlap is not None else [0.0]
    lambdas = args.lambdas if bot.backward is not None else [0.0]
    print(f"{len(pairs)} {args.split} pairs; hits@1/20 by lambda, kappa and mu (rows) and gamma (columns):")
    print("| lambda | kappa | mu | " + " | ".join(f"gamma {g:g}" for g in args.gammas) + " |")
    print("|---" * (len(args.gammas) + 3) + "|")
    best = (-1.0, 0.0, 0.0, 0.0, 0.0)
    for lam, kappa, mu in itertools.product(lambdas, kappas, mus):
        cells = []
        for gamma in args.gammas:
            s = DecodeSettings("rerank", mmi_lambda=lam, length_bonus=gamma, relevance_weight=kappa, overlap_weight=mu)
            h = hits_at_1(scores.strategy_scores(s))
            best = max(best, (h, lam, gamma, kappa, mu))
            cells.append(f"{h:.3f}")
        print(f"| {lam:g} | {kappa:g} | {mu:g} | " + " | ".join(cells) + " |", flush=True)
    print(f"best: hits@1 {best[0]:.3f} at lambda {best[1]:g}, gamma {best[2]:g}, kappa {best[3]:g}, mu {best[4]:g}")
    if not args.sampling:  # --sampling "": the grid only
        return 0
    print(
        "\n| temperature | top-p | candidates | lambda | gamma | kappa | mu | distinct-2 | top-10 share | mean length |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for item, gamma in itertools.product(args.sampling.split(","), args.gammas):
        t, p, n = item.split(":")
        lam, kappa, mu = best[1], best[3], best[4]
        settings = DecodeSettings(
            "rerank",
            temperature=float(t),
            top_p=float(p),
            candidates=int(n),
            mmi_lambda=lam,
            length_bonus=gamma,
            relevance_weight=kappa,
            overlap_weight=mu,
        )
        metrics, _ = score_strategy(bot, pairs, replace(settings, seed=0))  # seeds 0, 1, 2, ... per pair
        print(
            f"| {t} | {p} | {n} | {lam:g} | {gamma:g} | {kappa:g} | {mu:g} | {metrics['distinct_2']:.3f} "
            f"| {metrics['top10_share']:.3f} | {metrics['mean_length']:.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
