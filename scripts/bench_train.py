"""Training speed, side by side on the same data and model size: the tutorial's loop vs this project.

(a) a faithful tutorial-style loop: batch 64 drawn with random.choice and sorted by length, the decoder
    called once per time step, softmax then log in the loss, `.item()` every time step, two Adam
    optimizers (both holding the shared embedding);
(b) this project's `train_step` at batch 64 (fast path, masked cross-entropy on logits, fused Adam);
(c) this project at its best settings (bigger batch and learning rate; bf16 autocast on CUDA).

Prints target tokens/s for each and the ratio to (a), then time-to-quality: (a) trains for N iterations
(the tutorial's 4,000 by default) and reaches some validation loss; (c) trains from the same initial
weights until it reaches that loss; the figure is (c)'s training time over (a)'s. Validation time is
left out of both clocks. `--best` may list several (batch size, learning rate) candidates for (c); each
is measured, and (c) is the one that reaches (a)'s loss soonest. They are chosen on the validation
loss that they are judged by, so say so when quoting the figure.

    python scripts/bench_train.py DATA_DIR [--iterations 4000] [--device auto] [--best 1024:1e-3,2048:2e-3]

With `--target-from CHECKPOINT` it compares instead, side by side in one run on this device: (a), (b) in
fp32, (b) with bf16 autocast, and a training recipe (`--recipe`, e.g. the shipped model's); each trains
from its own fresh weights until its validation perplexity per word reaches CHECKPOINT's on the same
validation pairs (e.g. the first shipped model's), or until `--max-minutes`. It prints each one's
tokens/s and its training time to that target (validation time left out of the clocks):

    python scripts/bench_train.py corpus/prepared/w20 --target-from runs/old.pt --num-threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.batching import (
    PairTensors,
    bucket_order,
    encode_pairs,
    epoch_order,
    iterate_batches,
    tensorize,
)
from chatbot.errors import ChatbotError
from chatbot.files import atomic_write
from chatbot.model.network import ModelConfig, Seq2Seq
from chatbot.prepare import load_prepared
from chatbot.train import TrainConfig, autocast_for, evaluate, make_optimizer, train_step
from chatbot.tutorial import tutorial_steps


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_tutorial(model, examples, iterations, device, seed) -> tuple[float, int]:
    """(a): `iterations` tutorial iterations -> (training seconds, target tokens)."""
    model.train()
    steps = tutorial_steps(model, examples, device, seed)
    tokens, seconds = 0, 0.0
    for _ in range(iterations):
        batch, step = next(steps)
        sync(device)
        start = time.perf_counter()
        step()
        seconds += time.perf_counter() - start  # .item() synchronised already
        tokens += batch.n_tokens
    return seconds, tokens


def project_steps(model, optimizer, examples: PairTensors, config: TrainConfig, device, autocast, seed):
    """Endless (batch, closure) pairs of this project's training steps, over shuffled epochs."""
    epoch = 0
    while True:
        order = epoch_order(len(examples), epoch, seed)
        if config.bucket:
            order = bucket_order(examples, order, config.batch_size, config.bucket, epoch, seed)
        for batch in iterate_batches(examples, order, config.batch_size):
            batch = batch.to(device)
            yield batch, lambda b=batch: train_step(model, b, optimizer, config.clip, True, float(b.n_tokens), autocast)
        epoch += 1


def run_project(model, examples, config, steps, device, autocast, seed) -> tuple[float, int]:
    """(b)/(c) throughput: `steps` steps -> (training seconds, target tokens); one warm-up step first."""
    optimizer = make_optimizer(model, config, device)
    model.train()
    stream = project_steps(model, optimizer, examples, config, device, autocast, seed)
    _, step = next(stream)
    step()
    sync(device)
    tokens, start = 0, time.perf_counter()
    for _ in range(steps):
        batch, step = next(stream)
        step()
        tokens += batch.n_tokens
    sync(device)
    return time.perf_counter() - start, tokens


def time_to_quality(model, examples, valid, config, target_loss, max_seconds, eval_every, device, autocast, seed):
    """Train until the validation loss is <= target_loss -> (training seconds, steps, loss) or None."""
    optimizer = make_optimizer(model, config, device)
    model.train()
    seconds, steps, loss = 0.0, 0, float("inf")
    stream = project_steps(model, optimizer, examples, config, device, autocast, seed)
    while seconds < max_seconds:
        sync(device)
        start = time.perf_counter()
        for _ in range(eval_every):
            next(stream)[1]()
        sync(device)
        seconds += time.perf_counter() - start
        steps += eval_every
        loss, _ = evaluate(model, valid, 256, device, torch.autocast(device.type, enabled=False))  # as (a)'s: fp32
        print(f"  (c) step {steps}: {seconds:.1f} s, validation loss {loss:.4f} (target {target_loss:.4f})", flush=True)
        if loss <= target_loss:
            return seconds, steps, loss
    return None


def ppl_per_word(model, valid: PairTensors, n_words: int, device) -> float:
    """Teacher-forced validation perplexity per word (fp32): exp(summed NLL / words + ends of replies)."""
    loss, tokens = evaluate(model, valid, 256, device, torch.autocast(device.type, enabled=False))
    return math.exp(min(loss * tokens / n_words, 700))


def train_to_target(model, steps, valid, n_words, target, max_seconds, eval_every, device, name):
    """Run `steps` until validation perplexity per word <= target -> (seconds or None, tokens/s, last ppl)."""
    model.train()
    seconds, tokens, done, ppl = 0.0, 0, 0, float("inf")
    while seconds < max_seconds:
        sync(device)
        start = time.perf_counter()
        for _ in range(eval_every):
            batch, step = next(steps)
            step()
            tokens += batch.n_tokens
        sync(device)
        seconds += time.perf_counter() - start
        done += eval_every
        ppl = ppl_per_word(model, valid, n_words, device)
        model.train()
        print(
            f"  {name} step {done}: {seconds:.0f} s, validation perplexity per word {ppl:.2f} (target {target:.2f})",
            flush=True,
        )
        if ppl <= target:
            return seconds, tokens / seconds, ppl
    return None, tokens / seconds, ppl


def parse_recipe(text: str) -> dict:
    """'hidden_size=384,batch_size=64,learning_rate=2.5e-4,bucket=20' -> {name: value} of ModelConfig/TrainConfig."""
    known = {**ModelConfig.__dataclass_fields__, **TrainConfig.__dataclass_fields__}
    recipe = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name not in known:
            raise argparse.ArgumentTypeError(f"unknown recipe field {name!r} (fields of ModelConfig or TrainConfig)")
        default = getattr(ModelConfig() if name in ModelConfig.__dataclass_fields__ else TrainConfig(), name)
        try:
            recipe[name] = type(default)(float(value)) if isinstance(default, (int, float)) else value
        except ValueError:
            raise argparse.ArgumentTypeError(f"recipe field {name}: {value!r} is not a number") from None
    return recipe


def compare(args, data, device) -> int:
    """The `--target-from` comparison: (a), (b) fp32, (b) bf16 and the recipe, to the old model's ppl per word."""
    from chatbot.reply import Chatbot
    from chatbot.scoring import sequence_log_probs, words

    valid_pairs = data.valid[: args.eval_pairs]
    old = Chatbot.from_checkpoint(args.target_from)
    old_scores = sequence_log_probs(
        old.model, [old.query_ids(q) for q, _ in valid_pairs], [old.target_ids(r) for _, r in valid_pairs]
    )
    n_words = sum(words(r) for _, r in valid_pairs)
    target = math.exp(-float(old_scores.sum()) / n_words)
    examples = encode_pairs(data.train, data.tokenizer)
    pairs = tensorize(examples)
    valid = tensorize(encode_pairs(valid_pairs, data.tokenizer))
    hardware = f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    print(
        f"{hardware}; torch {torch.__version__}; {date.today()}; {len(examples)} training pairs, {len(valid_pairs)} "
        f"validation pairs; target: {args.target_from}'s validation perplexity per word, {target:.2f}",
        flush=True,
    )
    recipe = args.recipe
    model_recipe = {k: v for k, v in recipe.items() if k in ModelConfig.__dataclass_fields__}
    train_recipe = {k: v for k, v in recipe.items() if k in TrainConfig.__dataclass_fields__}
    contenders = [
        ("(a) tutorial loop, batch 64", {}, None),
        ("(b) this project, batch 64, fp32", {}, TrainConfig()),
        ("(b) this project, batch 64, bf16", {}, TrainConfig(cpu_amp=True)),
        (
            "recipe " + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in recipe.items()),
            model_recipe,
            TrainConfig(**train_recipe),
        ),
    ]
    rows = []
    for name, model_fields, config in contenders:
        torch.manual_seed(args.seed)
        model_config = ModelConfig(
            **{"vocab_size": len(data.tokenizer), "hidden_size": args.hidden_size, **model_fields}
        )
        model = Seq2Seq(model_config).to(device)
        if config is None:
            steps = tutorial_steps(model, examples, device, args.seed)
        else:
            optimizer = make_optimizer(model, config, device)
            autocast = autocast_for(device, config.amp, config.cpu_amp)
            steps = project_steps(model, optimizer, pairs, config, device, autocast, args.seed)
        print(name, flush=True)
        seconds, tps, ppl = train_to_target(
            model,
            steps,
            valid,
            n_words,
            target,
            args.max_minutes * 60,
            args.eval_every or 100,
            device,
            name.split(" ")[0],
        )
        rows.append({"contender": name, "tokens_per_s": tps, "seconds_to_target": seconds, "last_ppl_word": ppl})
        if args.json:
            result = {
                "hardware": hardware,
                "torch": torch.__version__,
                "date": str(date.today()),
                "target": target,
                "rows": rows,
            }
            atomic_write(args.json, lambda f, r=result: f.write(json.dumps(r, indent=2).encode()))
    base = rows[0]["tokens_per_s"]
    print(f"\n| contender | tokens/s | vs (a) | training time to ppl/word {target:.2f} |")
    print("|---|---|---|---|")
    for r in rows:
        reached = (
            f"{r['seconds_to_target']:.0f} s"
            if r["seconds_to_target"] is not None
            else (f"not within {args.max_minutes:g} min (reached {r['last_ppl_word']:.2f})")
        )
        print(f"| {r['contender']} | {r['tokens_per_s']:,.0f} | {r['tokens_per_s'] / base:.2f}x | {reached} |")
    return 0


CUDA_BEST = "256:1e-3,512:1e-3,1024:1e-3,2048:1.5e-3,4096:2e-3"
CPU_BEST = "128:2e-4"


def parse_candidates(text: str) -> list[tuple[int, float]]:
    """'1024:1e-3,2048:2e-3' -> [(1024, 0.001), (2048, 0.002)]."""
    try:
        candidates = [(int(b), float(lr)) for b, lr in (item.split(":") for item in text.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BATCH:LR[,BATCH:LR...], got {text!r}") from None
    if not candidates or any(b < 1 or lr <= 0 for b, lr in candidates):
        raise argparse.ArgumentTypeError(f"batch sizes and learning rates must be positive: {text!r}")
    return candidates


def pick_best(results: list[dict]) -> dict:
    """(c): the candidate that reaches (a)'s loss soonest; if none does, the fastest in tokens/s."""
    return min(results, key=lambda r: (r["time_to_quality"] is None, r["time_to_quality"] or 0, -r["tokens_per_s"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", help="prepared dataset folder (e.g. the Cornell pairs, `chatbot prepare`)")
    parser.add_argument("--iterations", type=int, default=4000, help="(a)'s iterations for time-to-quality")
    parser.add_argument("--throughput-steps", type=int, default=50, help="steps timed for (b) and (c) tokens/s")
    parser.add_argument("--hidden-size", type=int, default=500, help="model size (the tutorial's: 500)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--num-threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    parser.add_argument(
        "--best",
        type=parse_candidates,
        help=f"(c)'s candidate settings, comma-separated BATCH:LR (default: {CUDA_BEST} on CUDA, {CPU_BEST} on CPU)",
    )
    parser.add_argument("--eval-pairs", type=int, default=1000, help="validation pairs used for the losses")
    parser.add_argument("--eval-every", type=int, default=0, help="(c) validates every this many steps (0: auto)")
    parser.add_argument("--max-ratio", type=float, default=2.0, help="give a (c) up after this times (a)'s time")
    parser.add_argument("--seed", type=int, default=0, help="random seed (initial weights, data order)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--target-from", help="compare (a), (b) fp32, (b) bf16 and --recipe to this checkpoint's ppl per word"
    )
    parser.add_argument(
        "--recipe",
        type=parse_recipe,
        default=parse_recipe("hidden_size=384,learning_rate=2.5e-4,bucket=20"),
        help="the recipe compared with --target-from: NAME=VALUE fields of ModelConfig/TrainConfig, comma-separated",
    )
    parser.add_argument("--max-minutes", type=float, default=5.0, help="--target-from: each contender's time limit")
    args = parser.parse_args(argv)

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.set_float32_matmul_precision("high")
    try:
        data = load_prepared(args.data_dir)
    except ChatbotError as err:
        print(f"bench_train.py: error: {err}", file=sys.stderr)
        return 1
    if args.target_from:
        try:
            return compare(args, data, device)
        except ChatbotError as err:
            print(f"bench_train.py: error: {err}", file=sys.stderr)
            return 1
    examples = encode_pairs(data.train, data.tokenizer)  # (a) builds its batches from these lists
    pairs = tensorize(examples)  # (b) and (c), as `chatbot train`: padded once, batches are slices
    valid = tensorize(encode_pairs(data.valid[: args.eval_pairs], data.tokenizer))
    config = ModelConfig(vocab_size=len(data.tokenizer), hidden_size=args.hidden_size)
    fp32 = torch.autocast(device.type, enabled=False)
    best_autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)
    candidates = args.best or parse_candidates(CUDA_BEST if cuda else CPU_BEST)

    def fresh_model() -> Seq2Seq:
        torch.manual_seed(args.seed)  # the same initial weights for every contender
        return Seq2Seq(config).to(device)

    hardware = (
        torch.cuda.get_device_name(device)
        if cuda
        else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    )
    print(
        f"{hardware}; torch {torch.__version__}; {len(examples)} training pairs; vocabulary {len(data.tokenizer)}; "
        f"hidden {args.hidden_size}; {date.today()}",
        flush=True,
    )

    model_a = fresh_model()
    seconds_a, tokens_a = run_tutorial(model_a, examples, args.iterations, device, args.seed)
    loss_a, _ = evaluate(model_a, valid, 256, device, fp32)
    tps_a = tokens_a / seconds_a
    print(
        f"(a) tutorial loop, batch 64: {tps_a:,.0f} tokens/s; {args.iterations} iterations in {seconds_a:.1f} s "
        f"-> validation loss {loss_a:.4f}",
        flush=True,
    )

    steps = args.throughput_steps
    seconds_b, tokens_b = run_project(fresh_model(), pairs, TrainConfig(), steps, device, fp32, args.seed)
    tps_b = tokens_b / seconds_b
    print(f"(b) this project, batch 64: {tps_b:,.0f} tokens/s ({tps_b / tps_a:.2f}x (a))", flush=True)

    amp = ", bf16 autocast" if cuda else ""
    results = []
    for batch_size, lr in candidates:
        best = TrainConfig(batch_size=batch_size, learning_rate=lr)
        seconds_c, tokens_c = run_project(fresh_model(), pairs, best, steps, device, best_autocast, args.seed)
        tps_c = tokens_c / seconds_c
        print(f"(c) batch {batch_size}, lr {lr:g}{amp}: {tps_c:,.0f} tokens/s ({tps_c / tps_a:.2f}x (a))", flush=True)
        eval_every = args.eval_every or max(1, round(args.iterations * 64 / batch_size / 10))
        reached = time_to_quality(
            fresh_model(),
            pairs,
            valid,
            best,
            loss_a,
            args.max_ratio * seconds_a,
            eval_every,
            device,
            best_autocast,
            args.seed,
        )
        ratio = reached[0] / seconds_a if reached else None
        if reached:
            print(f"    reached {reached[2]:.4f} after {reached[1]} steps in {reached[0]:.1f} s = {ratio:.3f} of (a)'s")
        else:
            print(f"    did not reach {loss_a:.4f} within {args.max_ratio}x (a)'s time")
        results.append({"batch_size": batch_size, "learning_rate": lr, "tokens_per_s": tps_c, "time_to_quality": ratio})
        if args.json:  # after every candidate, so a run cut short still leaves its figures
            best_so_far = pick_best(results)
            result = {
                "hardware": hardware,
                "torch": torch.__version__,
                "date": str(date.today()),
                "iterations": args.iterations,
                "hidden_size": args.hidden_size,
                "tokens_per_s": {"a": tps_a, "b": tps_b, "c": best_so_far["tokens_per_s"]},
                "best": {**best_so_far, "bf16": cuda},
                "candidates": results,
                "loss_a": loss_a,
                "seconds_a": seconds_a,
                "time_to_quality": best_so_far["time_to_quality"],
            }
            atomic_write(args.json, lambda f, r=result: f.write(json.dumps(r, indent=2).encode()))

    c = pick_best(results)
    tps_c = c["tokens_per_s"]
    print(f"\n{'':4}{'setting':<32}{'tokens/s':>12}{'vs (a)':>9}{'time-to-quality':>17}")
    rows = [("(a)", "tutorial loop, batch 64", tps_a, 1.0), ("(b)", "this project, batch 64", tps_b, None)]
    rows.append(("(c)", f"batch {c['batch_size']}, lr {c['learning_rate']:g}{amp}", tps_c, c["time_to_quality"]))
    for name, setting, tps, ttq in rows:
        ttq_text = "-" if ttq is None else f"{ttq:.3f}"
        print(f"{name:<4}{setting:<32}{tps:>12,.0f}{tps / tps_a:>8.2f}x{ttq_text:>17}")
    if c["time_to_quality"] is not None:
        print(f"time-to-quality: (c) took {c['time_to_quality']:.3f} of (a)'s {seconds_a:.1f} s to reach {loss_a:.4f}")
    else:
        print(f"time-to-quality: no (c) reached {loss_a:.4f} within {args.max_ratio}x (a)'s time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
