"""`chatbot chat`: the REPL answers, leaves on quit/q/EOF, and never shows a traceback."""

import subprocess
import sys

from chatbot.chat import chat_loop
from chatbot.cli import main
from chatbot.reply import Chatbot, DecodeSettings
from tests.chatbot.tinybot import REPO_ROOT, one_thread, trained_model, write_checkpoint  # noqa: F401


def run_loop(lines, settings=None):
    model, voc = trained_model()
    bot, out = Chatbot(model, voc), []
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
    lines = [line for line in out.stdout.decode().split("> ") if line.strip()]
    assert lines[0].strip() == "Bot: I'm fine." and len(lines) == 5


def test_command_errors_are_one_line(tmp_path, capsys):
    assert main(["chat", "--checkpoint", str(tmp_path / "missing.pt")]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "checkpoint not found" in err
    assert main(["chat", "--temperature", "0", "--checkpoint", str(tmp_path / "missing.pt")]) == 1
    assert "temperature must be > 0" in capsys.readouterr().err
