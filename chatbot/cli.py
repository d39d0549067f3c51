"""The `chatbot` command: one subcommand per pipeline stage.

Each subcommand lives in its own module, which exposes `configure_parser(parser)` and
`run(args) -> int | None`. Only the chosen module is imported, so `chatbot --help` is instant and
`chatbot prepare` never pays for importing Gradio.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

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


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, `chatbot CMD: error: ...`, and exit 1 like every other
    error (argparse's own status is 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class DefaultsOnceFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to a flag's help unless the help already says its default, or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "(default" in text
            or any(action.default is v for v in (None, False, argparse.SUPPRESS))
            or action.nargs == 0
        ):
            return text
        return super()._get_help_string(action)


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse `type=` that accepts integers in low..high (no upper bound when `high` is None)."""
    allowed = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {value}")
        return value

    parse.__name__ = "int"
    return parse


def float_in(
    low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False, allow_inf: bool = False
) -> Callable[[str], float]:
    """An argparse `type=` that accepts numbers between low and high (each end closed unless `*_open`);
    nan always refused, and inf unless `allow_inf`."""
    right = "" if high == math.inf else f"{high:g}"
    allowed = f"a number in {'(' if low_open else '['}{'-inf' if low == -math.inf else f'{low:g}'}, {right or 'inf'}"
    allowed += ")" if high_open or (high == math.inf and not allow_inf) else "]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}") from None
        above_low = low < value if low_open else low <= value
        below_high = value < high if high_open else value <= high
        if not (above_low and below_high) or (math.isinf(value) and not allow_inf):  # nan fails every comparison
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text}")
        return value

    parse.__name__ = "float"
    return parse


def int_or_none(text: str) -> int:
    """An argparse `type=` for an optional integer such as a seed (any integer)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items())
    parser = OneLineErrorParser(
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


def expected_failure(err: BaseException) -> str | None:
    """One line for a failure that is the user's files or machine, not a bug; None for a bug."""
    if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)):
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror or err}{where}"
    if isinstance(err, OSError):  # a full disk, a dropped connection, a read-only file system ...
        where = f" ({err.filename})" if err.filename else ""
        return f"{err.strerror or str(err).splitlines()[0]}{where}"
    if isinstance(err, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({err.reason} at byte {err.start}); convert it to UTF-8"
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":  # torch's CUDA OOM too
        return "out of memory; try a smaller --batch-size or model, or another --device"
    if isinstance(err, ModuleNotFoundError):
        return f"the package {err.name} is missing; install the project with `pip install -e .`"
    return None


def main(argv: list[str] | None = None) -> int:
    """Parse `argv`, run the chosen command, and turn user errors into one line on stderr."""
    from chatbot.errors import ChatbotError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv[:1] or ["--help"])  # prints help or a usage error and exits
        return 1
    name, rest = argv[0], argv[1:]
    module_name, help_ = COMMANDS[name]
    prog = f"chatbot {name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        print(f"{prog}: error: {expected_failure(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C in the second or two of importing torch
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    parser = OneLineErrorParser(prog=prog, description=help_, formatter_class=DefaultsOnceFormatter)
    module.configure_parser(parser)
    args = parser.parse_args(rest)
    try:
        code = module.run(args)
    except ChatbotError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `chatbot chat | head`: the reader left; nothing more to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - so the interpreter's final flush fails quietly
        return 1
    except Exception as err:  # noqa: BLE001 - the one place that decides how failures look
        line = expected_failure(err)
        if line is None:
            traceback.print_exc()
            print(
                f"{prog}: internal error (a bug, not your input): please report it with the traceback above",
                file=sys.stderr,
            )
            return 1
        print(f"{prog}: error: {line}", file=sys.stderr)
        return 1
    return int(code or 0)
