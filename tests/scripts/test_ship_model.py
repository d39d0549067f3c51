"""scripts/ship_model.py: the shipped model keeps the replies, halves the weights, stores the embedding once."""

import importlib.util

import torch

from chatbot.checkpoint import load_checkpoint, load_model
from tests.chatbot.tinybot import REPO_ROOT, one_thread, trained_model, write_checkpoint  # noqa: F401

spec = importlib.util.spec_from_file_location("ship_model", REPO_ROOT / "scripts" / "ship_model.py")
ship_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ship_model)

CARD_ARGS = [
    "--command",
    "chatbot train x",
    "--prepare-command",
    "chatbot prepare y",
    "--hardware",
    "cpu",
    "--minutes",
    "1",
]


def test_shipped_checkpoint_is_fp16_with_one_embedding_and_same_replies(tmp_path):
    model, voc = trained_model()
    source = write_checkpoint(tmp_path / "best.pt", model, voc)
    out = tmp_path / "pretrained" / "model.pt"
    assert ship_model.main([str(source), "--out", str(out), *CARD_ARGS]) == 0

    state = load_checkpoint(out)
    weights = state["model"]
    assert all(v.dtype == torch.float16 for v in weights.values() if v.is_floating_point())
    # the embedding shared by encoder and decoder is one tensor in the file, not three copies
    shared = {
        weights[k].data_ptr() for k in ("embedding.weight", "encoder.embedding.weight", "decoder.embedding.weight")
    }
    assert len(shared) == 1
    shipped, _, _ = load_model(out)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(shipped.state_dict()[name], tensor.half().float())
    card = (out.parent / "MODEL_CARD.md").read_text()
    assert "chatbot train x" in card and card.count("\n| ") >= len(ship_model.PROBES)


def test_bad_checkpoint_is_one_line_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "pretrained" / "model.pt"
    assert ship_model.main([str(bad), "--out", str(out), *CARD_ARGS]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists()
