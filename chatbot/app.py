"""`chatbot serve`: the chat tab, Gradio's `ChatInterface` over `Chatbot.reply_stream`.

The model is loaded once, before the server starts; every request shares it (it is only read).
The tutorial's model answers each line on its own, so the history is shown in the tab but not fed
to the model.
"""

from __future__ import annotations

import argparse
import errno
import html
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch

from chatbot.chat import NO_REPLY
from chatbot.cli import add_checkpoint_flags, add_device_flag, float_in, int_in, resolve_device
from chatbot.decode import STRATEGIES
from chatbot.reply import Chatbot, DecodeSettings

EXAMPLES = ["hello", "how are you?", "where are you going?", "what is your name?", "do you love me?"]
# The model reads at most `max_length` words, so a longer message only costs normalization time;
# the cap keeps one pasted book from stalling a worker.
MAX_MESSAGE_CHARS = 10_000
EMPTY_MESSAGE = "Say something: type a message and press Enter."
# Rerank, not the tutorial's greedy search: it won the report card (README, "Quality: the shipped bot"): greedy and beam
# replies are mostly one of ten dull strings, plain samples are often off-topic, and reranking samples by
# MMI-bidi keeps replies varied and relevant. Its sampling settings were picked on the valid split. The 8
# training replies the relevance model finds for the message are scored beside the 8 samples (`chatbot.retrieval`):
# read blind on fresh valid queries, that raised the sensible replies (README, "Retrieved candidates").
DEFAULTS = DecodeSettings(strategy="rerank", temperature=0.8, top_p=0.9, candidates=8, retrieve=8)
# Without a backward model (a checkpoint of your own), plain sampling with the same temperature 0.8 / top-p
# 0.9 rather than the dataclass's 1.0 / 1.0, which samples the model's long tail.
SAMPLE_DEFAULTS = DecodeSettings(strategy="sample", temperature=0.8, top_p=0.9)
# What the tab says about itself: for someone chatting, not for whoever trained the model (the console
# line `chatbot serve` prints gives the checkpoint, tokenizer and layers).
DESCRIPTION = (
    "A small neural network that learnt to answer from example dialogue (the shipped model: lines from movies). "
    "It answers each message on its own (no memory of earlier turns); short everyday sentences work best. "
    "How it picks words "
    "(Decoding settings, below): rerank writes several replies at random, adds lines from the films that "
    "suit your message, and keeps the one that fits best, sample draws each word at random among the likely ones (a new reply each time), greedy "
    "takes the likeliest word each time (same reply every time), beam keeps several candidate replies and "
    "returns the likeliest whole one."
)
STRATEGY_HELP = (
    "rerank: the best-fitting of several random replies and film lines; sample: a random likely reply; "
    "greedy: likeliest word each time; beam: likeliest whole reply"
)
# Seconds between streamed updates: faster than anyone reads, and every update is a message to each page.
STREAM_INTERVAL = 0.05


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `chatbot serve`."""
    add_checkpoint_flags(parser, rerank_models=True)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 exposes the tab to your network")
    parser.add_argument("--port", type=int_in(1, 65535), default=7860, help="port to bind")
    parser.add_argument("--share", action="store_true", help="also open a public *.gradio.live link (needs internet)")
    add_device_flag(parser)
    parser.add_argument(
        "--concurrency-limit",
        type=int_in(1, 1024),
        default=2,
        help="replies computed at once (about one per CPU core)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int_in(1, 1024),
        default=1,
        help="torch threads per reply; replies already run side by side, and more threads fight over the cores",
    )
    parser.add_argument(
        "--max-queue", type=int_in(1, 100_000), default=64, help="requests allowed to wait; more are turned away"
    )
    parser.add_argument(
        "--stream-interval",
        type=float_in(0, 60),
        default=STREAM_INTERVAL,
        help="seconds between streamed updates of a reply (0 = every token)",
    )


def check_address(host: str, port: int) -> None:
    """Refuse, in one line naming --host or --port, an address the server could not bind (before loading anything)."""
    from chatbot.errors import ChatbotError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ChatbotError(f"--host {host}: not an address this machine can serve on ({reason})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server (uvicorn) binds
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ChatbotError(
                    f"cannot serve on {host}:{port}: --port {port} is in use (another server?); choose another --port"
                ) from None
            if err.errno == errno.EACCES:
                raise ChatbotError(
                    f"cannot serve on {host}:{port}: --port {port} needs root; use a port >= 1024"
                ) from None
            raise ChatbotError(f"--host {host}: not an address of this machine ({err.strerror})") from None


def message_text(content: Any) -> str:
    """The text of a chat message's content: a string, a {"text": ...} block, or a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return message_text(content.get("text", content.get("content", "")))
    if isinstance(content, (list, tuple)):
        return " ".join(t for t in (message_text(block) for block in content) if t)
    return ""  # files, images and other components carry no text for this model


def tab_defaults(bot: Chatbot) -> DecodeSettings:
    """The tab's starting settings: rerank when the bot has a relevance or backward model to score with
    (with retrieved replies when its relevance model has a reply index), else sampling."""
    if bot.relevance is None and bot.backward is None:
        return SAMPLE_DEFAULTS
    return DEFAULTS if bot.index is not None else replace(DEFAULTS, retrieve=0)


def settings_from_inputs(
    strategy: str, beam_width: float, temperature: float, top_p: float, defaults: DecodeSettings = DEFAULTS
) -> DecodeSettings:
    """The tab's controls -> `DecodeSettings`, clamped so an API caller cannot ask for nonsense."""
    return DecodeSettings(
        strategy=strategy if strategy in STRATEGIES else defaults.strategy,
        beam_width=max(1, int(beam_width)),
        temperature=max(0.05, float(temperature)),
        top_p=min(1.0, max(0.01, float(top_p))),
        seed=None,  # a new sample each time
        candidates=defaults.candidates,
        retrieve=defaults.retrieve,
    )


def make_respond(bot: Chatbot, stream_interval: float = STREAM_INTERVAL):
    """The ChatInterface function: (message, history, *settings) -> the growing reply."""

    def respond(
        message: Any, history: list[dict], strategy: str, beam_width: float, temperature: float, top_p: float
    ) -> Iterator[str]:
        text = message_text(message)[:MAX_MESSAGE_CHARS]
        if not text.strip():
            yield EMPTY_MESSAGE
            return
        # The first update waits stream_interval too: a reply decoded faster than that goes out as one event
        # (measured with scripts/bench_serve.py: p99 1.3 s -> 0.76 s, as every event costs the server work).
        partial, shown, last = "", "", time.monotonic()
        if strategy == "rerank" and bot.backward is None and bot.relevance is None:
            strategy = "sample"  # nothing to rerank with: a checkpoint served without --backward or --relevance
        settings = settings_from_inputs(strategy, beam_width, temperature, top_p, tab_defaults(bot))
        for partial in bot.reply_stream(text, settings):
            if time.monotonic() - last >= stream_interval:
                yield partial
                shown, last = partial, time.monotonic()
        if not partial.strip():
            yield NO_REPLY
        elif partial != shown:
            yield partial

    return respond


# The escaping below also reaches the copy buttons, which copy a message's (escaped) value: "<b>" would copy
# as "&lt;b&gt;". This page script undoes exactly html.escape(quote=False) on text that a click inside the
# chat (elem_id "chat") sends to the clipboard; copies from anywhere else on the page are left alone.
COPY_AS_TYPED = """<script>
(() => {
  let fromChat = false;
  document.addEventListener("click", (e) => { fromChat = !!e.target.closest?.("#chat"); }, true);
  const unescape = (t) => String(t).replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  const clipboard = navigator.clipboard;
  if (clipboard && clipboard.writeText) {
    const write = clipboard.writeText.bind(clipboard);
    clipboard.writeText = (text) => write(fromChat ? unescape(text) : text);
  }
})();
</script>"""


def plain_text_chatbot(**kwargs: Any):
    """A `gr.Chatbot` that shows every message exactly as typed, markup included.

    Gradio puts message text into the page as (sanitized) HTML even with render_markdown=False, so
    "<b>hi</b>" would show in bold and "<script>" would silently vanish. Escaping the text on its way
    to the page, and unescaping what the page sends back, shows tags as the characters they are.
    (Wrapped on the instance: a subclass would make Gradio treat it as a custom component.)
    """
    import gradio as gr

    chat = gr.Chatbot(render_markdown=False, buttons=["copy", "copy_all"], elem_id="chat", **kwargs)
    to_page, from_page = chat.postprocess, chat.preprocess

    def postprocess(value):
        data = to_page(value)
        for message in data.root:
            for block in message.content:
                if getattr(block, "type", None) == "text":
                    block.text = html.escape(block.text, quote=False)
        return data

    def preprocess(payload):
        messages = from_page(payload)
        for message in messages:
            for block in message["content"]:
                if block.get("type") == "text":
                    block["text"] = html.unescape(block["text"])
        return messages

    chat.postprocess, chat.preprocess = postprocess, preprocess
    return chat


def build_demo(bot: Chatbot, concurrency_limit: int = 2, stream_interval: float = STREAM_INTERVAL):
    """The chat tab (a `gr.ChatInterface`) for an already loaded `Chatbot`."""
    import gradio as gr

    defaults = tab_defaults(bot)
    return gr.ChatInterface(
        make_respond(bot, stream_interval),
        chatbot=plain_text_chatbot(placeholder="Ask the movie-dialogue bot something."),
        textbox=gr.Textbox(placeholder="Type a message and press Enter", max_lines=4, submit_btn=True),
        additional_inputs=[
            gr.Radio(list(STRATEGIES), value=defaults.strategy, label="Decoding strategy", info=STRATEGY_HELP),
            gr.Slider(1, 10, value=defaults.beam_width, step=1, label="Beam width (beam)", info="replies kept"),
            gr.Slider(
                0.1,
                2.0,
                value=defaults.temperature,
                step=0.05,
                label="Temperature (sample, rerank)",
                info="higher: bolder",
            ),
            gr.Slider(
                0.05,
                1.0,
                value=defaults.top_p,
                step=0.05,
                label="Top-p (sample, rerank)",
                info="lower: only the likeliest",
            ),
        ],
        additional_inputs_accordion=gr.Accordion("Decoding settings", open=False),
        examples=[[e] for e in EXAMPLES],
        title="Seq2seq chatbot",
        description=DESCRIPTION,
        api_name="chat",
        concurrency_limit=concurrency_limit,
        analytics_enabled=False,
    )


def run(args: argparse.Namespace) -> None:
    """Load the model once, start the server, print where to open it, and serve until Ctrl+C."""
    from chatbot.errors import ChatbotError

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home; the tab works offline
    # One torch thread by default: with more, the extra threads spin-wait while other requests hold the
    # cores (README, "Serving under load").
    check_address(args.host, args.port)  # before the model loads: a busy port should not cost a minute
    torch.set_num_threads(args.torch_threads)
    bot = Chatbot.from_checkpoint(
        args.checkpoint, device=resolve_device(args.device), backward=args.backward, relevance=args.relevance
    )
    demo = build_demo(bot, args.concurrency_limit, args.stream_interval)
    demo.queue(max_size=args.max_queue, default_concurrency_limit=args.concurrency_limit)
    try:
        _, local_url, share_url = demo.launch(
            server_name=args.host,
            server_port=args.port,
            share=args.share,
            quiet=True,
            prevent_thread_lock=True,
            ssr_mode=False,
            head=COPY_AS_TYPED,
        )
    except OSError as err:  # taken between the check and now; Gradio's message advises launch() arguments
        reason = str(err).splitlines()[0].split(". You can")[0]
        raise ChatbotError(f"cannot serve on {args.host}:{args.port} (check --host and --port): {reason}") from None
    url = share_url or local_url
    print(f"chatbot serve: {bot.description}; open {url} (Ctrl+C to stop)", flush=True)
    try:
        while True:  # Ctrl+C raises KeyboardInterrupt here; the CLI turns it into one line
            time.sleep(1)
    finally:
        demo.close()
