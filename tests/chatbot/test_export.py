"""torch.export of the encoder and decoder step: the exported programs reply exactly as the eager model."""

import json
import sys

import pytest
import torch

from chatbot.cli import main
from chatbot.decode import DecodeSettings
from chatbot.errors import ChatbotError
from chatbot.evaluate import PROBES
from chatbot.export import MARKER, export_model, load_exported
from chatbot.model.exported import ExportEncoder
from chatbot.reply import Chatbot
from tests.chatbot.sentinels import assert_one_line_refusal, plant_notes, snapshot
from tests.chatbot.tinybot import PAIRS, one_thread, random_model, trained_model, write_checkpoint  # noqa: F401


@pytest.fixture(scope="module")
def bots(tmp_path_factory):
    model, voc = trained_model()
    eager = Chatbot(model, voc, "tutorial", 10, "tiny test model")
    folder = export_model(eager, tmp_path_factory.mktemp("export") / "bot")
    return eager, folder


def test_export_folder_holds_programs_tokenizer_and_metadata(bots):
    eager, folder = bots
    names = {"encoder.pt2", "decoder.pt2", "voc.json", "export.json"}
    assert {p.name for p in folder.iterdir()} == names | {MARKER}
    assert set(json.loads((folder / MARKER).read_text())["files"]) == names
    meta = json.loads((folder / "export.json").read_text())
    assert meta["program"] == "torch.export" and meta["normalize"] == "tutorial" and meta["max_length"] == 10


def test_exported_replies_equal_eager_on_the_probe_prompts(bots):
    eager, folder = bots
    exported = load_exported(folder)
    prompts = PROBES + [q for q, _ in PAIRS]
    assert len(PROBES) == 40
    for settings in [DecodeSettings("greedy"), DecodeSettings("beam", beam_width=3), DecodeSettings("sample", seed=4)]:
        for prompt in prompts:
            assert exported.reply_ids(prompt, settings) == eager.reply_ids(prompt, settings)
            assert exported.reply(prompt, settings) == eager.reply(prompt, settings)


@pytest.mark.slow  # a fresh interpreter: importing torch and loading the programs takes a while
def test_loader_needs_no_model_code(bots):
    _, folder = bots
    # A fresh interpreter that may not import the network's code (its training and fast CPU forms) or
    # chatbot.checkpoint still answers.
    code = (
        "import sys\n"
        "BLOCKED = ('chatbot.model.network', 'chatbot.model.fast', 'chatbot.checkpoint')\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in BLOCKED: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from chatbot.export import load_exported\n"
        f"print(load_exported({str(folder)!r}).reply('how are you ?'))\n"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "I'm fine."


@pytest.mark.parametrize("attn", ["dot", "general", "concat"])
def test_export_encoder_matches_packed_encoder(attn):
    model = random_model(20, seed=3, attn=attn, layers=3)
    src = torch.tensor([[5], [6], [7], [2]])
    with torch.no_grad():
        expected = model.encode(src, torch.tensor([4]))
        got = ExportEncoder(model)(src)
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e)


def test_not_an_export_folder(tmp_path):
    with pytest.raises(ChatbotError, match="export.json"):
        load_exported(tmp_path)


def test_exporting_again_replaces_an_earlier_export(bots):
    eager, folder = bots
    (folder / "encoder.pt2").write_bytes(b"stale")
    assert export_model(eager, folder) == folder
    assert load_exported(folder).reply("hello .") == eager.reply("hello .")
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no temp or old folder left


def export_cli(capsys, *argv) -> tuple[int, str]:
    code = main(["export", *map(str, argv)])
    return code, capsys.readouterr().err


def test_export_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.md").write_text("sentinel")
    code, err = export_cli(capsys, "--out", notes)
    assert code == 1 and err == (
        f"chatbot export: error: --out {notes} already exists and was not written by this command "
        "(it holds todo.md); remove it or choose another folder\n"
    )
    assert [p.name for p in notes.iterdir()] == ["todo.md"] and (notes / "todo.md").read_text() == "sentinel"


def test_export_never_replaces_the_folder_holding_its_checkpoint(tmp_path, capsys):
    model, voc = trained_model()
    run = tmp_path / "run"
    write_checkpoint(run / "last.pt", model, voc)
    (run / MARKER).write_text(json.dumps({"files": ["last.pt"]}))  # even one that looks like an export
    code, err = export_cli(capsys, "--checkpoint", run / "last.pt", "--out", run)
    assert code == 1 and err == (
        f"chatbot export: error: --out {run} holds the input {run / 'last.pt'}; choose a folder that does not\n"
    )
    assert sorted(p.name for p in run.iterdir()) == sorted([MARKER, "last.pt"])


def test_export_onto_a_file_or_the_current_folder_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("sentinel")
    code, err = export_cli(capsys, "--out", "notes.txt")
    assert code == 1 and err == "chatbot export: error: --out notes.txt is a file, not a folder; choose another path\n"
    code, err = export_cli(capsys, "--out", ".")
    assert code == 1 and err == (
        "chatbot export: error: --out . is the current folder or one above it; choose a new folder\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_export_leaves_every_sentinel_byte_for_byte(tmp_path, capsys):
    """--out onto notes, the checkpoint's run, another training's run, a file, or a folder above them: refused."""
    model, voc = trained_model()
    run = tmp_path / "run"
    checkpoint = write_checkpoint(run / "best.pt", model, voc)
    other_run = tmp_path / "other-run"
    for name in ("last.pt", "best.pt"):
        write_checkpoint(other_run / name, model, voc)
    (other_run / "log.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    (other_run / "loss.png").write_bytes(b"\x89PNG not really")
    notes = plant_notes(tmp_path / "notes")
    a_file = tmp_path / "notes.txt"
    a_file.write_bytes(b"keep me")
    before = snapshot(tmp_path)
    for out in (notes, run, other_run, a_file, tmp_path):
        code, err = export_cli(capsys, "--checkpoint", checkpoint, "--out", out)
        assert_one_line_refusal(code, err, "export", f"--out {out}")
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "notes.txt", "other-run", "run"]


def test_a_factorized_output_layer_exports_and_replies_as_eager(tmp_path):
    import copy

    from chatbot.model.network import factorized

    model, voc = trained_model()
    model = copy.deepcopy(model)
    model.decoder.out = factorized(model.decoder.out, 16)
    model.config.output_rank = 16
    eager = Chatbot(model, voc, "tutorial", 10, "tiny factorized model")
    exported = load_exported(export_model(eager, tmp_path / "bot"))
    for settings in [DecodeSettings("greedy"), DecodeSettings("beam", beam_width=3)]:
        for prompt, _ in PAIRS:
            assert exported.reply_ids(prompt, settings) == eager.reply_ids(prompt, settings)
