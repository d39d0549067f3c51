"""The `chatbot` command: one subcommand per pipeline stage.

Each subcommand lives in its own module, which exposes `configure_parser(parser)` and
`run(args) -> int | None`. Only the chosen module is imported, so `chatbot --help` is instant and
`chatbot prepare` never pays for importing Gradio.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Order is the pipeline's order.
COMMANDS: dict[str, tuple[str, str]] = {
    "download": ("chatbot.download", "download the Cornell Movie-Dialogs corpus (hash-checked, resumable)"),
    "prepare": ("chatbot.prepare", "parse, normalize, filter, split and tokenize a corpus into a dataset folder"),
    "train": ("chatbot.train", "train the GRU encoder-decoder with Luong attention"),
    "evaluate": ("chatbot.evaluate", "report perplexity, BLEU, distinct-n and dullness per decoding strategy"),
    "chat": ("chatbot.chat", "chat in the terminal"),
    "serve": ("chatbot.app", "serve the Gradio chat tab in the browser"),
    "export": ("chatbot.export", "export the encoder and decoder with torch.export"),
}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="chatbot",
        description="Seq2seq chatbot: download -> prepare -> train -> evaluate -> chat/serve.",
        epilog=f"commands:\n{lines}\n\nRun `chatbot COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of the commands below")
    parser.add_argument("--version", action="version", version=_version())
    return parser


def _version() -> str:
    from chatbot import __version__

    return f"chatbot {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run the chosen command, and turn user errors into one line on stderr."""
    from chatbot.errors import ChatbotError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv[:1] or ["--help"])  # prints help or a usage error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"chatbot {name}", description=help_, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    module.configure_parser(parser)
    args = parser.parse_args(rest)
    try:
        code = module.run(args)
    except ChatbotError as err:
        print(f"chatbot {name}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"chatbot {name}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
