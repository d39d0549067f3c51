"""Reply latency on this CPU: our greedy and beam-5 next to the tutorial's GreedySearchDecoder, same model.

    python scripts/bench_decode.py                      # the shipped model, or a tutorial-size random one
    python scripts/bench_decode.py --checkpoint runs/x/model.pt --repeats 20 --threads 1 2

Each timing is one whole reply, text in -> text out (normalize, tokenize, encode, decode, detokenize),
as a user waits for it. The tutorial's path is its `evaluate()`: normalizeString, indexesFromSentence,
`GreedySearchDecoder` for MAX_LENGTH steps with no stop at EOS, index2word, EOS/PAD dropped.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.checkpoint import DEFAULT_CHECKPOINT
from chatbot.decode import GreedySearchDecoder, source_tensors
from chatbot.evaluate import PROBES
from chatbot.model import ModelConfig, Seq2Seq
from chatbot.normalize import normalize_string
from chatbot.reply import Chatbot, DecodeSettings
from chatbot.tokenizer import EOS_token, PAD_token
from chatbot.vocab import Voc


def tutorial_size_bot(seed: int = 0) -> Chatbot:
    """A random network of the tutorial's size (hidden 500, 2+2 layers, 7,826 words) with a made-up Voc."""
    torch.manual_seed(seed)
    voc = Voc("bench")
    for word in {w for p in PROBES for w in normalize_string(p).split()}:
        voc.addWord(word)
    for i in range(ModelConfig().vocab_size - voc.num_words):
        voc.addWord(f"w{i}")
    model = Seq2Seq(ModelConfig(vocab_size=len(voc))).eval()
    return Chatbot(model, voc, "tutorial", 10, "random tutorial-size model (hidden 500, 2+2 layers, 7,826 words)")


def tutorial_reply(searcher: GreedySearchDecoder, bot: Chatbot, text: str) -> str:
    """The tutorial's evaluate() + evaluateInput() formatting, on our model and tokenizer."""
    with torch.no_grad():
        ids = bot.tokenizer.encode(normalize_string(text, bot.normalize)) + [EOS_token]
        tokens, _ = searcher(*source_tensors(ids), bot.max_length)
        # The tutorial drops EOS and PAD words but keeps whatever it generated after EOS.
        return " ".join(bot.tokenizer.decode([t]) for t in tokens.tolist() if t not in (EOS_token, PAD_token))


def measure(fn, prompts: list[str], repeats: int) -> list[float]:
    """Milliseconds per call, every prompt `repeats` times after one warm-up pass."""
    for p in prompts:
        fn(p)
    times = []
    for _ in range(repeats):
        for p in prompts:
            start = time.perf_counter()
            fn(p)
            times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="model to time (default: the shipped one if present)")
    parser.add_argument("--random", action="store_true", help="time a random tutorial-size model instead")
    parser.add_argument("--repeats", type=int, default=10, help="passes over the probe prompts")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts to try")
    args = parser.parse_args()

    if args.random or (args.checkpoint is None and not DEFAULT_CHECKPOINT.exists()):
        bot = tutorial_size_bot()
    else:
        bot = Chatbot.from_checkpoint(args.checkpoint)
    searcher = GreedySearchDecoder(bot.model)
    greedy, beam5 = DecodeSettings("greedy"), DecodeSettings("beam", beam_width=5)
    print(f"model: {bot.description}")
    print(f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads by default")
    print(f"torch {torch.__version__}; {len(PROBES)} prompts x {args.repeats} repeats")
    mean_len = statistics.mean(len(bot.reply_ids(p, greedy)) for p in PROBES)
    print(f"mean greedy reply length: {mean_len:.1f} tokens (EOS included); max_length {bot.max_length}")
    print()
    print("| threads | decoder | p50 ms | p90 ms |")
    print("|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows = [
            ("tutorial GreedySearchDecoder", lambda p: tutorial_reply(searcher, bot, p)),
            ("greedy (stops at EOS)", lambda p: bot.reply(p, greedy)),
            ("beam-5", lambda p: bot.reply(p, beam5)),
        ]
        for name, fn in rows:
            ms = measure(fn, PROBES, args.repeats)
            print(f"| {threads} | {name} | {np.percentile(ms, 50):.1f} | {np.percentile(ms, 90):.1f} |", flush=True)


if __name__ == "__main__":
    main()
