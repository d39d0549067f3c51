"""`chatbot export`: the encoder and one decoder step as `torch.export` programs, and a loader for them.

The tutorial's deployment page traced the model with TorchScript, which is deprecated upstream.
`torch.export` handles the GRU decoder step (one time step, unrolled), so no legacy TorchScript
fallback is needed; the forms it traces are in `chatbot.model.exported`.

The export folder holds everything a reply needs and nothing from this package's model code:
    encoder.pt2   input_seq (Ts, 1) -> encoder_outputs (Ts, 1, H), hidden (L, 1, H), src_mask (1, Ts)
    decoder.pt2   input (1, K), hidden (L, K, H), encoder_outputs (Ts, K, H), src_mask (K, Ts)
                  -> logits (1, K, V), hidden (L, K, H)
    voc.json or spm.model, and export.json (normalization, max_length, model config).
`load_exported(folder)` answers with `chatbot.decode`'s greedy, beam and sampling on those programs.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch

from chatbot.cli import add_checkpoint_flags
from chatbot.errors import ChatbotError
from chatbot.files import check_out_dir, replace_dir
from chatbot.model.exported import ExportDecoderStep, ExportedSeq2Seq, ExportEncoder
from chatbot.reply import Chatbot
from chatbot.tokenizers import EOS_token, SOS_token, load_tokenizer

FORMAT = "chatbot-export"
MARKER = ".chatbot-export"  # written into every export folder: `chatbot export` replaces only folders holding it
MAX_SOURCE = 1024  # longest query the exported encoder accepts (the reply API keeps far fewer tokens)
MAX_BEAMS = 256


def export_programs(model) -> tuple[torch.export.ExportedProgram, torch.export.ExportedProgram]:
    """torch.export the encoder (dynamic source length) and the decoder step (dynamic length and beams)."""
    model = model.eval()
    Ts = torch.export.Dim("Ts", min=1, max=MAX_SOURCE)
    K = torch.export.Dim("K", min=1, max=MAX_BEAMS)
    # Example sizes of 1 would be specialised as constants, so the examples use 3 tokens and 2 beams.
    src = torch.tensor([[SOS_token + 3], [SOS_token + 4], [EOS_token]])  # (3, 1)
    with torch.no_grad(), warnings.catch_warnings():
        # nn.GRU re-assigns its flat weight list while traced; export warns, harmlessly, about each one.
        warnings.filterwarnings("ignore", message="The tensor attributes .*_flat_weights")
        encoder = torch.export.export(ExportEncoder(model), (src,), dynamic_shapes=({0: Ts},))
        outputs, hidden, mask = model.encode(src, torch.tensor([3]))
        example = (
            torch.full((1, 2), SOS_token),
            hidden.expand(-1, 2, -1).contiguous(),
            outputs.expand(-1, 2, -1).contiguous(),
            mask.expand(2, -1).contiguous(),
        )
        decoder = torch.export.export(
            ExportDecoderStep(model), example, dynamic_shapes=({1: K}, {1: K}, {0: Ts, 1: K}, {0: K, 1: Ts})
        )
    return encoder, decoder


def export_model(bot: Chatbot, out: str | Path, inputs: tuple[str | Path, ...] = ()) -> Path:
    """Write the export folder for `bot` (atomically, see `replace_dir`); `inputs` must not lie inside `out`.

    An existing `out` is replaced only if it is empty or an earlier export (it holds MARKER).
    """
    encoder, decoder = export_programs(bot.model)

    def build(tmp: Path) -> None:
        torch.export.save(encoder, tmp / "encoder.pt2")
        torch.export.save(decoder, tmp / "decoder.pt2")
        bot.tokenizer.save(tmp)
        meta = {
            "format": FORMAT,
            "program": "torch.export",
            "torch": torch.__version__,
            "normalize": bot.normalize,
            "max_length": bot.max_length,
            "model_config": bot.model.config.to_dict(),
            "description": bot.description,
        }
        (tmp / "export.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    return replace_dir(out, build, MARKER, inputs)


def load_exported(folder: str | Path) -> Chatbot:
    """A `Chatbot` that answers from an export folder alone (no checkpoint, no `chatbot.model`)."""
    folder = Path(folder)
    meta_path = folder / "export.json"
    if not meta_path.exists():
        raise ChatbotError(f"not an export folder (no export.json): {folder}")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ChatbotError(f"{meta_path} is not a chatbot export")
    try:
        model = ExportedSeq2Seq(torch.export.load(folder / "encoder.pt2"), torch.export.load(folder / "decoder.pt2"))
        tokenizer = load_tokenizer(folder)
    except (OSError, RuntimeError, ValueError) as err:
        raise ChatbotError(f"cannot load the exported programs in {folder}: {str(err).splitlines()[0]}") from None
    description = f"exported ({meta['program']}) from: {meta.get('description', '?')}"
    return Chatbot(model, tokenizer, meta["normalize"], int(meta["max_length"]), description)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_flags(parser, rerank_models=True)
    parser.add_argument(
        "--out",
        default="runs/export",
        help="folder for encoder.pt2, decoder.pt2 and friends (replaced only if an earlier export wrote it)",
    )
    parser.add_argument("--check", default="Hello. How are you?", help="after exporting, reply to this from the export")


def run(args: argparse.Namespace) -> int:
    from chatbot.checkpoint import DEFAULT_CHECKPOINT

    checkpoint = DEFAULT_CHECKPOINT if args.checkpoint is None else Path(args.checkpoint)
    check_out_dir(args.out, MARKER, [checkpoint])  # refuse before the minute of loading and exporting
    bot = Chatbot.from_checkpoint(args.checkpoint)
    out = export_model(bot, args.out, (checkpoint,))
    exported = load_exported(out)
    print(f"exported {bot.description}\n  -> {out} (encoder.pt2, decoder.pt2, export.json, tokenizer)")
    if args.check:
        print(f"check: {args.check!r} -> eager {bot.reply(args.check)!r}, exported {exported.reply(args.check)!r}")
    return 0
