"""The shipped model's (or a checkpoint's) replies to the judged prompts, as JSON, to compare two commits.

    python scripts/dump_replies.py --out /tmp/after.json
    git worktree add --detach /tmp/before REV && (cd /tmp/before && python scripts/dump_replies.py --out /tmp/before.json)
    cmp /tmp/before.json /tmp/after.json

Greedy, beam-5, sampling (seed 3) and rerank (seed 5), whole and streamed, on the tutorial's 10 prompts and
the first 20 everyday prompts; one torch thread, so the draws repeat exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.evaluate import PROBES, TUTORIAL  # noqa: E402
from chatbot.reply import Chatbot, DecodeSettings  # noqa: E402

SETTINGS = [
    DecodeSettings("greedy"),
    DecodeSettings("beam"),
    DecodeSettings("sample", seed=3, temperature=0.8, top_p=0.9),
    DecodeSettings("rerank", seed=5, temperature=0.8, top_p=0.9),
]


def dump(bot: Chatbot, prompts: list[str]) -> dict[str, list[str]]:
    """strategy -> replies to `prompts`; strategy_stream -> the last streamed item for the first five."""
    out = {}
    for s in SETTINGS:
        out[s.strategy] = [bot.reply(p, s) for p in prompts]
        out[s.strategy + "_stream"] = [list(bot.reply_stream(p, s))[-1] for p in prompts[:5]]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped model)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bot = Chatbot.from_checkpoint(args.checkpoint)
    replies = dump(bot, [p for p, _ in TUTORIAL] + PROBES[:20])
    Path(args.out).write_text(json.dumps(replies, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {sum(len(v) for v in replies.values())} replies")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
