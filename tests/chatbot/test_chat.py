"""`chatbot chat`: the REPL answers, leaves on quit/q/EOF, and never shows a traceback."""

import copy
import io
import subprocess
import sys

import pytest
import torch

from chatbot.chat import NO_REPLY, chat_loop
from chatbot.cli import main
from chatbot.reply import Chatbot, DecodeSettings
from chatbot.tokenizers import EOS_token
from tests.chatbot.tinybot import REPO_ROOT, one_thread, trained_model, write_checkpoint  # noqa: F401


def run_loop(lines, settings=None, model=None):
    trained, voc = trained_model()
    bot, out = Chatbot(model or trained, voc), []
    feed = iter(lines)

    def read(prompt):
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    chat_loop(bot, settings or DecodeSettings(), read, out.append)
    return out


def test_replies_then_quits():
    assert run_loop(["How are you?", "", "hello", "quit", "never read"]) == ["Bot: I'm fine.", "Bot: Hi."]
    assert run_loop(["hello", " Q "]) == ["Bot: Hi."]
    assert run_loop(["hello"]) == ["Bot: Hi.", ""]  # Ctrl-D: a newline, then leave


def test_ctrl_c_leaves_quietly():
    model, voc = trained_model()

    def read(prompt):
        raise KeyboardInterrupt

    out = []
    chat_loop(Chatbot(model, voc), DecodeSettings(), read, out.append)
    assert out == [""]


@pytest.mark.slow  # a fresh interpreter importing torch
def test_command_on_any_input_without_traceback(tmp_path):
    model, voc = trained_model()
    ckpt = write_checkpoint(tmp_path / "m.pt", model, voc)
    stdin = "how are you ?\n\x00\x07\n😀 你好\n" + "x" * 10_000 + "\n"
    stdin_bytes = stdin.encode() + b"\xff\xfe not utf-8\nq\n"
    cmd = [
        sys.executable,
        "-m",
        "chatbot",
        "chat",
        "--checkpoint",
        str(ckpt),
        "--strategy",
        "beam",
        "--beam-width",
        "3",
    ]
    out = subprocess.run(cmd, input=stdin_bytes, capture_output=True, cwd=REPO_ROOT, timeout=300)
    assert out.returncode == 0, out.stderr.decode()
    assert b"Traceback" not in out.stderr
    lines = out.stdout.decode().splitlines()  # piped input: replies only, no "> " prompts
    assert lines[0] == "Bot: I'm fine." and len(lines) == 5 and all(line.startswith("Bot: ") for line in lines)


def test_command_errors_are_one_line(tmp_path, capsys):
    assert main(["chat", "--checkpoint", str(tmp_path / "missing.pt")]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "checkpoint not found" in err
    with pytest.raises(SystemExit) as exit_:
        main(["chat", "--temperature", "0", "--checkpoint", str(tmp_path / "missing.pt")])
    assert exit_.value.code == 1
    assert "argument --temperature: must be a number in (0, inf], not 0" in capsys.readouterr().err


def test_a_reply_that_is_only_eos_shows_a_placeholder():
    model, voc = trained_model()
    mute = copy.deepcopy(model)
    with torch.no_grad():
        mute.decoder.out.bias[EOS_token] = 1e4  # EOS first, always
    out = run_loop(["hello", "how are you?"], DecodeSettings(min_length=0), mute)
    assert out == [f"Bot: {NO_REPLY}", f"Bot: {NO_REPLY}", ""]


def test_piped_input_gets_no_prompts_a_terminal_does(tmp_path, capsys, monkeypatch):
    model, voc = trained_model()
    ckpt = write_checkpoint(tmp_path / "m.pt", model, voc)
    monkeypatch.setattr(sys, "stdin", io.StringIO("how are you ?\nhello\n"))
    assert main(["chat", "--checkpoint", str(ckpt)]) == 0
    assert capsys.readouterr().out == "Bot: I'm fine.\nBot: Hi.\n\n"

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("hello\nq\n"))
    assert main(["chat", "--checkpoint", str(ckpt)]) == 0
    assert capsys.readouterr().out == "> Bot: Hi.\n> "


def test_sampled_replies_differ_across_turns_by_default_and_repeat_with_a_seed(tmp_path, monkeypatch, capsys):
    """The seed bug: a fixed default seed gave every turn the same draw ("Shut up." five times)."""
    from tests.chatbot.tinybot import make_voc, random_model

    voc = make_voc()
    ckpt = write_checkpoint(tmp_path / "m.pt", random_model(len(voc), seed=3, hidden=32), voc)
    monkeypatch.setattr("sys.stdin", io.StringIO("how are you ?\n" * 6))
    assert main(["chat", "--checkpoint", str(ckpt), "--strategy", "sample"]) == 0
    fresh = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(fresh) == 6 and len(set(fresh)) > 1  # a random model's draws: six of one reply is ~impossible
    monkeypatch.setattr("sys.stdin", io.StringIO("how are you ?\n" * 6))
    assert main(["chat", "--checkpoint", str(ckpt), "--strategy", "sample", "--seed", "7"]) == 0
    seeded = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(seeded) == 6 and len(set(seeded)) == 1


def test_retrieve_without_a_reply_index_is_refused_before_the_first_message(tmp_path, capsys, monkeypatch):
    model, voc = trained_model()
    ckpt = write_checkpoint(tmp_path / "m.pt", model, voc)
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    assert main(["chat", "--checkpoint", str(ckpt), "--strategy", "rerank", "--retrieve", "8"]) == 1
    err = capsys.readouterr()
    assert "reply index" in err.err and len(err.err.strip().splitlines()) == 1 and "Bot:" not in err.out
