"""Train the chatbot: the same as `python -m chatbot train ...` (see `--help`)."""

import sys

from chatbot.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
