"""The `chatbot` command: every expected failure is one line on stderr, a bug is a traceback and a request."""

from __future__ import annotations

import re

import pytest

import chatbot.export
from chatbot.cli import COMMANDS, main
from chatbot.errors import ChatbotError


def failing(err: BaseException):
    def run(args):
        raise err

    return run


@pytest.mark.parametrize(
    "err, line",
    [
        (ChatbotError("no pairs to evaluate"), "no pairs to evaluate"),
        (FileNotFoundError(2, "No such file or directory", "corpus/x.tsv"), "No such file or directory: corpus/x.tsv"),
        (PermissionError(13, "Permission denied", "/root/out"), "Permission denied: /root/out"),
        (OSError(28, "No space left on device"), "No space left on device"),
        (
            UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
            "a file is not UTF-8 text (invalid start byte at byte 0); convert it to UTF-8",
        ),
        (MemoryError(), "out of memory; try a smaller --batch-size or model, or another --device"),
    ],
    ids=["ChatbotError", "missing file", "permission", "disk full", "not utf-8", "memory"],
)
def test_expected_failures_are_one_line_and_exit_1(monkeypatch, capsys, err, line):
    monkeypatch.setattr(chatbot.export, "run", failing(err))
    assert main(["export"]) == 1
    assert capsys.readouterr().err == f"chatbot export: error: {line}\n"


def test_a_bug_shows_its_traceback_and_asks_for_a_report(monkeypatch, capsys):
    monkeypatch.setattr(chatbot.export, "run", failing(KeyError("model")))
    assert main(["export"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "KeyError: 'model'" in err
    assert err.splitlines()[-1] == (
        "chatbot export: internal error (a bug, not your input): please report it with the traceback above"
    )


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    monkeypatch.setattr(chatbot.export, "run", failing(KeyboardInterrupt()))
    assert main(["export"]) == 130
    assert capsys.readouterr().err == "chatbot export: interrupted\n"


@pytest.mark.parametrize(
    "argv, line",
    [
        (["export", "--bogus"], "chatbot export: error: unrecognized arguments: --bogus (see `chatbot export --help`)"),
        (
            ["export", "--out"],
            "chatbot export: error: argument --out: expected one argument (see `chatbot export --help`)",
        ),
        (["bogus"], "chatbot: error: argument COMMAND: invalid choice: 'bogus' (choose from "),
    ],
)
def test_usage_errors_are_one_line_and_exit_1(capsys, argv, line):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_gives_each_default_once(capsys, name):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    # One entry per flag: from a line starting with "  -" to the next one.
    entries = re.split(r"\n(?=  -)", text)
    assert len(entries) > 2
    for entry in entries:
        assert entry.count("(default") <= 1, entry
        assert "(default: None)" not in entry, entry


def test_ctrl_c_while_importing_the_command_is_one_line_too(monkeypatch, capsys):
    """Ctrl-C in the second or two `import torch` takes: no traceback from deep inside torch."""
    import importlib

    def interrupted_import(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib, "import_module", interrupted_import)
    assert main(["train", "data", "--out", "run"]) == 130
    assert capsys.readouterr().err == "chatbot train: interrupted\n"
