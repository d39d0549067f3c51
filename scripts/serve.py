"""Serve the chat tab: the same as `chatbot serve` (run `python scripts/serve.py --help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.cli import main  # noqa: E402

sys.exit(main(["serve", *sys.argv[1:]]))
