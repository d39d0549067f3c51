"""How big a batch pays: validation loss against training pairs seen, for several (batch size, lr) settings.

A GPU makes big batches cheap per pair, but not more useful per pair: if a batch of 1,024 needs four
times the pairs that a batch of 64 needs to reach a loss, it must also be four times faster per pair just
to break even. This measures that sample efficiency, which is the same on any hardware (so a CPU can
measure it), and plots the curves. Each setting trains this project's loop from the same initial weights
on the same shuffled epochs; the validation loss (fp32) is taken every `--eval-pairs-every` pairs.

    python scripts/bench_batch_size.py corpus/prepared/cornell-word --hidden-size 256 --pairs 82000 \\
        --settings 64:1e-4,256:1e-3,1024:1e-3 --json sweep.json --plot sweep.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.batching import encode_pairs, tensorize
from chatbot.errors import ChatbotError
from chatbot.files import atomic_write
from chatbot.model.network import ModelConfig, Seq2Seq
from chatbot.prepare import load_prepared
from chatbot.train import TrainConfig, evaluate, make_optimizer
from scripts.bench_train import parse_candidates, project_steps


def loss_curve(model, pairs, valid, config: TrainConfig, total_pairs: int, every: int, device, seed: int):
    """Train until `total_pairs` pairs are seen -> [(pairs seen, validation loss)], one point per `every`."""
    optimizer = make_optimizer(model, config, device)
    model.train()
    fp32 = torch.autocast(device.type, enabled=False)
    stream = project_steps(model, optimizer, pairs, config, device, fp32, seed)
    eval_steps = max(1, every // config.batch_size)
    seen, step, curve, start = 0, 0, [], time.perf_counter()
    while seen < total_pairs:
        batch, train_step = next(stream)
        train_step()
        seen += batch.input_seq.size(1)
        step += 1
        if step % eval_steps == 0:
            loss, _ = evaluate(model, valid, 256, device, fp32)
            curve.append((seen, loss))
            tag = f"{config.batch_size}:{config.learning_rate:g}"
            print(
                f"{tag} step {step}: {seen:,} pairs, validation loss {loss:.4f} ({time.perf_counter() - start:.0f} s)"
            )
    return curve


def plot(curves: dict[str, list[tuple[int, float]]], path: str) -> None:
    """Validation loss against pairs seen, one line per setting, as a PNG."""
    from matplotlib.figure import Figure  # the object API needs no GUI backend

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for tag, curve in curves.items():
        ax.plot(
            [p for p, _ in curve], [v for _, v in curve], "o-", markersize=3, label=f"batch {tag.replace(':', ', lr ')}"
        )
    ax.set(
        xlabel="training pairs seen", ylabel="validation loss (NLL per token)", title="sample efficiency by batch size"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", help="prepared dataset folder (e.g. the Cornell pairs, `chatbot prepare`)")
    parser.add_argument("--settings", type=parse_candidates, default="64:1e-4,256:1e-3,1024:1e-3", help="BATCH:LR,...")
    parser.add_argument("--pairs", type=int, default=82_000, help="training pairs each setting sees")
    parser.add_argument("--eval-pairs-every", type=int, default=8192, help="validate every this many pairs")
    parser.add_argument("--hidden-size", type=int, default=256, help="model size (the tutorial's is 500)")
    parser.add_argument("--valid-pairs", type=int, default=500, help="validation pairs used for the loss")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--num-threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (initial weights, data order)")
    parser.add_argument("--json", help="write the curves to this JSON file")
    parser.add_argument("--plot", help="write the curves to this PNG file")
    args = parser.parse_args(argv)

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    try:
        data = load_prepared(args.data_dir)
    except ChatbotError as err:
        print(f"bench_batch_size.py: error: {err}", file=sys.stderr)
        return 1
    pairs = tensorize(encode_pairs(data.train, data.tokenizer))
    valid = tensorize(encode_pairs(data.valid[: args.valid_pairs], data.tokenizer))
    curves: dict[str, list[tuple[int, float]]] = {}
    for batch_size, lr in args.settings:
        torch.manual_seed(args.seed)  # the same initial weights for every setting
        model = Seq2Seq(ModelConfig(vocab_size=len(data.tokenizer), hidden_size=args.hidden_size)).to(device)
        config = TrainConfig(batch_size=batch_size, learning_rate=lr)
        curves[f"{batch_size}:{lr:g}"] = loss_curve(
            model, pairs, valid, config, args.pairs, args.eval_pairs_every, device, args.seed
        )
        if args.json:  # after every setting, so a run cut short keeps what it measured
            text = json.dumps({"hidden_size": args.hidden_size, "curves": curves}, indent=1)
            atomic_write(args.json, lambda f, t=text: f.write(t.encode()))
        if args.plot:
            plot(curves, args.plot)
    print(f"\n{'batch:lr':<14}{'final pairs':>12}{'final loss':>12}{'best loss':>11}")
    for tag, curve in curves.items():
        best = min(v for _, v in curve) if curve else float("nan")
        last = curve[-1] if curve else (0, float("nan"))
        print(f"{tag:<14}{last[0]:>12,}{last[1]:>12.4f}{best:>11.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
