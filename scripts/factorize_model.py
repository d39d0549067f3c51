"""Factorize a trained model's output layer by truncated SVD: a checkpoint whose decoder reads a third of the weights.

    python scripts/factorize_model.py runs/fwd/best.pt --rank 64 96 128 192 --data corpus/prepared/w20   # measure
    python scripts/factorize_model.py runs/fwd/best.pt --rank 128 --out runs/r128.pt                      # write

The output layer (V x H, 12,361 x 384 for the shipped model) is most of what a decoding step reads, and on a
slow-memory CPU reading it is most of a step's time. Its weight W is replaced by the best rank-r approximation
U_r S_r V_r^T (`chatbot.model.network.factorized`), stored as two layers, (r x H) then (V x r) with the bias:
(H + V) r weights instead of H V. Everything else is the checkpoint's, unchanged; `model_config.output_rank`
records r, so the checkpoint loads as a `FactorizedLinear` output layer, and `chatbot train --init-from` can
train it on. With `--data`, each rank's teacher-forced perplexity per word on the first `--pairs` pairs of
the valid split is printed beside the full layer's (the valid split: no model trained on it, and the test split
stays for the report card).
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.checkpoint import build_model, load_checkpoint, save_checkpoint  # noqa: E402
from chatbot.cli import int_in  # noqa: E402
from chatbot.errors import ChatbotError  # noqa: E402
from chatbot.evaluate import read_pairs  # noqa: E402
from chatbot.model.network import factorized  # noqa: E402
from chatbot.reply import Chatbot  # noqa: E402
from chatbot.scoring import sequence_log_probs, words  # noqa: E402


def bot_of(state: dict) -> Chatbot:
    model, tokenizer = build_model(state)
    return Chatbot(model, tokenizer, state.get("normalize", "tutorial"), int(state.get("max_length", 10)))


def ppl_per_word(bot: Chatbot, pairs: list[tuple[str, str]]) -> float:
    """Teacher-forced perplexity per word of the pairs' replies: exp(summed NLL / (words + ends of replies))."""
    log_probs = sequence_log_probs(
        bot.model, [bot.query_ids(q) for q, _ in pairs], [bot.target_ids(r) for _, r in pairs]
    )
    return math.exp(
        min(-float(log_probs.sum()) / sum(words(r) for _, r in pairs), 700)
    )  # a diverged model: no overflow


def factorized_state(state: dict, rank: int, singular: torch.Tensor) -> dict:
    """A copy of checkpoint `state` whose output layer is the rank-`rank` factorization of its own; `singular`:
    that layer's singular values, for the share of their squared mass the rank keeps."""
    model, _ = build_model(state)
    model.decoder.out = factorized(model.decoder.out, rank)
    out = copy.copy(state)
    out["model_config"] = {**state["model_config"], "output_rank": rank}
    out["model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    energy = float((singular[:rank] ** 2).sum() / (singular**2).sum())
    out["factorized"] = {"rank": rank, "kept_energy": energy}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a trained checkpoint with the tutorial's output layer")
    parser.add_argument("--rank", type=int_in(1), nargs="+", required=True, help="rank(s) to factorize to")
    parser.add_argument("--out", help="write the factorized checkpoint here (one --rank; refuses an existing file)")
    parser.add_argument(
        "--data",
        help="prepared dataset folder (its valid split) or a query<TAB>response TSV: print perplexity per word",
    )
    parser.add_argument("--pairs", type=int_in(1), default=1500, help="valid pairs to measure on")
    args = parser.parse_args(argv)
    try:
        if args.out and len(args.rank) != 1:
            raise ChatbotError("--out writes one checkpoint: give one --rank")
        if args.out and Path(args.out).exists():
            raise ChatbotError(f"{args.out} exists; not overwriting it")
        state = load_checkpoint(args.checkpoint)
        if "decoder.out.weight" not in state.get("model", {}):
            raise ChatbotError(f"{args.checkpoint}: no full output layer to factorize (already factorized?)")
        weight = state["model"]["decoder.out.weight"]
        vocab, hidden = weight.shape
        singular = torch.linalg.svdvals(weight.double())  # once, for every rank's kept energy
        if max(args.rank) > min(hidden, vocab):
            raise ChatbotError(f"--rank must be at most {min(hidden, vocab)} (the output layer is {vocab} x {hidden})")
        pairs = read_pairs(args.data, "valid")[: args.pairs] if args.data else []
        if pairs:
            print(f"| rank | output-layer weights | energy kept | ppl/word ({len(pairs)} valid pairs of {args.data}) |")
            print("|---|---|---|---|")
            print(f"| full | {hidden * vocab:,} | 1.0000 | {ppl_per_word(bot_of(state), pairs):.2f} |")
        for rank in args.rank:
            shipped = factorized_state(state, rank, singular)
            if pairs:
                ppl = ppl_per_word(bot_of(shipped), pairs)
                energy = shipped["factorized"]["kept_energy"]
                print(f"| {rank} | {(hidden + vocab) * rank:,} | {energy:.4f} | {ppl:.2f} |", flush=True)
        if args.out:
            save_checkpoint(args.out, shipped)
            print(
                f"wrote {args.out}: output layer at rank {args.rank[0]} ({(hidden + vocab) * args.rank[0]:,} weights)"
            )
    except ChatbotError as err:
        print(f"factorize_model: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
