"""Compare decoding settings by reading their replies blind: a sheet to judge, then the counts per setting.

    python scripts/blind_check.py sheet corpus/prepared/cornell-v1 --out runs/blind \\
        --exclude-train corpus/prepared/w20,corpus/prepared/w30-all \\
        --setting shipped: --setting block3:no_repeat_ngram_size=3
    # judge runs/blind/sheet.md: put s, d or w (sensible / dull / wrong) after each reply's letter
    python scripts/blind_check.py score runs/blind

`sheet` picks `--n` queries of a split (a fixed shuffle; `--min-words` to `--max-words` words; none of them
the query of a training pair of the `--exclude-train` datasets, so no model has seen them, and none a probe
prompt), replies to query n with seed n - 1 under every setting (the chat tab's defaults, changed by
`key=value,...`; `checkpoint=PATH` replies with another model), and writes `sheet.md` with each query's replies in a shuffled order under letters, and
`key.json`, which says which letter is which setting. Equal replies share one letter, so the judge sees
each reply once; `--out` must be a new or empty folder, so a judged sheet is never replaced. `score` reads the judged sheet and prints sensible / dull / wrong per setting.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.app import tab_defaults  # noqa: E402
from chatbot.checkpoint import DEFAULT_RELEVANCE  # noqa: E402
from chatbot.decode import DecodeSettings  # noqa: E402
from chatbot.errors import ChatbotError  # noqa: E402
from chatbot.evaluate import PROBES, TUTORIAL, read_pairs, train_pairs  # noqa: E402
from chatbot.files import atomic_write_bytes, check_out_dir  # noqa: E402
from chatbot.normalize import normalize_string  # noqa: E402
from chatbot.reply import DECODE_FLAG_TYPES, Chatbot  # noqa: E402

LABELS = {"s": "sensible", "d": "dull", "w": "wrong"}
LINE = re.compile(r"^- \*\*([a-z])\*\* \[([sdw ]?)\] ")


def parse_setting(text: str, base: DecodeSettings) -> tuple[str, DecodeSettings, str | None]:
    """'name:key=value,...' -> (name, base with those fields changed, the checkpoint= given or None).

    Values are read and checked as the decoding flags of `chatbot chat` read theirs."""
    name, _, changes = text.partition(":")
    kwargs: dict[str, object] = {}
    checkpoint = None
    for item in filter(None, changes.split(",")):
        key, _, value = item.partition("=")
        if key == "checkpoint":
            checkpoint = value
        elif key in DECODE_FLAG_TYPES:
            try:
                kwargs[key] = DECODE_FLAG_TYPES[key](value)
            except argparse.ArgumentTypeError as err:
                raise ChatbotError(f"{key} in {text!r} {err}") from None
        else:
            raise ChatbotError(f"unknown setting {key!r} in {text!r}")
    return name, replace(base, **kwargs), checkpoint


def pick_queries(pairs: list[tuple[str, str]], trained_queries: set[str], n: int, seed: int, words: range) -> list[str]:
    """n distinct queries of `pairs`, a fixed shuffle, none trained on and none a probe prompt."""
    probes = {normalize_string(p) for p in PROBES} | {normalize_string(p) for p, _ in TUTORIAL}
    queries = sorted({q for q, _ in pairs})
    random.Random(seed).shuffle(queries)
    keep = [q for q in queries if len(q.split()) in words and q not in trained_queries and q not in probes]
    return keep[:n]


def sheet(args: argparse.Namespace) -> int:
    # A new or empty folder only: a sheet already there may hold judgments, which must not be lost.
    out = check_out_dir(args.out, None, [args.data])
    torch.set_num_threads(args.threads)
    default = Chatbot.from_checkpoint(args.checkpoint, relevance=args.relevance)
    relevance = args.relevance or (DEFAULT_RELEVANCE if DEFAULT_RELEVANCE.exists() else None)
    base = tab_defaults(default)
    settings, bots = {}, {}
    for text in args.setting:
        name, setting, checkpoint = parse_setting(text, base)
        settings[name] = setting
        bots[name] = default if checkpoint is None else Chatbot.from_checkpoint(checkpoint, relevance=relevance)
    trained = set()
    for path in filter(None, args.exclude_train.split(",")):
        trained |= {q for q, _ in train_pairs(path)}
    queries = pick_queries(read_pairs(args.data, args.split), trained, args.n, args.seed, range(args.min_words, args.max_words + 1))
    rng = random.Random(args.seed + 1)
    lines, key = [f"# Blind check: {len(queries)} queries of {args.data} ({args.split})", ""], []
    for i, query in enumerate(queries):
        replies = {name: bots[name].reply(query, replace(s, seed=i)) for name, s in settings.items()}
        distinct = sorted(set(replies.values()))
        rng.shuffle(distinct)
        letters = {reply: "abcdefgh"[j] for j, reply in enumerate(distinct)}
        key.append({"query": query, "letters": {name: letters[r] for name, r in replies.items()}})
        lines += [f"## {i + 1}. {query}", ""] + [f"- **{letters[r]}** [ ] {r}" for r in distinct] + [""]
    atomic_write_bytes(out / "sheet.md", "\n".join(lines).encode("utf-8"))
    checkpoints = {n: bots[n].description for n in settings}
    meta = {"settings": {n: repr(s) for n, s in settings.items()}, "checkpoints": checkpoints, "items": key}
    atomic_write_bytes(out / "key.json", json.dumps(meta, indent=1).encode("utf-8"))
    print(f"wrote {out / 'sheet.md'} ({len(queries)} queries, {len(settings)} settings) and {out / 'key.json'}")
    return 0


def read_judgments(text: str) -> list[dict[str, str]]:
    """A judged sheet -> per query, letter -> 'sensible' / 'dull' / 'wrong'."""
    items: list[dict[str, str]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            items.append({})
        elif (m := LINE.match(line)) and items:
            if m.group(2).strip() not in LABELS:
                raise ChatbotError(f"reply not judged: {line!r}")
            items[-1][m.group(1)] = LABELS[m.group(2)]
    return items


def score(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    try:
        meta = json.loads((folder / "key.json").read_text(encoding="utf-8"))
        names, items = list(meta["settings"]), meta["items"]
    except (ValueError, KeyError, TypeError):
        raise ChatbotError(f"{folder / 'key.json'} is not the key `blind_check.py sheet` writes") from None
    judged = read_judgments((folder / "sheet.md").read_text(encoding="utf-8"))
    if len(judged) != len(items):
        raise ChatbotError(f"sheet has {len(judged)} queries, key.json {len(items)}")
    print("| setting | sensible | dull | wrong |\n|---|---|---|---|")
    for name in names:
        labels = [j[item["letters"][name]] for j, item in zip(judged, items, strict=True)]
        print(f"| {name} | {labels.count('sensible')} | {labels.count('dull')} | {labels.count('wrong')} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sheet", help="write the sheet to judge and its key")
    p.add_argument("data", help="prepared dataset folder or TSV to draw queries from")
    p.add_argument("--out", required=True, help="folder for sheet.md and key.json")
    p.add_argument("--checkpoint", default=None, help="model (default: the shipped one)")
    p.add_argument("--relevance", default=None, help="relevance model for rerank (default: the shipped one)")
    p.add_argument("--setting", action="append", required=True, help="NAME:key=value,... over the tab's defaults")
    p.add_argument("--exclude-train", default="", help="prepared folders whose training queries are left out")
    p.add_argument("--split", default="valid", help="split of a prepared folder")
    p.add_argument("--n", type=int, default=40, help="queries")
    p.add_argument("--seed", type=int, default=123, help="shuffle seed")
    p.add_argument("--min-words", type=int, default=3)
    p.add_argument("--max-words", type=int, default=9)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.set_defaults(run=sheet)
    s = sub.add_parser("score", help="count a judged sheet's labels per setting")
    s.add_argument("folder", help="the folder `sheet` wrote")
    s.set_defaults(run=score)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ChatbotError, OSError, ValueError) as err:
        print(f"blind_check: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
