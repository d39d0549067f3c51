"""`chatbot chat`: talk to a model in the terminal (the tutorial's `evaluateInput`, without its crashes).

Type a line, get a reply; `quit`, `q` or Ctrl-D leaves. No input ends it with a traceback: the
tutorial printed "Error: Encountered unknown word." and carried on; here unknown words simply map to UNK.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from chatbot.reply import Chatbot, DecodeSettings, add_decode_arguments, settings_from_args

QUIT = {"quit", "q"}


def chat_loop(
    bot: Chatbot,
    settings: DecodeSettings,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
) -> None:
    """Read lines until quit/q/EOF/Ctrl-C, answering each one."""
    while True:
        try:
            line = read("> ")
        except (EOFError, KeyboardInterrupt):
            write("")
            return
        if line.strip().lower() in QUIT:
            return
        if not line.strip():
            continue
        write(f"Bot: {bot.reply(line, settings)}")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped model)")
    add_decode_arguments(parser)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    bot = Chatbot.from_checkpoint(args.checkpoint)
    # Bytes that are not UTF-8 (a Latin-1 terminal, a pasted binary) must not end the session.
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")
    print(f"{bot.description}\nType a message; quit, q or Ctrl-D to leave.", file=sys.stderr)
    chat_loop(bot, settings)
    return 0
