"""Train the rerank strategy's relevance model (`chatbot.relevance.DualEncoder`) on a prepared dataset.

    python scripts/train_relevance.py corpus/prepared/w20 --out runs/relevance --time-budget-minutes 15

A plain loop: shuffled epochs of batches -> both encoders -> in-batch cross-entropy -> Adam. Every
`--eval-every` steps, hits@1/20 on the valid split (the true reply ranked first among it and 19
other valid replies); `best.pt` keeps the best, with the tf-idf table of the training lines that
rerank's word-overlap term uses (`chatbot.overlap`; word tokenizers only). The tokenizer is the
dataset's, so the seq2seq model trained on the same folder shares it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.batching import encode_pairs, epoch_order, gather_batch, tensorize  # noqa: E402
from chatbot.checkpoint import save_checkpoint  # noqa: E402
from chatbot.cli import float_in, int_in  # noqa: E402
from chatbot.errors import ChatbotError  # noqa: E402
from chatbot.evaluate import candidate_sets, hits_at_1  # noqa: E402
from chatbot.overlap import Overlap  # noqa: E402
from chatbot.prepare import load_prepared  # noqa: E402
from chatbot.relevance import DualEncoder, RelevanceConfig, in_batch_loss, relevance_scores  # noqa: E402


def valid_hits(model: DualEncoder, examples: list[tuple[list[int], list[int]]], k: int = 20) -> float:
    """hits@1/k of `model` on (query ids, reply ids) examples."""
    sets = candidate_sets(len(examples), k, seed=0)
    flat = [(i, j) for i, row in enumerate(sets) for j in row]
    scores = relevance_scores(model, [examples[i][0] for i, _ in flat], [examples[j][1] for _, j in flat])
    model.train()
    return hits_at_1(scores.view(len(examples), k))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="prepared dataset folder (from `chatbot prepare`)")
    parser.add_argument("--out", required=True, help="folder for best.pt (must not hold one already)")
    parser.add_argument("--hidden-size", type=int_in(8, 4096), default=RelevanceConfig.hidden_size, help="encoder size")
    parser.add_argument("--batch-size", type=int_in(2, 100_000), default=256, help="pairs per step (the negatives)")
    parser.add_argument("--learning-rate", type=float_in(0, low_open=True), default=1e-3, help="Adam learning rate")
    parser.add_argument("--epochs", type=int_in(1), default=20, help="passes over the training pairs")
    parser.add_argument("--time-budget-minutes", type=float_in(0), default=0.0, help="stop after this long (0: none)")
    parser.add_argument("--eval-every", type=int_in(1), default=200, help="validate every this many steps")
    parser.add_argument("--eval-pairs", type=int_in(20), default=1000, help="valid pairs for hits@1/20")
    parser.add_argument("--num-threads", type=int_in(0, 1024), default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int_in(0), default=0, help="random seed")
    args = parser.parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    out = Path(args.out)
    try:
        data = load_prepared(args.data_dir)
        if (out / "best.pt").exists():
            raise ChatbotError(f"{out / 'best.pt'} exists; pick another --out")
    except ChatbotError as err:
        print(f"train_relevance: error: {err}", file=sys.stderr)
        return 1
    pairs = tensorize(encode_pairs(data.train, data.tokenizer))
    words = data.tokenizer.state_dict().get("words")  # None for SentencePiece: no overlap table then
    overlap = Overlap.from_texts(t for pair in data.train for t in pair).state_dict(words) if words else None
    valid = encode_pairs(data.valid[: args.eval_pairs], data.tokenizer)
    torch.manual_seed(args.seed)
    config = RelevanceConfig(vocab_size=len(data.tokenizer), hidden_size=args.hidden_size)
    model = DualEncoder(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    best, step, start = -1.0, 0, time.monotonic()
    per_epoch = len(pairs) // args.batch_size  # full batches only: a short one has too few negatives
    bar = tqdm(total=per_epoch * args.epochs, unit="step", dynamic_ncols=True, disable=None)
    stop = False
    for epoch in range(args.epochs):
        order = torch.tensor(epoch_order(len(pairs), epoch, args.seed))
        for b in range(per_epoch):
            batch = gather_batch(pairs, order[b * args.batch_size : (b + 1) * args.batch_size])
            reply_lengths = batch.mask.sum(dim=0)  # (B,)
            loss = in_batch_loss(model(batch.input_seq, batch.lengths, batch.target, reply_lengths))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            bar.update()
            if step % args.eval_every == 0 or step == per_epoch * args.epochs:
                hits = valid_hits(model, valid)
                bar.write(f"step {step} (epoch {epoch}): loss {float(loss.detach()):.3f}, valid hits@1/20 {hits:.3f}")
                if hits > best:
                    best = hits
                    save_checkpoint(
                        out / "best.pt",
                        {
                            "kind": "relevance",
                            "model_config": config.to_dict(),
                            "model": model.state_dict(),
                            "tokenizer": data.tokenizer.state_dict(),
                            **({"overlap": overlap} if overlap else {}),
                            "normalize": data.normalize,
                            "max_length": int(data.max_length),
                            "step": step,
                            "epoch": epoch,
                            "metrics": {"valid_hits_at_1": hits, "loss": float(loss.detach())},
                        },
                    )
            if args.time_budget_minutes and time.monotonic() - start > args.time_budget_minutes * 60:
                stop = True
                break
        if stop:
            break
    bar.close()
    if best < 0:
        hits = valid_hits(model, valid)
        best = hits
    print(
        f"best valid hits@1/20 {best:.3f}; saved {out / 'best.pt'} ({math.floor((time.monotonic() - start) / 60)} min)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
