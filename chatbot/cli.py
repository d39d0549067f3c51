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
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

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


def add_dataclass_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    helps: dict[str, str],
    types: dict[str, Callable[[str], Any]],
    title: str | None = None,
    choices: dict[str, Sequence[str]] | None = None,
    flags: dict[str, str] | None = None,
    only_given: bool = False,
) -> None:
    """One `--field-name` flag per field of the dataclass `cls` that `helps` documents, defaulted by the
    dataclass and checked by `types[name]` (argparse `type=`); booleans get `--x/--no-x`.

    `choices` limits a field's values; `flags` renames a flag (`{"fmt": "--format"}`). With `only_given`,
    a flag not given leaves no attribute on the namespace (so `--resume` can tell "given" from "default").
    """
    group = parser.add_argument_group(title) if title else parser
    defaults = cls()
    for f in fields(cls):
        if f.name not in helps:
            continue
        default = getattr(defaults, f.name)
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": helps[f.name]}
        if only_given:
            kwargs.update(default=argparse.SUPPRESS, help=f"{helps[f.name]} (default: {default})")
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = types[f.name]
            if choices and f.name in choices:
                kwargs["choices"] = list(choices[f.name])
        group.add_argument((flags or {}).get(f.name, "--" + f.name.replace("_", "-")), **kwargs)


def device_name(text: str) -> str:
    """An argparse `type=`: "auto" or a torch device this machine has (cuda without a GPU is refused here,
    not mid-start)."""
    if text == "auto":
        return text
    import torch  # here, not at the top: `chatbot --help` must not wait for torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (auto, cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text} was asked for, but torch sees no CUDA device; use cpu")
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(
                f"{text}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError("mps was asked for, but this machine has no Apple GPU; use cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"{text}: the model runs on cpu, cuda or mps")
    return text


def resolve_device(name: str, local_rank: int = 0):
    """A `--device` value -> a torch.device; "auto" is this rank's GPU when CUDA is present, else the CPU."""
    import torch

    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """The one `--device` flag: auto by default, checked against this machine's devices."""
    parser.add_argument(
        "--device",
        type=device_name,
        default="auto",
        help="torch device: auto (CUDA when present, else the CPU), cpu, cuda, cuda:N or mps",
    )


def add_checkpoint_flags(parser: argparse.ArgumentParser, many: bool = False, rerank_models: bool = False) -> None:
    """The one `--checkpoint` flag (given twice with `many`: several models on the same pairs) and, for the
    rerank strategy, `--backward` and `--relevance`. None means the shipped model (and its own companions)."""
    parser.add_argument(
        "--checkpoint",
        type=Path,
        action="append" if many else "store",
        default=None,
        help="model checkpoint (default: the shipped model, chatbot/pretrained/model.pt)"
        + ("; give it twice to score two models on the same pairs" if many else ""),
    )
    if rerank_models:
        parser.add_argument(
            "--backward",
            type=Path,
            default=None,
            help="backward (reply -> query) checkpoint for rerank (default: the shipped one, with the shipped model)",
        )
        parser.add_argument(
            "--relevance",
            type=Path,
            default=None,
            help="relevance model for rerank (scripts/train_relevance.py; default: the shipped one, with the shipped model)",
        )


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
