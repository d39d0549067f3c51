"""Test and benchmark helpers: a free port, and `chatbot serve` started in a child process."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading


def default_sigint() -> None:
    """A `preexec_fn` that gives a child the default Ctrl+C (KeyboardInterrupt in Python). A job started
    with `&` by a non-interactive shell, as a CI runner may start the tests, ignores SIGINT, and its
    children inherit that: a test that sends SIGINT to a child must undo it, as a terminal would have it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_server(cli_args: list[str], timeout: float = 300.0) -> tuple[subprocess.Popen, str]:
    """Start `python -m chatbot serve *cli_args` in a child process; wait for its URL line -> (process, url).

    The child's output is read by a thread for as long as it runs (a full pipe would stall the server);
    its lines collect in `process.log`.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatbot", "serve", *cli_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"},
    )
    proc.log = []  # type: ignore[attr-defined]
    urls: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            proc.log.append(line)
            if line.startswith("chatbot serve:") and " open http" in line:
                urls.put(line.split(" open ", 1)[1].split()[0])
        urls.put("")  # the child exited

    threading.Thread(target=read, daemon=True).start()
    try:
        url = urls.get(timeout=timeout)
    except queue.Empty:
        url = ""
    if not url:
        proc.kill()
        raise RuntimeError("`chatbot serve` did not start:\n" + "".join(proc.log[-20:]))
    return proc, url
