"""Package a trained checkpoint as the shipped model: chatbot/pretrained/model.pt + MODEL_CARD.md.

Keeps only what inference needs (config, weights, tokenizer, normalization, MAX_LENGTH) plus the
training facts for the card; weights are stored in fp16 to halve the file, and the script checks
that the fp16 model's replies to the probe prompts equal the fp32 model's before writing anything.

    python scripts/ship_model.py runs/h256/best.pt --command "chatbot train ..." --hardware "..." --minutes 8.5

`--backward RUN/best.pt` ships the backward (reply -> query) model that the rerank strategy scores
with as chatbot/pretrained/backward.pt, the same way (fp16, replies checked).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.checkpoint import (  # noqa: E402
    DEFAULT_BACKWARD,
    DEFAULT_CHECKPOINT,
    DEFAULT_RELEVANCE,
    atomic_write,
    build_model,
    half_weights,
    load_checkpoint,
    save_checkpoint,
)
from chatbot.errors import ChatbotError  # noqa: E402
from chatbot.evaluate import PROBES  # noqa: E402
from chatbot.reply import Chatbot, DecodeSettings  # noqa: E402

STRATEGIES = {
    "greedy": DecodeSettings(strategy="greedy"),
    "beam": DecodeSettings(strategy="beam"),
    "sample": DecodeSettings(strategy="sample", temperature=0.7, top_p=0.9, seed=0),
}


def probe_replies(state: dict) -> dict[str, dict[str, str]]:
    """Replies of the model in `state` to every probe prompt, per decoding strategy."""
    model, tokenizer = build_model(state)
    bot = Chatbot(model, tokenizer, state["normalize"], state["max_length"])
    return {p: {name: bot.reply(p, replace(s)) for name, s in STRATEGIES.items()} for p in PROBES}


def model_card(
    state: dict, replies: dict, args: argparse.Namespace, size_mb: float, backward: dict | None, relevance: dict | None
) -> str:
    """The Markdown model card shipped beside the weights."""
    c, t, m = state["model_config"], state.get("train_config", {}), state.get("metrics", {})
    rows = "\n".join(f"| {p} | {r['greedy']} | {r['beam']} | {r['sample']} |" for p, r in replies.items())
    back = ""
    if backward is not None:
        bc, bm = backward["model_config"], backward.get("metrics", {})
        back = (
            f"| backward model | `backward.pt` ({args.backward_mb:.1f} MB, fp16): the same network at hidden "
            f"{bc['hidden_size']}, trained on the swapped pairs (reply -> query) by `{args.backward_command}`; step "
            f"{backward.get('step')}, validation loss {bm.get('val_loss', float('nan')):.4f}; the rerank strategy's "
            "log p(query | reply) |\n"
        )
    if relevance is not None:
        rc, rm = relevance["model_config"], relevance.get("metrics", {})
        back += (
            f"| relevance model | `relevance.pt` ({args.relevance_mb:.1f} MB, fp16): `chatbot.relevance.DualEncoder`, "
            f"hidden {rc['hidden_size']}, trained by `{args.relevance_command}`; step {relevance.get('step')}, valid "
            f"hits@1/20 {rm.get('valid_hits_at_1', float('nan')):.3f}; the rerank strategy's relevance score |\n"
        )
    return f"""# Shipped model

The model `chatbot serve` and `chatbot chat` use when no `--checkpoint` is given. Packaged by
`scripts/ship_model.py` from `{args.checkpoint}`; every earlier version stays in the git history.

| what | value |
|---|---|
| data | `../shared/data/cornell/pairs_all_movies.tsv` (Cornell Movie-Dialogs, 145,685 query/response rows from all 617 movies) |
| preparation | `{args.prepare_command}` |
| tokenizer | {state["tokenizer"]["kind"]}, {c["vocab_size"]:,} ids; normalization `{state["normalize"]}`; MAX_LENGTH {state["max_length"]} |
| network | `Seq2Seq`: shared embedding, bidirectional {c["encoder_n_layers"]}-layer GRU encoder, {c["decoder_n_layers"]}-layer GRU decoder, `{c["attn_model"]}` Luong attention, hidden {c["hidden_size"]}, dropout {c["dropout"]} |
| training command | `{args.command}` |
| optimizer | Adam, lr {t.get("learning_rate")} (decoder x{t.get("decoder_learning_ratio")}), batch {t.get("batch_size")}, clip {t.get("clip")}, teacher forcing {t.get("teacher_forcing_ratio")} |
| steps | {state.get("step")} (epoch {state.get("epoch")}; the checkpoint with the best validation loss) |
| time and hardware | {args.minutes} minutes to this checkpoint on {args.hardware} |
| validation | loss {m.get("val_loss", float("nan")):.4f}, perplexity {m.get("val_ppl", float("nan")):.2f} (its dataset's valid split, UNK counted as a word) |
| file | `model.pt`, {size_mb:.1f} MB, fp16 weights (greedy, beam and sample replies to the probes below identical to the fp32 checkpoint's) |
{back}

## Replies to the probe prompts

Default settings of greedy and beam; `sample` with temperature 0.7, top-p 0.9, seed 0.

| prompt | greedy | beam | sample |
|---|---|---|---|
{rows}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint written by `chatbot train` (usually RUN/best.pt)")
    parser.add_argument("--out", default=str(DEFAULT_CHECKPOINT), help="where to write the shipped model")
    parser.add_argument("--command", required=True, help="the exact `chatbot train` command, for the card")
    parser.add_argument("--prepare-command", required=True, help="the exact `chatbot prepare` command")
    parser.add_argument("--hardware", required=True, help="where it was trained, for the card")
    parser.add_argument("--minutes", required=True, help="wall minutes of training to this checkpoint")
    parser.add_argument("--backward", help="a backward (reply -> query) checkpoint to ship beside it, for rerank")
    parser.add_argument("--backward-command", default="", help="the `chatbot train` command of --backward")
    parser.add_argument("--relevance", help="a relevance model (scripts/train_relevance.py) to ship beside it")
    parser.add_argument("--relevance-command", default="", help="the command that trained --relevance")
    args = parser.parse_args(argv)
    try:
        state = load_checkpoint(args.checkpoint)
        backward = load_checkpoint(args.backward) if args.backward else None
        relevance = load_checkpoint(args.relevance) if args.relevance else None
    except ChatbotError as err:
        print(f"ship_model: error: {err}", file=sys.stderr)
        return 1
    keep = ("model_config", "tokenizer", "normalize", "max_length", "train_config", "step", "epoch", "metrics")
    shipped = {k: state[k] for k in keep if k in state}
    shipped["model"] = half_weights(state["model"])
    replies = probe_replies(state)
    if probe_replies(shipped) != replies:
        print("ship_model: error: fp16 weights change the replies; not shipping", file=sys.stderr)
        return 1
    out = Path(args.out)
    shipped_backward = None
    if backward is not None:
        shipped_backward = {k: backward[k] for k in keep if k in backward}
        shipped_backward["model"] = half_weights(backward["model"])
        if probe_replies(shipped_backward) != probe_replies(backward):
            print("ship_model: error: fp16 weights change the backward model's replies; not shipping", file=sys.stderr)
            return 1
    save_checkpoint(out, shipped)
    size_mb = out.stat().st_size / 1e6
    if shipped_backward is not None:
        back_path = out.with_name(DEFAULT_BACKWARD.name)
        save_checkpoint(back_path, shipped_backward)
        args.backward_mb = back_path.stat().st_size / 1e6
        print(f"wrote {back_path} ({args.backward_mb:.1f} MB)")
    if relevance is not None:
        rel_path = out.with_name(DEFAULT_RELEVANCE.name)
        keep_rel = (
            "kind",
            "model_config",
            "tokenizer",
            "normalize",
            "max_length",
            "overlap",
            "step",
            "epoch",
            "metrics",
        )
        save_checkpoint(
            rel_path,
            {**{k: relevance[k] for k in keep_rel if k in relevance}, "model": half_weights(relevance["model"])},
        )
        args.relevance_mb = rel_path.stat().st_size / 1e6
        print(f"wrote {rel_path} ({args.relevance_mb:.1f} MB)")
    card = model_card(state, replies, args, size_mb, backward, relevance)
    atomic_write(out.parent / "MODEL_CARD.md", lambda f: f.write(card.encode()))
    print(f"wrote {out} ({size_mb:.1f} MB) and {out.parent / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
