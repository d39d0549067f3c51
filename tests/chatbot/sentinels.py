"""Sentinel files for the "a command never deletes what it did not write" tests: plant, snapshot, compare."""

from __future__ import annotations

from pathlib import Path

NOTES = {"todo.md": b"- buy milk\n", "log.jsonl": b'{"mine": true}\n', "report.md": b"# my report\n"}


def plant_notes(folder: Path) -> Path:
    """A folder of a user's notes, with names a careless command might write too (log.jsonl, report.md)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in NOTES.items():
        (folder / name).write_bytes(data)
    return folder


def snapshot(*roots: Path) -> dict[str, bytes]:
    """Every file under `roots` (a root may be a file) -> its bytes: equal before and after = untouched."""
    files = {}
    for root in roots:
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.is_file():
                files[str(path)] = path.read_bytes()
    return files


def assert_one_line_refusal(code: int, err: str, command: str, *phrases: str) -> None:
    """Exit 1 with exactly one line on stderr, `chatbot COMMAND: error: ...`, holding every phrase."""
    assert code == 1, err
    assert err.count("\n") == 1 and err.startswith(f"chatbot {command}: error: "), err
    assert "Traceback" not in err and all(p in err for p in phrases), err
