"""scripts/dump_replies.py: the same checkpoint gives the same dump, and every strategy's replies are in it."""

import importlib.util
import json

from tests.chatbot.tinybot import REPO_ROOT, trained_model, write_checkpoint

spec = importlib.util.spec_from_file_location("dump_replies", REPO_ROOT / "scripts" / "dump_replies.py")
dump_replies = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dump_replies)


def test_two_dumps_of_one_checkpoint_are_equal_and_hold_every_strategy(tmp_path):
    model, voc = trained_model()
    checkpoint = write_checkpoint(tmp_path / "best.pt", model, voc)
    for name in ("a.json", "b.json"):
        assert dump_replies.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / name)]) == 0
    a = json.loads((tmp_path / "a.json").read_text())
    assert a == json.loads((tmp_path / "b.json").read_text())
    assert sorted(a) == sorted(k for s in ("greedy", "beam", "sample", "rerank") for k in (s, s + "_stream"))
    assert all(len(a[s]) == 30 and len(a[s + "_stream"]) == 5 for s in ("greedy", "beam", "sample", "rerank"))
    assert a["greedy_stream"] == a["greedy"][:5]  # streaming ends where the whole reply is
