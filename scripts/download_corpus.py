"""Scriptable form of `chatbot download`: python scripts/download_corpus.py [cornell|convokit|all] [--dir DIR]."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runs from a checkout without installing
from chatbot.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["download", *sys.argv[1:]]))
