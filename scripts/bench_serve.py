"""Load test of the chat tab: N concurrent gradio_client clients x M messages each, round-trip latency.

Starts `chatbot serve` on a free local port (or uses --url), lets every client connect, then has them all
send their messages at once, each waiting for its reply before sending the next. Prints errors and the
p50 / p90 / p99 / max round trip; exits 1 if any request failed.

    python scripts/bench_serve.py                     # the shipped model, 16 clients x 20 messages
    python scripts/bench_serve.py --checkpoint runs/x/model.pt --clients 4
"""

from __future__ import annotations

import argparse
import os
import platform
import ssl
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from chatbot.app import DEFAULTS, STRATEGIES  # noqa: E402
from tests.chatbot.server import free_port, start_server  # noqa: E402

PROMPTS = [
    "hello",
    "how are you?",
    "where are you going?",
    "what is your name?",
    "do you love me?",
    "i don't know what to say.",
    "are you coming with us tonight?",
    "why did you do that?",
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint to serve; None means the shipped model")
    p.add_argument("--url", default=None, help="benchmark an already running server instead of starting one")
    p.add_argument("--clients", type=int, default=16, help="concurrent gradio_client clients")
    p.add_argument("--messages", type=int, default=20, help="messages each client sends, one after another")
    p.add_argument("--strategy", choices=STRATEGIES, default=DEFAULTS.strategy, help="decoding strategy")
    p.add_argument("--beam-width", type=int, default=DEFAULTS.beam_width, help="beam width (beam)")
    p.add_argument("--temperature", type=float, default=DEFAULTS.temperature, help="temperature (sample)")
    p.add_argument("--top-p", type=float, default=DEFAULTS.top_p, help="top-p (sample)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before a request counts as an error")
    p.add_argument("--concurrency-limit", type=int, default=2, help="the started server's --concurrency-limit")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    from gradio_client import Client

    proc = None
    url = args.url
    if url is None:
        cli = ["--port", str(free_port()), "--concurrency-limit", str(args.concurrency_limit)]
        proc, url = start_server(cli + (["--checkpoint", str(args.checkpoint)] if args.checkpoint else []))
        print(proc.log[-1].strip(), file=sys.stderr)
    try:
        # One SSL context for all: httpx otherwise builds one (loading the CA bundle) for every request, even
        # over plain http, which cost ~0.1 s of client CPU per message here and showed up as server latency.
        tls = ssl.create_default_context()
        # gradio_client gives up on a request after 20 s by default; a slow reply is latency, not an error.
        clients = [
            Client(url, verbose=False, ssl_verify=tls, httpx_kwargs={"timeout": args.timeout})
            for _ in range(args.clients)
        ]
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(args.clients + 1)
        bar = tqdm(total=args.clients * args.messages, desc="messages", unit="msg")
        settings = (args.strategy, args.beam_width, args.temperature, args.top_p)

        def talk(k: int, client: Client) -> None:
            start.wait()
            for i in range(args.messages):
                message = PROMPTS[(k + i) % len(PROMPTS)]
                t0 = time.perf_counter()
                try:
                    reply = client.predict(message, *settings, api_name="/chat")
                    if not isinstance(reply, str) or not reply.strip():
                        raise ValueError(f"empty reply to {message!r}")
                except Exception as err:  # count every failure; the benchmark's point is how many there are
                    with lock:
                        errors.append(f"{type(err).__name__}: {err}")
                    continue
                finally:
                    bar.update(1)
                with lock:
                    latencies.append(time.perf_counter() - t0)

        threads = [threading.Thread(target=talk, args=(k, c)) for k, c in enumerate(clients)]
        for t in threads:
            t.start()
        start.wait()
        t_start = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t_start
        bar.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)

    ms = np.array(latencies) * 1000
    print(f"url {url}  strategy {args.strategy}  clients {args.clients} x messages {args.messages}")
    print(f"host: {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"requests {args.clients * args.messages}  errors {len(errors)}  wall {wall:.1f} s  ", end="")
    print(f"throughput {len(latencies) / wall:.1f} replies/s")
    if len(ms):
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        print(f"round trip ms: p50 {p50:.0f}  p90 {p90:.0f}  p99 {p99:.0f}  max {ms.max():.0f}")
    for e in sorted(set(errors))[:5]:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
