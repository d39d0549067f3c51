"""The chat tab: its respond function, then the real server driven by gradio_client and headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from chatbot.app import EMPTY_MESSAGE, STRATEGIES, make_respond, message_text, settings_from_inputs
from chatbot.checkpoint import DEFAULT_CHECKPOINT, save_checkpoint
from chatbot.model.network import ModelConfig, Seq2Seq
from chatbot.reply import Chatbot
from chatbot.tokenizers import EOS_token
from tests.chatbot.server import free_port, start_server

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "chat_tab.png"  # rewritten only with UPDATE_SCREENSHOT=1 (it is tracked)
CHROMIUM = Path("/usr/bin/chromium")
SENTENCES = ["hello there .", "how are you ?", "i am fine thanks .", "where are you going ?", "what is your name ?"]

HOSTILE = {
    "empty": "",
    "whitespace": " \t\n  ",
    "10000 chars": ("lorem ipsum dolor sit amet " * 400)[:10_000],
    "emoji": "😀🔥 hello 👋🏽👨‍👩‍👧",
    "chinese": "你好，今天天气怎么样？",
    "html": "<b>bold</b> <img src=x onerror=alert(1)> <a href='javascript:alert(1)'>x</a>",
    "script": "<script>alert('pwned')</script>",
    "control chars": "he\x00llo\x07 \x1b[31mred\x1b[0m\r\n\x7f",
    "all unknown words": "xyzzy plugh frobnicate quuxify",
}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight model on a 20-word vocabulary; EOS is made unlikely so replies run several words."""
    from chatbot.tokenizers import Voc

    voc = Voc.from_sentences(SENTENCES)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(voc), hidden_size=16, encoder_n_layers=1, decoder_n_layers=1)
    model = Seq2Seq(config)
    with torch.no_grad():
        model.decoder.out.bias[EOS_token] = -20.0  # replies long enough to stream in several pieces
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(
        path,
        {
            "model_config": config.to_dict(),
            "model": model.state_dict(),
            "tokenizer": voc.state_dict(),
            "normalize": "tutorial",
            "max_length": 10,
        },
    )
    return path


@pytest.fixture(scope="module")
def respond(tiny_checkpoint):
    return make_respond(Chatbot.from_checkpoint(tiny_checkpoint), stream_interval=0.0)  # every token, to see them


# --- the respond function, in process (quick tier) ---------------------------------------------


def test_message_text_reads_strings_and_blocks():
    assert message_text("hi") == "hi"
    assert message_text([{"type": "text", "text": "how"}, {"type": "text", "text": "are you"}]) == "how are you"
    assert message_text({"text": "hello", "files": []}) == "hello"
    assert message_text([{"type": "file", "file": {"path": "x.png"}}]) == ""


def test_settings_are_clamped():
    s = settings_from_inputs("nonsense", 0, -1.0, 7.0)
    assert s.strategy in STRATEGIES and s.beam_width == 1 and s.temperature > 0 and s.top_p == 1.0


@pytest.mark.parametrize(
    "history",
    [
        [],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        [{"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"role": "assistant", "content": []}],
    ],
    ids=["none", "string content", "block content"],
)
def test_respond_streams_growing_prefixes(respond, history):
    partials = list(respond("how are you?", history, "greedy", 5, 1.0, 1.0))
    assert len(partials) > 1, "the reply should arrive in several pieces"
    assert all(b.startswith(a) for a, b in pairwise(partials))
    assert partials[-1].strip()


def test_updates_are_throttled_to_the_stream_interval(tiny_checkpoint, respond):
    """A reply decoded within one interval is sent as one update, the same final text as unthrottled."""
    slow = make_respond(Chatbot.from_checkpoint(tiny_checkpoint), stream_interval=3600.0)
    partials = list(slow("how are you?", [], "greedy", 5, 1.0, 1.0))
    assert partials == [list(respond("how are you?", [], "greedy", 5, 1.0, 1.0))[-1]]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_respond_answers_hostile_input(respond, name):
    partials = list(respond(HOSTILE[name], [], "greedy", 5, 1.0, 1.0))
    assert partials and isinstance(partials[-1], str) and partials[-1].strip()
    if not HOSTILE[name].strip():
        assert partials == [EMPTY_MESSAGE]


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    from chatbot.cli import main

    assert main(["serve", "--checkpoint", str(tmp_path / "none.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint not found" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--concurrency-limit", "0", "argument --concurrency-limit: must be an integer in 1..1024, not 0"),
        ("--concurrency-limit", "-1", "argument --concurrency-limit: must be an integer in 1..1024, not -1"),
        ("--max-queue", "-5", "argument --max-queue: must be an integer in 1..100000, not -5"),
        ("--port", "70000", "argument --port: must be an integer in 1..65535, not 70000"),
        ("--port", "http", "argument --port: must be an integer in 1..65535, not 'http'"),
        ("--torch-threads", "0", "argument --torch-threads: must be an integer in 1..1024, not 0"),
        ("--stream-interval", "nan", "argument --stream-interval: must be a number in [0, 60], not nan"),
        ("--device", "gpu", "argument --device: 'gpu' is not a torch device (auto, cpu, cuda, cuda:N, mps)"),
    ],
)
def test_bad_flags_are_one_line_before_anything_starts(capsys, tmp_path, flag, value, message):
    from chatbot.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--checkpoint", str(tmp_path / "none.pt"), flag, value])
    assert exit_.value.code == 1
    assert capsys.readouterr().err == f"chatbot serve: error: {message} (see `chatbot serve --help`)\n"


def test_cuda_without_a_gpu_is_one_line(capsys, tmp_path):
    from chatbot.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit):
        main(["serve", "--device", "cuda"])
    assert capsys.readouterr().err == (
        "chatbot serve: error: argument --device: cuda was asked for, but torch sees no CUDA device; use cpu "
        "(see `chatbot serve --help`)\n"
    )


def test_busy_port_or_bad_host_is_one_line_naming_the_flag(capsys, tiny_checkpoint):
    from chatbot.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--checkpoint", str(tiny_checkpoint), "--port", str(port)]) == 1
    assert capsys.readouterr().err == (
        f"chatbot serve: error: cannot serve on 127.0.0.1:{port}: --port {port} is in use (another server?); "
        "choose another --port\n"
    )
    assert main(["serve", "--checkpoint", str(tiny_checkpoint), "--host", "192.0.2.1"]) == 1  # TEST-NET: not ours
    assert capsys.readouterr().err.startswith("chatbot serve: error: --host 192.0.2.1: not an address of this machine")


def test_the_tab_describes_itself_for_a_user():
    from chatbot.app import DESCRIPTION, STRATEGY_HELP

    for text in (DESCRIPTION, STRATEGY_HELP):
        assert all(name in text for name in STRATEGIES)  # what greedy, beam and sample do
    assert not any(word in DESCRIPTION for word in ("GRU", "normalize", "tokenizer", "hidden", "2+2"))


# --- the real server (browser tier) ------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    """`chatbot serve` in a child process on a free port -> (process, url)."""

    # Generous: on the shared 2-core machine under load, importing torch and Gradio took 2.5 minutes.
    # --stream-interval 0: every token is an update, so streaming is visible even with a fast tiny model.
    proc, url = start_server(
        ["--checkpoint", str(tiny_checkpoint), "--port", str(free_port()), "--stream-interval", "0"], timeout=600
    )
    yield proc, url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[1], verbose=False)


@pytest.mark.browser
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("beam_width", "temperature", "top_p"), [(1, 0.5, 0.5), (5, 1.0, 0.9), (10, 2.0, 1.0)])
def test_turns_with_every_setting(server, strategy, beam_width, temperature, top_p):
    from gradio_client import Client

    client = Client(server[1], verbose=False)  # a fresh session: its own history
    for message in ["hello", "how are you?", "where are you going?"]:
        reply = client.predict(message, strategy, beam_width, temperature, top_p, api_name="/chat")
        assert isinstance(reply, str) and reply.strip()


@pytest.mark.browser
def test_reply_streams_over_the_api(client):
    job = client.submit("hello there", "greedy", 5, 1.0, 1.0, api_name="/chat")
    final = job.result(timeout=300)
    outputs = job.outputs()
    assert len(outputs) > 1 and outputs[-1] == final
    assert all(b.startswith(a) for a, b in pairwise(outputs))


@pytest.mark.browser
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_input_through_the_server(server, client, name):
    reply = client.predict(HOSTILE[name], "greedy", 5, 1.0, 1.0, api_name="/chat")
    assert isinstance(reply, str) and reply.strip()
    assert server[0].poll() is None, "the server died"


@pytest.mark.browser
def test_server_stays_up_after_hostile_input(server, client):
    for text in HOSTILE.values():
        client.predict(text, "sample", 3, 1.5, 0.8, api_name="/chat")
    assert server[0].poll() is None
    assert client.predict("hello", "beam", 5, 1.0, 1.0, api_name="/chat").strip()


@pytest.mark.browser
def test_busy_port_is_one_line(server, tiny_checkpoint):
    port = server[1].rstrip("/").rsplit(":", 1)[1]
    proc = subprocess.run(
        [sys.executable, "-m", "chatbot", "serve", "--checkpoint", str(tiny_checkpoint), "--port", port],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("chatbot serve: error: cannot serve on") and "Traceback" not in proc.stderr


# --- a real browser (browser tier) -------------------------------------------------------------


@pytest.fixture(scope="module")
def page():
    """A headless Chromium page (Debian's /usr/bin/chromium, driven by Playwright)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (make browser-deps)")
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (make browser-deps)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")))
        page = browser.new_page(viewport={"width": 1000, "height": 760})
        page.set_default_timeout(120_000)  # the shared 2-core machine can be very slow under load
        yield page
        browser.close()


@pytest.fixture
def browser_page(page):
    """A fresh page in its own context (its own permissions), beside the module's shared page."""
    context = page.context.browser.new_context(viewport={"width": 1000, "height": 760})
    fresh = context.new_page()
    fresh.set_default_timeout(120_000)
    yield fresh
    context.close()


# Records every text the newest bot message shows, so the test can see the reply grow.
WATCH_BOT = """() => {
  window.__botTexts = [];
  new MutationObserver(() => {
    const bots = document.querySelectorAll('[data-testid="bot"]');
    if (bots.length) window.__botTexts.push(bots[bots.length - 1].innerText);
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def wait_for_reply(page, n: int, timeout: float = 120.0) -> str:
    """Wait until the n-th bot message is non-empty and has stopped changing for a second -> its text."""
    page.wait_for_function(
        f"() => {{ const b = document.querySelectorAll('[data-testid=\"bot\"]'); "
        f"return b.length >= {n} && b[{n - 1}].innerText.trim().length > 0; }}",
        timeout=timeout * 1000,
    )
    bot = page.locator('[data-testid="bot"]').nth(n - 1)
    text, since, deadline = bot.inner_text(), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - since < 1.0 and time.monotonic() < deadline:
        time.sleep(0.1)
        now = bot.inner_text()
        if now != text:
            text, since = now, time.monotonic()
    return text.strip()


def send(page, text: str) -> None:
    """Type a message into the chat box and press Enter, as a person would."""
    box = page.get_by_test_id("textbox")  # Gradio drops the placeholder after the first message
    box.fill(text)
    box.press("Enter")


@pytest.mark.browser
def test_chat_in_a_real_browser(server, page, tmp_path):
    page.goto(server[1], wait_until="load")
    page.get_by_placeholder("Type a message and press Enter").wait_for()  # the tab has loaded
    page.evaluate(WATCH_BOT)

    send(page, "hello")
    assert wait_for_reply(page, 1)
    seen = {t.strip() for t in page.evaluate("window.__botTexts") if t.strip()}
    assert len(seen) > 1, f"the reply should appear piece by piece (streamed); the page only showed {seen}"

    typed = "<script>window.__pwned = true</script><b>not bold</b>"
    send(page, typed)
    assert wait_for_reply(page, 2)
    user = page.locator('[data-testid="user"]').last
    assert user.inner_text().strip() == typed, "tags should be shown as the characters typed"
    assert user.locator("b, script").count() == 0, "typed tags became markup"
    assert page.evaluate("window.__pwned") is None, "a <script> typed into the chat ran in the page"
    assert page.locator(".toast-body").count() == 0, "an error toast appeared"
    page.screenshot(path=str(tmp_path / "chat_tab.png"))


@pytest.mark.browser
def test_copy_conversation_copies_what_was_typed(server, browser_page):
    """The copy button copies the characters typed, not the escapes that keep them from becoming markup."""
    page = browser_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(server[1], wait_until="load")
    page.get_by_placeholder("Type a message and press Enter").wait_for()
    typed = "<b>not bold</b> & co"
    send(page, typed)
    assert wait_for_reply(page, 1)
    page.get_by_label("Copy conversation").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert f"user: {typed}" in copied and "&lt;" not in copied and "&amp;" not in copied


@pytest.mark.browser
def test_screenshot_of_the_shipped_model(page, tmp_path):
    """Chat with the shipped model in the browser; UPDATE_SCREENSHOT=1 saves it as the README's docs/chat_tab.png."""
    if not DEFAULT_CHECKPOINT.exists():
        pytest.skip(f"the shipped model {DEFAULT_CHECKPOINT} is not in this checkout")

    proc, url = start_server(["--port", str(free_port())], timeout=600)
    try:
        page.goto(url, wait_until="load")
        for n, text in enumerate(["hello", "where are you going?", "what is your name?"], start=1):
            send(page, text)
            assert wait_for_reply(page, n)
        assert page.locator(".toast-body").count() == 0, "an error toast appeared"
        path = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") == "1" else tmp_path / SCREENSHOT.name
        path.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(path))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
