"""Chat in the terminal: the same as `chatbot chat` (run `python scripts/chat.py --help` for the flags)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["chat", *sys.argv[1:]]))
