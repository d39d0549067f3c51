"""Package relevance models (scripts/train_relevance.py runs) as the shipped chatbot/pretrained/relevance.pt.

    python scripts/ship_relevance.py runs/relevance2/best.pt runs/relevance-s1/best.pt
    python scripts/ship_relevance.py chatbot/pretrained/relevance.pt runs/relevance-s2/best.pt   # add a member
    python scripts/ship_relevance.py chatbot/pretrained/relevance.pt --index corpus/prepared/w20   # add a reply index

Two or more runs on the same dataset (so the same tokenizer, normalization and tf-idf table) with
different seeds become one `RelevanceEnsemble`: the file holds the config, the tokenizer and the
overlap table once and each run's weights under "members". Weights are stored in fp16, each member's
word embedding (most of its weights) as int8 rows; the script checks that the stored model's scores of the
probe prompts against each other stay within 0.05 of the fp32 ones (cosine / 0.05: a cosine within
0.0025) before writing anything. `--index DATA` adds rerank's reply index (`chatbot.retrieval`): the
distinct replies of DATA's training split, encoded by the first member as stored. It writes only
`--out`, atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.checkpoint import (  # noqa: E402
    DEFAULT_RELEVANCE,
    half_weights,
    int8_rows,
    load_checkpoint,
    save_checkpoint,
)
from chatbot.errors import ChatbotError  # noqa: E402
from chatbot.evaluate import PROBES, read_pairs  # noqa: E402
from chatbot.normalize import normalize_string  # noqa: E402
from chatbot.relevance import (  # noqa: E402
    EMBEDDING_NAMES,
    RelevanceEnsemble,
    dual_encoder_from_state,
    relevance_scores,
)
from chatbot.retrieval import ReplyIndex, training_replies  # noqa: E402
from chatbot.tokenizers import EOS_token, tokenizer_from_state  # noqa: E402

SHARED = ("model_config", "tokenizer", "normalize", "max_length", "overlap")  # the same for every member
MEMBER = ("step", "epoch", "metrics")
TOLERANCE = 0.05


def unpack(state: dict) -> list[dict]:
    """A checkpoint -> the runs in it: a run is itself, a shipped ensemble is one run per member."""
    if "members" not in state:
        return [state]
    shared = {k: v for k, v in state.items() if k not in ("members", "index")}
    return [{**shared, **member} for member in state["members"]]


def compact(weights: dict) -> dict:
    """fp16 weights, with the embedding (one tensor under three names) as int8 rows, stored once; a shipped
    member's weights (already in this form) come through unchanged."""
    embedding = weights[EMBEDDING_NAMES[0]]
    rows = embedding if isinstance(embedding, dict) else int8_rows(embedding)
    weights = half_weights({k: v for k, v in weights.items() if k not in EMBEDDING_NAMES})
    return {**weights, **{name: rows for name in EMBEDDING_NAMES}}


def pack(states: list[dict]) -> dict:
    """Relevance checkpoints of one dataset -> one shipped ensemble checkpoint (`compact` weights)."""
    first = states[0]
    for state in states[1:]:
        for key in ("model_config", "tokenizer", "normalize"):
            if state.get(key) != first.get(key):
                raise ChatbotError(f"the relevance runs differ in their {key}: train them alike on one dataset")
    members = [{**{k: s[k] for k in MEMBER if k in s}, "model": compact(s["model"])} for s in states]
    return {"kind": "relevance", **{k: first[k] for k in SHARED if k in first}, "members": members}


def probe_scores(model, state: dict) -> torch.Tensor:
    """The model's score of every probe prompt against every probe prompt (as a reply) -> (P * P,)."""
    tokenizer = tokenizer_from_state(state["tokenizer"])
    ids = [tokenizer.encode(normalize_string(p, state.get("normalize", "tutorial"))) + [EOS_token] for p in PROBES]
    return relevance_scores(model, [q for q in ids for _ in ids], [r for _ in ids for r in ids])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs",
        nargs="+",
        help="relevance checkpoints (RUN/best.pt from scripts/train_relevance.py, or a shipped ensemble)",
    )
    parser.add_argument("--out", default=str(DEFAULT_RELEVANCE), help="where to write the shipped relevance model")
    parser.add_argument(
        "--index",
        default=None,
        help="prepared dataset whose training replies become rerank's reply index (default: none)",
    )
    parser.add_argument("--index-max-words", type=int, default=12, help="longest reply the index keeps, in words")
    args = parser.parse_args(argv)
    try:
        states = [run for path in args.runs for run in unpack(load_checkpoint(path))]
        if any(s.get("kind") != "relevance" or "model" not in s for s in states):
            raise ChatbotError(
                "every run must be a relevance checkpoint written by scripts/train_relevance.py or scripts/ship_relevance.py"
            )
        shipped = pack(states)
    except ChatbotError as err:
        print(f"ship_relevance: error: {err}", file=sys.stderr)
        return 1
    config = shipped["model_config"]
    full = RelevanceEnsemble([dual_encoder_from_state(config, s["model"]) for s in states])
    half = RelevanceEnsemble([dual_encoder_from_state(config, m["model"]) for m in shipped["members"]])
    gap = float((probe_scores(full, shipped) - probe_scores(half, shipped)).abs().max())
    if gap > TOLERANCE:
        print(
            f"ship_relevance: error: the stored weights move a probe score by {gap:.3f}; not shipping", file=sys.stderr
        )
        return 1
    if args.index:
        try:
            replies = training_replies(read_pairs(args.index, "train"), args.index_max_words)
        except ChatbotError as err:
            print(f"ship_relevance: error: {err}", file=sys.stderr)
            return 1
        tokenizer = tokenizer_from_state(shipped["tokenizer"])
        shipped["index"] = ReplyIndex.build(half.members[0], tokenizer, replies).state_dict()
        print(
            f"reply index: {len(replies):,} distinct training replies of {args.index} (1 to {args.index_max_words} words)"
        )
    else:
        print("no --index: the file has no reply index (rerank's --retrieve needs one)")
    out = Path(args.out)
    save_checkpoint(out, shipped)
    hits = ", ".join(f"{s['metrics']['valid_hits_at_1']:.3f}" for s in states)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {len(states)} members (valid hits@1/20 {hits})")
    print(f"the stored weights move the probe scores by at most {gap:.4f}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
