"""What one decoding step's matrix products cost on this CPU, in fp32 and in the lower precisions a faster
inference form could use (README, "Decoding latency, session 10").

    python scripts/bench_products.py                 # the shipped model's shapes
    python scripts/bench_products.py --hidden 500 --vocab 7826

A decoder step of the shipped network is four GRU gate products (hidden x 3 hidden each), the attention's
concat layer and the output layer (hidden x vocabulary); greedy search has 1 row, beam-5 5, rerank's
sampling 8. Each product is timed on 16 copies of its weight in turn, as a step meets them after the rest
of the network has been through the cache (a loop over one weight keeps it cached and flatters it), on one
thread, in process CPU time. The weights are random: only the time is measured.

- fp32 oneDNN: what `chatbot.model.fast.Affine` does today (the fp32 replies the model gives);
- bf16 oneDNN: weights and inputs in bf16 (avx512_bf16), sums in fp32;
- int8 weights: `torch._weight_int8pack_mm` (one scale per row, bf16 input), as `ScreenedArgmax` uses.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from chatbot.checkpoint import int8_rows
from chatbot.cli import int_in
from chatbot.model.fast import ONEDNN_LINEAR
from chatbot.model.screened import INT8_BLOCK, INT8_PRODUCT


def per_call_us(fns: list[Callable[[], torch.Tensor]], passes: int) -> float:
    """Microseconds of process CPU time per call, over `passes` rounds of every fn, after one warm-up round."""
    for fn in fns:
        fn()
    start = time.process_time()
    for _ in range(passes):
        for fn in fns:
            fn()
    return (time.process_time() - start) * 1e6 / (passes * len(fns))


def products(out_features: int, in_features: int, rows: int, copies: int) -> dict[str, list[Callable]]:
    """precision -> one call per weight copy of x (rows, in) W^T + b, W (out, in)."""
    weights = [torch.randn(out_features, in_features) * 0.05 for _ in range(copies)]
    bias, x = torch.zeros(out_features), torch.randn(rows, in_features)
    fns: dict[str, list[Callable]] = {}
    if ONEDNN_LINEAR:
        linear = torch.ops.mkldnn._linear_pointwise
        fp32 = [torch.ops.mkldnn._reorder_linear_weight(w, 8) for w in weights]
        fns["fp32 oneDNN"] = [lambda w=w: linear(x, w, bias, "none", [], "") for w in fp32]
        bf16 = [torch.ops.mkldnn._reorder_linear_weight(w.bfloat16(), 8) for w in weights]
        b16 = bias.bfloat16()
        fns["bf16 oneDNN"] = [lambda w=w: linear(x.bfloat16(), w, b16, "none", [], "").float() for w in bf16]
    else:
        transposed = [w.T.contiguous() for w in weights]  # (in, out)
        fns["fp32 addmm"] = [lambda w=w: torch.addmm(bias, x, w) for w in transposed]
    if INT8_PRODUCT and in_features % INT8_BLOCK == 0:
        stored = [int8_rows(w) for w in weights]  # one scale per row
        int8 = [(r["int8"], r["scale"].bfloat16()) for r in stored]
        fns["int8 weights"] = [
            lambda q=q, s=s: torch._weight_int8pack_mm(x.bfloat16(), q, s).float() + bias for q, s in int8
        ]
    return fns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int_in(1), default=384, help="hidden size (default: the shipped model's)")
    parser.add_argument(
        "--vocab", type=int_in(1), default=12361, help="output vocabulary (default: the shipped model's)"
    )
    parser.add_argument("--rows", type=int_in(1), nargs="+", default=[1, 5, 8], help="rows per product to time")
    parser.add_argument("--passes", type=int_in(1), default=50, help="rounds over the weight copies")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    H, V = args.hidden, args.vocab
    layers = {"GRU gate (3H x H)": (3 * H, H, 16), "concat (H x 2H)": (H, 2 * H, 16), "output (V x H)": (V, H, 3)}
    print(f"torch {torch.__version__}, one thread, hidden {H}, vocabulary {V}; microseconds per product")
    print()
    columns = list(products(4, 16, 1, 1))  # the precisions this torch and CPU have
    print("| product | rows | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    with torch.inference_mode():
        for name, (out_features, in_features, copies) in layers.items():
            for rows in args.rows:
                fns = products(out_features, in_features, rows, copies)
                passes = args.passes if copies > 3 else max(1, args.passes // 3)
                cells = " | ".join(f"{per_call_us(f, passes):.0f}" for f in fns.values())
                print(f"| {name} | {rows} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
