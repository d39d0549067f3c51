"""Write a hold-out file: the pair keys of a prepared dataset's valid and test splits.

    python scripts/make_hold_out.py corpus/prepared/cornell-v1 --out corpus/hold_out/cornell-v1.json

`chatbot prepare --hold-out FILE` then keeps the conversations of those pairs in valid/test, so a new
dataset never trains on what an earlier model is scored on. The file holds fingerprints
(`chatbot.corpus.pair_key`), not the text: the corpus itself stays out of the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.corpus import pair_key  # noqa: E402
from chatbot.errors import ChatbotError  # noqa: E402
from chatbot.prepare import load_prepared  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="prepared dataset folder (from `chatbot prepare`)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--note", default="", help="what these pairs are, stored in the file")
    args = parser.parse_args(argv)
    try:
        data = load_prepared(args.dataset)
    except ChatbotError as err:
        print(f"make_hold_out: error: {err}", file=sys.stderr)
        return 1
    out = {
        "note": args.note,
        "normalize": data.normalize,
        "valid": sorted({pair_key(q, r) for q, r in data.valid}),
        "test": sorted({pair_key(q, r) for q, r in data.test}),
    }
    Path(args.out).write_text(json.dumps(out, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(out['valid'])} valid and {len(out['test'])} test pair keys")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
