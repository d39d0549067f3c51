"""Checkpoints are data: state_dicts, the config as a dict, the tokenizer's state, training state.

Written atomically (temp file in the same folder, fsync, rename), so a crash never leaves a
half-written file under the final name. Loaded with `torch.load(weights_only=True)`, which refuses
pickled arbitrary objects, and always onto the CPU first, so a checkpoint saved on a GPU loads on a
CPU-only machine (a tutorial bug: it saved CUDA tensors and loaded them with no map_location).

Keys of a checkpoint (format "chatbot-checkpoint", version 1):
    format, version, model_config (dict), model (state_dict), tokenizer (dict), normalize (str),
    max_length (int); training adds train_config, optimizer, scheduler, rng, step, epoch,
    data_position, metrics.
"""

from __future__ import annotations

import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from chatbot.errors import ChatbotError
from chatbot.files import atomic_write
from chatbot.model.network import ModelConfig, Seq2Seq
from chatbot.tokenizers import Tokenizer, tokenizer_from_state

FORMAT = "chatbot-checkpoint"
VERSION = 1
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
DEFAULT_CHECKPOINT = PRETRAINED_DIR / "model.pt"
DEFAULT_BACKWARD = PRETRAINED_DIR / "backward.pt"  # the reply -> query model that rerank scores with
DEFAULT_RELEVANCE = PRETRAINED_DIR / "relevance.pt"  # the dual encoder that rerank scores with


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (plain data and tensors only) to `path` atomically."""
    state = {"format": FORMAT, "version": VERSION, **state}
    atomic_write(path, lambda f: torch.save(state, f))


def verify_zip(path: Path) -> None:
    """Read every member of the checkpoint's zip archive, so a flipped byte fails its CRC-32 check.

    torch.load reads tensors without checking the zip's CRCs, so a corrupted checkpoint would load
    and answer with silently wrong weights.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as err:
        raise ChatbotError(f"{path} is not a readable checkpoint (corrupt or truncated: {err})") from None
    if bad is not None:
        raise ChatbotError(f"{path} is corrupt: its member {bad} fails the CRC check (damaged on disk or in transfer)")


def _first_line(err: BaseException) -> str:
    """An exception's first non-empty line, without torch's advice to load with weights_only=False."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines if "weights_only" not in line]
    return (useful or ["unknown reason"])[0]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU; any problem becomes a one-line `ChatbotError`."""
    path = Path(path)
    if not path.exists():
        raise ChatbotError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise ChatbotError(f"checkpoint path is a directory, not a file: {path}")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise ChatbotError(f"{path} is not a readable checkpoint (corrupt, truncated or not a torch file)")
    verify_zip(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        # torch's message is a paragraph; the line naming the refused object is the useful one.
        reason = next((line for line in lines if "WeightsUnpickler error" in line), "")
        reason = reason.split(" Please use")[0]  # drop torch's advice to allow-list it
        detail = f" ({reason})" if reason else ""
        raise ChatbotError(f"refusing to load {path}: it holds more than plain data{detail}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise ChatbotError(f"{path} is not a readable checkpoint (corrupt or truncated): {_first_line(err)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ChatbotError(f"{path} is not a chatbot checkpoint (missing format marker)")
    if state.get("version") != VERSION:
        raise ChatbotError(f"{path} has checkpoint version {state.get('version')}; this code reads {VERSION}")
    problem = check_fields(state)
    if problem:
        raise ChatbotError(f"{path} has an invalid {problem}")
    return state


ATTN_MODELS = ("dot", "general", "concat")
# model_config field -> (type, smallest, largest): a checkpoint outside these is damaged or not ours.
MODEL_CONFIG_RANGES: dict[str, tuple[type, float, float]] = {
    "vocab_size": (int, 4, 10_000_000),  # at least PAD, SOS, EOS, UNK
    "hidden_size": (int, 1, 65_536),
    "encoder_n_layers": (int, 1, 64),
    "decoder_n_layers": (int, 1, 64),
    "dropout": (float, 0.0, 1.0),
}


def _is_number(value: Any, kind: type) -> bool:
    """`value` is an int (for int fields), or an int or float (for float fields); bools are neither."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind is int else isinstance(value, (int, float))


def check_fields(state: dict[str, Any]) -> str | None:
    """The first invalid field of a loaded checkpoint, as "field (value): the rule", or None if all are valid."""
    from chatbot.prepare import check_text_fields  # the same rules as a prepared dataset's stats.json

    problem = check_text_fields(state)
    if problem:
        return problem
    config = state.get("model_config")
    if not isinstance(config, dict):
        return f"model_config ({type(config).__name__}): must be a dict of the model's shape"
    for name, (kind, low, high) in MODEL_CONFIG_RANGES.items():
        if name not in config:
            continue
        value = config[name]
        if not _is_number(value, kind) or not low <= value <= high or (name == "dropout" and value == high):
            bound = f"{low} <= x < {high}" if name == "dropout" else f"an integer in {low}..{high}"
            return f"model_config.{name} ({value!r}): must be {bound}"
    if config.get("attn_model", "dot") not in ATTN_MODELS:
        return f"model_config.attn_model ({config['attn_model']!r}): must be one of {', '.join(ATTN_MODELS)}"
    if config.get("decoder_n_layers", 2) > config.get("encoder_n_layers", 2):
        return "model_config.decoder_n_layers: must not exceed encoder_n_layers (its state starts from theirs)"
    if not isinstance(state.get("tokenizer"), dict):
        return "tokenizer: must be the tokenizer's state (a dict)"
    return None


def build_model(state: dict[str, Any], device: str | torch.device = "cpu") -> tuple[Seq2Seq, Tokenizer]:
    """Rebuild the network (in eval mode, float32) and tokenizer stored in a loaded checkpoint."""
    try:
        config = ModelConfig.from_dict(state["model_config"])
        model = Seq2Seq(config)
        # Shipped weights may be stored in fp16 to stay small; compute happens in float32.
        weights = {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}
        model.load_state_dict(weights)
        tokenizer = tokenizer_from_state(state["tokenizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ChatbotError(f"checkpoint does not match this model code: {str(err).splitlines()[0]}") from None
    return model.to(device).eval(), tokenizer


def load_model(
    path: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[Seq2Seq, Tokenizer, dict[str, Any]]:
    """Load a checkpoint (default: the shipped pretrained model) -> (model, tokenizer, checkpoint)."""
    state = load_checkpoint(DEFAULT_CHECKPOINT if path is None else path)
    model, tokenizer = build_model(state, device)
    return model, tokenizer, state


def half_weights(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp16 copies of the float tensors; the shared embedding (listed under three names) stays one tensor."""
    halves: dict[tuple, torch.Tensor] = {}
    out = {}
    for name, tensor in weights.items():
        if tensor.is_floating_point():
            # Loaded tensors that share memory are distinct objects, so key on the memory they view.
            key = (tensor.data_ptr(), tuple(tensor.shape), tensor.stride())
            tensor = halves.setdefault(key, tensor.half())
        out[name] = tensor
    return out


def int8_rows(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """x (N, H) float -> {"int8": (N, H) int8, "scale": (N,) fp16}: each row over its own scale, its largest
    |value| stored as 127, so a value is off by at most half a step, scale / 2."""
    x = x.detach().float()
    scale = (x.abs().amax(dim=1) / 127).clamp_min(1e-8).half()  # (N,)
    q = (x / scale.float().unsqueeze(1)).round().clamp(-127, 127).to(torch.int8)  # (N, H)
    return {"int8": q, "scale": scale}


def from_int8_rows(stored: dict[str, torch.Tensor]) -> torch.Tensor:
    """`int8_rows`' form -> (N, H) float32."""
    return stored["int8"].float() * stored["scale"].float().unsqueeze(1)
