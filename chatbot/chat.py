"""`chatbot chat`: talk to a model in the terminal (the tutorial's `evaluateInput`, without its crashes).

Type a line, get a reply; `quit`, `q` or Ctrl-D leaves. No input ends it with a traceback: the
tutorial printed "Error: Encountered unknown word." and carried on; here unknown words simply map to UNK.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from chatbot.cli import add_checkpoint_flags
from chatbot.reply import Chatbot, DecodeSettings, add_decode_arguments, settings_from_args

QUIT = {"quit", "q"}
NO_REPLY = "(no reply to that; try other words)"  # shown (here and in the tab) instead of an empty reply


def chat_loop(
    bot: Chatbot,
    settings: DecodeSettings,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
    prompt: str = "> ",
) -> None:
    """Read lines until quit/q/EOF/Ctrl-C, answering each one (`prompt` "" for input that is not a person)."""
    while True:
        try:
            line = read(prompt)
        except (EOFError, KeyboardInterrupt):
            write("")
            return
        if line.strip().lower() in QUIT:
            return
        if not line.strip():
            continue
        reply = bot.reply(line, settings)
        write(f"Bot: {reply if reply.strip() else NO_REPLY}")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_flags(parser, rerank_models=True)
    add_decode_arguments(parser)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    bot = Chatbot.from_checkpoint(args.checkpoint, backward=args.backward, relevance=args.relevance)
    if settings.strategy == "rerank" and settings.retrieve:
        bot.require_index()
    # Bytes that are not UTF-8 (a Latin-1 terminal, a pasted binary) must not end the session.
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")
    print(f"{bot.description}\nType a message; quit, q or Ctrl-D to leave.", file=sys.stderr)
    # Piped input (a file, another program) gets the replies alone, not a "> " before each one.
    chat_loop(bot, settings, prompt="> " if sys.stdin.isatty() else "")
    return 0
