"""`chatbot export`: the encoder and one decoder step as `torch.export` programs, and a loader for them.

The tutorial's deployment page traced the model with TorchScript, which is deprecated upstream.
`torch.export` handles the GRU decoder step (one time step, unrolled), so no legacy TorchScript
fallback is needed. Two things it cannot trace in the encoder: `pack_padded_sequence`, and an
`nn.GRU` over a sequence of dynamic length (export unrolls the recurrence, fixing the length). So
the exported encoder takes a single query (batch 1, no padding, where packing changes nothing) and
runs its bidirectional GRU through `chatbot::bigru`, a custom op around `torch.gru` that export keeps
whole. Importing this module registers that op, which loading an exported encoder needs.

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
import torch.nn as nn

from chatbot.errors import ChatbotError
from chatbot.files import check_out_dir, replace_dir
from chatbot.reply import Chatbot
from chatbot.tokenizer import EOS_token, PAD_token, SOS_token, load_tokenizer

FORMAT = "chatbot-export"
MARKER = ".chatbot-export"  # written into every export folder: `chatbot export` replaces only folders holding it
MAX_SOURCE = 1024  # longest query the exported encoder accepts (the reply API keeps far fewer tokens)
MAX_BEAMS = 256


@torch.library.custom_op("chatbot::bigru", mutates_args=())
def bigru(input_seq: torch.Tensor, weights: list[torch.Tensor], num_layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A bidirectional multi-layer GRU from zero state: input (T, B, H) -> outputs (T, B, 2H), hidden (2L, B, H)."""
    hidden_size = weights[1].size(1)  # weight_hh_l0 is (3H, H)
    h0 = input_seq.new_zeros(2 * num_layers, input_seq.size(1), hidden_size)
    # torch.gru(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
    outputs, hidden = torch.gru(input_seq, h0, weights, True, num_layers, 0.0, False, True, False)
    return outputs, hidden


@bigru.register_fake
def _bigru_shapes(input_seq, weights, num_layers):
    hidden_size = weights[1].size(1)
    T, B = input_seq.size(0), input_seq.size(1)
    return input_seq.new_empty(T, B, 2 * hidden_size), input_seq.new_empty(2 * num_layers, B, hidden_size)


class ExportEncoder(nn.Module):
    """`Seq2Seq.encode` for one unpadded query, without packing (which torch.export cannot trace)."""

    def __init__(self, model):
        super().__init__()
        self.embedding = model.embedding
        self.gru = model.encoder.gru
        self.hidden_size = model.config.hidden_size
        self.encoder_n_layers = model.config.encoder_n_layers
        self.decoder_n_layers = model.config.decoder_n_layers

    def forward(self, input_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_seq (Ts, 1) -> encoder_outputs (Ts, 1, H), decoder_hidden (L_dec, 1, H), src_mask (1, Ts)."""
        weights = [getattr(self.gru, name) for name in self.gru._flat_weights_names]
        outputs, hidden = bigru(self.embedding(input_seq), weights, self.encoder_n_layers)  # (Ts,1,2H), (2L,1,H)
        H, L = self.hidden_size, self.encoder_n_layers
        outputs = outputs[:, :, :H] + outputs[:, :, H:]  # sum directions, as EncoderRNN does
        per_layer = hidden.view(L, 2, 1, H).sum(dim=1)  # (L_enc, 1, H), as Seq2Seq.encode does
        decoder_hidden = per_layer[L - self.decoder_n_layers :]
        return outputs, decoder_hidden, (input_seq != PAD_token).transpose(0, 1)


class ExportDecoderStep(nn.Module):
    """One decoder step, dropping the attention weights the reply never needs."""

    def __init__(self, model):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, input_step, last_hidden, encoder_outputs, src_mask):
        """input_step (1, K), last_hidden (L, K, H), encoder_outputs (Ts, K, H), src_mask (K, Ts)
        -> logits (1, K, V), hidden (L, K, H)."""
        logits, hidden, _ = self.decoder(input_step, last_hidden, encoder_outputs, src_mask)
        return logits, hidden


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


class ExportedSeq2Seq:
    """The two calls `chatbot.decode` makes (`encode`, `decoder`), answered by exported programs."""

    def __init__(self, encoder: torch.export.ExportedProgram, decoder: torch.export.ExportedProgram):
        self._encoder = encoder.module()
        self._decoder = decoder.module()

    def encode(self, input_seq: torch.Tensor, input_lengths: torch.Tensor):
        """input_seq (Ts, 1) (one query; lengths unused) -> encoder_outputs, hidden, src_mask."""
        return self._encoder(input_seq)

    def decoder(self, input_step, last_hidden, encoder_outputs, src_mask):
        """Same signature as `LuongAttnDecoderRNN.forward`; no attention weights (None)."""
        logits, hidden = self._decoder(
            input_step, last_hidden.contiguous(), encoder_outputs.contiguous(), src_mask.contiguous()
        )
        return logits, hidden, None


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
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped model)")
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
