"""Checkpoints are data: atomic writes, CPU loads of GPU saves, one-line refusals of anything else."""

import pickle
from pathlib import Path

import pytest
import torch

from chatbot.checkpoint import build_model, load_checkpoint, load_model, save_checkpoint
from chatbot.errors import ChatbotError
from chatbot.files import atomic_write
from chatbot.model.network import ModelConfig, Seq2Seq
from tests.chatbot.tiny_data import tiny_dataset


def checkpoint_state(model: Seq2Seq) -> dict:
    return {
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        "tokenizer": tiny_dataset(2, 1).tokenizer.state_dict(),
        "normalize": "tutorial",
        "max_length": 10,
    }


@pytest.fixture
def model() -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(ModelConfig(vocab_size=16, hidden_size=8, attn_model="concat")).eval()


def test_save_load_round_trip_gives_identical_outputs(tmp_path, model):
    save_checkpoint(tmp_path / "m.pt", checkpoint_state(model))
    loaded, tokenizer, state = load_model(tmp_path / "m.pt")
    assert not loaded.training and state["normalize"] == "tutorial" and len(tokenizer) == 16
    src, lengths, dec = torch.tensor([[5, 6], [7, 2], [2, 0]]), torch.tensor([3, 2]), torch.tensor([[1, 1], [9, 4]])
    torch.testing.assert_close(loaded(src, lengths, dec), model(src, lengths, dec), rtol=0, atol=0)


class CudaTagged:
    """Make torch.save tag CPU tensors as 'cuda:0', exactly as a checkpoint written on a GPU is."""

    def __enter__(self):
        tagger = lambda obj: "cuda:0" if obj.device.type == "cpu" else None  # noqa: E731
        torch.serialization.register_package(-100, tagger, lambda obj, location: None)
        self.entry = torch.serialization._package_registry[0]
        return self

    def __exit__(self, *exc):
        torch.serialization._package_registry.remove(self.entry)


def test_gpu_saved_checkpoint_loads_on_cpu(tmp_path, model):
    if torch.cuda.is_available():
        pytest.skip("simulates a CPU-only machine")
    with CudaTagged():
        save_checkpoint(tmp_path / "gpu.pt", checkpoint_state(model))
    # the simulation is real: without map_location, torch refuses (the tutorial's bug)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(tmp_path / "gpu.pt", weights_only=True)
    loaded, _, _ = load_model(tmp_path / "gpu.pt")
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


@pytest.mark.gpu
def test_checkpoint_saved_on_the_gpu_loads_on_cpu(tmp_path, model, cuda):
    state = checkpoint_state(model.to(cuda))
    save_checkpoint(tmp_path / "gpu.pt", state)
    loaded, _, _ = load_model(tmp_path / "gpu.pt", device="cpu")
    assert all(p.device.type == "cpu" for p in loaded.parameters())


class Exploit:
    """Unpickling this would run code (here: create a marker file)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_object_is_refused_without_running_it(tmp_path, model):
    marker = tmp_path / "pwned"
    state = {"format": "chatbot-checkpoint", "version": 1, **checkpoint_state(model), "evil": Exploit(str(marker))}
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(ChatbotError, match="refusing to load .*Unsupported global: GLOBAL io.open") as err:
        load_checkpoint(tmp_path / "evil.pt")
    assert "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a readable checkpoint"),
        (b"\x00garbage" * 50, "not a readable checkpoint"),
        ("truncated", "not a readable checkpoint"),
        ("foreign", "not a chatbot checkpoint"),
        ("plain pickle", "not a readable checkpoint"),
    ],
)
def test_corrupt_or_foreign_checkpoints_give_one_line_errors(tmp_path, model, content, message):
    path = tmp_path / "bad.pt"
    if content == "truncated":
        save_checkpoint(path, checkpoint_state(model))
        path.write_bytes(path.read_bytes()[:-300])
    elif content == "foreign":
        torch.save({"state_dict": model.state_dict()}, path)  # someone else's checkpoint
    elif content == "plain pickle":
        path.write_bytes(pickle.dumps({"a": 1}))
    else:
        path.write_bytes(content)
    with pytest.raises(ChatbotError, match=message) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_checkpoint_from_another_model_shape_is_one_line(tmp_path, model):
    state = checkpoint_state(model)
    state["model_config"]["hidden_size"] = 12
    save_checkpoint(tmp_path / "m.pt", state)
    with pytest.raises(ChatbotError, match="does not match"):
        build_model(load_checkpoint(tmp_path / "m.pt"))


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(tmp_path / "m.pt", fail)
    assert (tmp_path / "m.pt").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_missing_checkpoint_is_one_line(tmp_path):
    with pytest.raises(ChatbotError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def flip_byte_inside_a_tensor(path):
    """Flip one byte in the middle of the largest tensor's bytes, leaving the zip's structure readable."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        tensors = [i for i in archive.infolist() if "/data/" in i.filename and not i.filename.endswith(".pkl")]
        info = max(tensors, key=lambda i: i.compress_size)
    data = bytearray(path.read_bytes())
    # The local header is 30 bytes plus the name and extra field; the data follows it.
    name_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return info.filename


def test_flipped_byte_fails_the_crc_check(tmp_path, model):
    path = tmp_path / "m.pt"
    save_checkpoint(path, checkpoint_state(model))
    member = flip_byte_inside_a_tensor(path)
    torch.load(path, weights_only=True)  # the flip is real and silent: torch alone loads the damaged file
    with pytest.raises(ChatbotError) as err:
        load_checkpoint(path)
    assert (
        str(err.value) == f"{path} is corrupt: its member {member} fails the CRC check (damaged on disk or in transfer)"
    )


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("normalize", "shouting", "normalize ('shouting'): must be one of tutorial, unicode"),
        ("max_length", 1, "max_length (1): must be an integer in 2..10000"),
        ("max_length", 10.5, "max_length (10.5): must be an integer in 2..10000"),
        ("max_length", True, "max_length (True): must be an integer in 2..10000"),
        ("model_config", [1, 2], "model_config (list): must be a dict of the model's shape"),
        ("model_config.hidden_size", 0, "model_config.hidden_size (0): must be an integer in 1..65536"),
        ("model_config.vocab_size", "7826", "model_config.vocab_size ('7826'): must be an integer in 4..10000000"),
        ("model_config.encoder_n_layers", -1, "model_config.encoder_n_layers (-1): must be an integer in 1..64"),
        ("model_config.dropout", 1.0, "model_config.dropout (1.0): must be 0.0 <= x < 1.0"),
        ("model_config.attn_model", "bilinear", "model_config.attn_model ('bilinear'): must be one of dot, general"),
        ("model_config.decoder_n_layers", 3, "model_config.decoder_n_layers: must not exceed encoder_n_layers"),
        ("tokenizer", "voc.json", "tokenizer: must be the tokenizer's state"),
    ],
)
def test_out_of_range_fields_are_refused_naming_the_field(tmp_path, model, field, value, message):
    state = checkpoint_state(model)
    if field.startswith("model_config."):
        state["model_config"][field.split(".")[1]] = value
    else:
        state[field] = value
    save_checkpoint(tmp_path / "m.pt", state)
    with pytest.raises(ChatbotError) as err:
        load_checkpoint(tmp_path / "m.pt")
    assert str(err.value).startswith(f"{tmp_path / 'm.pt'} has an invalid {message}")
    assert "\n" not in str(err.value)


def test_refusals_never_quote_torchs_weights_only_advice(tmp_path, model):
    marker = tmp_path / "pwned"
    torch.save({"x": Exploit(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(ChatbotError) as err:
        load_checkpoint(tmp_path / "evil.pt")
    assert "weights_only" not in str(err.value) and "Please use" not in str(err.value)


def test_the_shipped_model_passes_every_check():
    from chatbot.checkpoint import DEFAULT_CHECKPOINT, check_fields

    if not DEFAULT_CHECKPOINT.exists():
        pytest.skip(f"no shipped model at {DEFAULT_CHECKPOINT}")
    state = load_checkpoint(DEFAULT_CHECKPOINT)
    assert check_fields(state) is None and state["normalize"] == "tutorial" and state["max_length"] == 20


def test_the_shipped_weights_fit_the_60_mb_budget():
    from chatbot.checkpoint import DEFAULT_CHECKPOINT, DEFAULT_RELEVANCE

    if not DEFAULT_CHECKPOINT.exists():
        pytest.skip(f"no shipped model at {DEFAULT_CHECKPOINT}")
    shipped = list(DEFAULT_CHECKPOINT.parent.glob("*.pt"))
    assert DEFAULT_CHECKPOINT in shipped and DEFAULT_RELEVANCE in shipped
    assert sum(path.stat().st_size for path in shipped) <= 60e6  # issue 10: at most 60 MB in all


def test_the_first_shipped_model_still_loads_and_replies(tmp_path):
    """Checkpoints written before this change (the first shipped model, from git history) load and reply."""
    import subprocess

    from chatbot.reply import Chatbot, DecodeSettings

    repo = Path(__file__).resolve().parents[2]
    old = tmp_path / "old.pt"
    done = subprocess.run(["git", "show", "51b5886:chatbot/pretrained/model.pt"], cwd=repo, capture_output=True)
    if done.returncode != 0:
        pytest.skip("no git history here (a source copy without .git)")
    old.write_bytes(done.stdout)
    bot = Chatbot.from_checkpoint(old)
    assert bot.backward is None and bot.relevance is None  # not the shipped path: no rerank models
    # The replies the first model card lists for greedy (chatbot/pretrained/MODEL_CARD.md at 51b5886).
    assert bot.reply("Hello.", DecodeSettings("greedy")) == "Hello."
    assert bot.reply("How are you?", DecodeSettings("greedy")) == "Fine."


def test_save_removes_stale_temps_of_that_file_only(tmp_path, model):
    import os
    import time

    old, fresh = tmp_path / ".m.pt.abcd1234.tmp", tmp_path / ".m.pt.wxyz5678.tmp"
    other, notes = tmp_path / ".best.pt.abcd1234.tmp", tmp_path / ".m.pt.notes.tmp"
    for p in (old, fresh, other, notes):
        p.write_bytes(b"half a checkpoint")
    hour_ago = time.time() - 3600
    for p in (old, other, notes):
        os.utime(p, (hour_ago, hour_ago))
    save_checkpoint(tmp_path / "m.pt", checkpoint_state(model))
    # the old leftover of m.pt goes; one still being written (fresh), another file's, and a non-temp name stay
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.pt", fresh.name, other.name, notes.name])


def test_saved_files_get_a_normal_mode(tmp_path, model):
    import os

    umask = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "m.pt", checkpoint_state(model))
    finally:
        os.umask(umask)
    assert (tmp_path / "m.pt").stat().st_mode & 0o777 == 0o644
