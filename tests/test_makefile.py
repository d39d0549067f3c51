"""The Makefile's entry points: Ctrl+C on `make chat` ends quietly, without make's error line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.chatbot.server import default_sigint

REPO = Path(__file__).resolve().parents[1]

# Stands in for .venv/bin/chatbot: waits for Ctrl+C and answers it as chatbot.cli does (one line, exit 130).
FAKE_CHATBOT = f"""#!{sys.executable}
import sys, time
print("ready", flush=True)
try:
    time.sleep(60)
except KeyboardInterrupt:
    print("chatbot serve: interrupted", file=sys.stderr)
    sys.exit(130)
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_ctrl_c_on_make_chat_is_not_an_error(tmp_path):
    fake = tmp_path / "chatbot"
    fake.write_text(FAKE_CHATBOT)
    fake.chmod(0o755)
    # -o install: do not (re)install; BIN points the recipe at the stand-in.
    argv = ["make", "--no-print-directory", "-C", str(REPO), "-o", "install", "chat", f"BIN={tmp_path}"]
    # A session of its own, so the interrupt reaches make, its shell and the server, as a terminal's Ctrl+C does.
    proc = subprocess.Popen(
        argv,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )
    echoed = [proc.stdout.readline()]
    while echoed[-1] and echoed[-1].strip() != "ready":  # make may echo the recipe first
        echoed.append(proc.stdout.readline())
    assert echoed[-1].strip() == "ready", echoed
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert rest == "chatbot serve: interrupted\n"  # and no "make: *** [Makefile:...: chat] Error 130"
