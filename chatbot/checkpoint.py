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

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from chatbot.errors import ChatbotError
from chatbot.model import ModelConfig, Seq2Seq
from chatbot.tokenizer import Tokenizer, tokenizer_from_state

FORMAT = "chatbot-checkpoint"
VERSION = 1
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
DEFAULT_CHECKPOINT = PRETRAINED_DIR / "model.pt"
DEFAULT_BACKWARD = PRETRAINED_DIR / "backward.pt"  # the reply -> query model that rerank scores with


def atomic_write(path: str | Path, write) -> None:
    """Call `write(file_object)` on a temp file beside `path`, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private (0600); give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (plain data and tensors only) to `path` atomically."""
    state = {"format": FORMAT, "version": VERSION, **state}
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU; any problem becomes a one-line `ChatbotError`."""
    path = Path(path)
    if not path.exists():
        raise ChatbotError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise ChatbotError(f"checkpoint path is a directory, not a file: {path}")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise ChatbotError(f"{path} is not a readable checkpoint (corrupt, truncated or not a torch file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        # torch's message is a paragraph; the line naming the refused object is the useful one.
        reason = next((line for line in lines if "WeightsUnpickler error" in line), lines[0] if lines else "")
        reason = reason.split(" Please use")[0]  # drop torch's advice to allow-list it
        raise ChatbotError(f"refusing to load {path}: it holds more than plain data ({reason})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise ChatbotError(f"{path} is not a readable checkpoint (corrupt or truncated): {err}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ChatbotError(f"{path} is not a chatbot checkpoint (missing format marker)")
    if state.get("version") != VERSION:
        raise ChatbotError(f"{path} has checkpoint version {state.get('version')}; this code reads {VERSION}")
    return state


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
