"""Reply latency on this CPU: our greedy, beam-5 and rerank next to the tutorial's GreedySearchDecoder, same model.

    python scripts/bench_decode.py                      # the shipped model, or a tutorial-size random one
    python scripts/bench_decode.py --checkpoint runs/x/model.pt --repeats 20 --threads 1 2

Each timing is one whole reply, text in -> text out (normalize, tokenize, encode, decode, detokenize),
as a user waits for it. The tutorial's path is its `evaluate()`: normalizeString, indexesFromSentence,
`GreedySearchDecoder` for MAX_LENGTH steps with no stop at EOS, index2word, EOS/PAD dropped.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.app import tab_defaults
from chatbot.checkpoint import DEFAULT_CHECKPOINT
from chatbot.decode import source_tensors
from chatbot.evaluate import PROBES
from chatbot.model.network import ModelConfig, Seq2Seq
from chatbot.normalize import normalize_string
from chatbot.reply import Chatbot, DecodeSettings
from chatbot.tokenizers import EOS_token, PAD_token, Voc
from chatbot.tutorial import GreedySearchDecoder


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


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def measure(fns: dict, prompts: list[str], repeats: int) -> dict[str, tuple[list[float], list[float]]]:
    """name -> (wall ms, process CPU ms) per reply, every prompt `repeats` times after one warm-up pass.

    The decoders take turns prompt by prompt, so a busy neighbour slows them all alike. On a shared
    machine wall time includes waiting for a core; with one thread, CPU time is close to what an
    idle machine's wall time would be.
    """
    for fn in fns.values():
        for p in prompts:
            fn(p)
    times = {name: ([], []) for name in fns}
    for _ in range(repeats):
        for p in prompts:
            for name, fn in fns.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                fn(p)
                times[name][0].append((time.perf_counter() - start) * 1000)
                times[name][1].append((time.process_time() - start_cpu) * 1000)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="model to time (default: the shipped one if present)")
    parser.add_argument("--backward", default=None, help="backward model for rerank (default: the shipped one's)")
    parser.add_argument("--relevance", default=None, help="relevance model for rerank (default: the shipped one's)")
    parser.add_argument("--random", action="store_true", help="time a random tutorial-size model instead")
    parser.add_argument("--repeats", type=int, default=10, help="passes over the probe prompts")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts to try")
    args = parser.parse_args(argv)

    if args.random or (args.checkpoint is None and not DEFAULT_CHECKPOINT.exists()):
        bot = tutorial_size_bot()
    else:
        bot = Chatbot.from_checkpoint(args.checkpoint, backward=args.backward, relevance=args.relevance)
    searcher = GreedySearchDecoder(bot.model)
    greedy, beam5 = DecodeSettings("greedy"), DecodeSettings("beam", beam_width=5)
    print(f"model: {bot.description}")
    print(f"cpu: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads by default")
    print(f"torch {torch.__version__}; {len(PROBES)} prompts x {args.repeats} repeats")
    mean_len = statistics.mean(len(bot.reply_ids(p, greedy)) for p in PROBES)
    print(f"mean greedy reply length: {mean_len:.1f} tokens (EOS included); max_length {bot.max_length}")
    print()
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print("| threads | decoder | wall p50 ms | wall p90 ms | CPU p50 ms | CPU p90 ms |")
    print("|---|---|---|---|---|---|")
    tab = tab_defaults(bot)  # rerank when the bot has a model to score with, as in the tab
    for threads in args.threads:
        torch.set_num_threads(threads)
        fns = {
            "tutorial GreedySearchDecoder": lambda p: tutorial_reply(searcher, bot, p),
            "greedy (stops at EOS)": lambda p: bot.reply(p, greedy),
            "beam-5": lambda p: bot.reply(p, beam5),
        }
        if tab.strategy == "rerank":
            fns["rerank (the tab's default)"] = lambda p: bot.reply(p, tab)
        if tab.retrieve:
            fns["rerank without retrieved replies"] = lambda p: bot.reply(p, replace(tab, retrieve=0))
        for name, (wall, cpu) in measure(fns, PROBES, args.repeats).items():
            cells = " | ".join(f"{np.percentile(ms, q):.1f}" for ms in (wall, cpu) for q in (50, 90))
            print(f"| {threads} | {name} | {cells} |", flush=True)
    print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
