"""replace_dir: a folder is swapped in complete, and nothing the command did not write is ever deleted."""

from __future__ import annotations

import json
import os

import pytest

from chatbot.errors import ChatbotError
from chatbot.files import MARKER_FILES_KEY, atomic_write, check_out_dir, replace_dir

MARKER = ".test-output"


def build_two_files(folder):
    (folder / "a.txt").write_text("new a")
    (folder / "b.txt").write_text("new b")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in a fresh folder, so `.` and relative paths point inside the test's own temp folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_new_folder_holds_the_build_and_a_marker_listing_it(in_tmp):
    out = replace_dir(in_tmp / "out", build_two_files, MARKER)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.txt", "b.txt"]
    assert json.loads((out / MARKER).read_text())[MARKER_FILES_KEY] == ["a.txt", "b.txt"]
    assert sorted(p.name for p in in_tmp.iterdir()) == ["out"]  # no temp folder left beside it


def test_a_previous_output_is_replaced(in_tmp):
    replace_dir(in_tmp / "out", build_two_files, MARKER)
    replace_dir(in_tmp / "out", lambda folder: (folder / "a.txt").write_text("newer a"), MARKER)
    assert sorted(p.name for p in (in_tmp / "out").iterdir()) == [MARKER, "a.txt"]
    assert (in_tmp / "out" / "a.txt").read_text() == "newer a"
    assert sorted(p.name for p in in_tmp.iterdir()) == ["out"]


def test_an_empty_folder_is_used(in_tmp):
    (in_tmp / "out").mkdir()
    replace_dir(in_tmp / "out", build_two_files, MARKER)
    assert (in_tmp / "out" / "a.txt").read_text() == "new a"


def test_a_folder_of_user_notes_survives(in_tmp):
    notes = in_tmp / "notes"
    notes.mkdir()
    (notes / "todo.md").write_text("my notes")
    with pytest.raises(ChatbotError) as err:
        replace_dir(notes, build_two_files, MARKER)
    assert str(err.value) == (
        f"--out {notes} already exists and was not written by this command (it holds todo.md); "
        "remove it or choose another folder"
    )
    assert [p.name for p in notes.iterdir()] == ["todo.md"] and (notes / "todo.md").read_text() == "my notes"
    assert sorted(p.name for p in in_tmp.iterdir()) == ["notes"]


def test_a_file_added_to_a_previous_output_survives(in_tmp):
    out = replace_dir(in_tmp / "out", build_two_files, MARKER)
    (out / "my_notes.txt").write_text("keep me")
    with pytest.raises(ChatbotError, match=f"^--out {out} holds my_notes.txt, which this command did not write"):
        replace_dir(out, build_two_files, MARKER)
    assert (out / "my_notes.txt").read_text() == "keep me" and (out / "a.txt").read_text() == "new a"


def test_garbled_marker_is_not_trusted(in_tmp):
    out = in_tmp / "out"
    out.mkdir()
    (out / MARKER).write_text("not json")
    (out / "data.csv").write_text("precious")
    with pytest.raises(ChatbotError, match="was not written by this command"):
        replace_dir(out, build_two_files, MARKER)
    assert (out / "data.csv").read_text() == "precious"


@pytest.mark.parametrize("given", [".", "", "..", "sub/.."])
def test_the_current_folder_or_one_above_is_refused(in_tmp, given):
    (in_tmp / "sub").mkdir()
    (in_tmp / "keep.txt").write_text("sentinel")
    (in_tmp / MARKER).write_text(json.dumps({MARKER_FILES_KEY: []}))  # even if it looks like our output
    with pytest.raises(ChatbotError, match="is the current folder or one above it"):
        replace_dir(given, build_two_files, MARKER)
    assert (in_tmp / "keep.txt").read_text() == "sentinel"
    assert sorted(p.name for p in in_tmp.iterdir()) == sorted([MARKER, "keep.txt", "sub"])


def test_a_run_folder_with_last_pt_is_refused(in_tmp):
    run = in_tmp / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes(b"weights")
    with pytest.raises(ChatbotError, match="already exists and was not written by this command"):
        replace_dir(run, build_two_files, MARKER)
    # ... and even a previous output is not replaced while the input lies inside it
    (run / MARKER).write_text(json.dumps({MARKER_FILES_KEY: ["last.pt"]}))
    with pytest.raises(ChatbotError) as err:
        replace_dir(run, build_two_files, MARKER, inputs=[run / "last.pt"])
    assert str(err.value) == f"--out {run} holds the input {run / 'last.pt'}; choose a folder that does not"
    assert (run / "last.pt").read_bytes() == b"weights"


def test_out_equal_to_the_input_is_refused(in_tmp):
    (in_tmp / "model.pt").write_bytes(b"weights")
    with pytest.raises(ChatbotError, match="is a file, not a folder"):
        replace_dir(in_tmp / "model.pt", build_two_files, MARKER, inputs=[in_tmp / "model.pt"])
    assert (in_tmp / "model.pt").read_bytes() == b"weights"


def test_out_onto_a_file_is_one_line(in_tmp):
    (in_tmp / "notes.txt").write_text("sentinel")
    with pytest.raises(ChatbotError) as err:
        replace_dir(in_tmp / "notes.txt", build_two_files, MARKER)
    assert str(err.value) == f"--out {in_tmp / 'notes.txt'} is a file, not a folder; choose another path"
    assert (in_tmp / "notes.txt").read_text() == "sentinel"


def test_a_symlink_is_refused_and_its_target_kept(in_tmp):
    target = in_tmp / "elsewhere"
    target.mkdir()
    (target / MARKER).write_text(json.dumps({MARKER_FILES_KEY: []}))
    (in_tmp / "link").symlink_to(target)
    with pytest.raises(ChatbotError, match="is a symbolic link"):
        replace_dir(in_tmp / "link", build_two_files, MARKER)
    assert (in_tmp / "link").is_symlink() and [p.name for p in target.iterdir()] == [MARKER]


def test_a_failed_build_leaves_the_previous_output_as_it_was(in_tmp):
    out = replace_dir(in_tmp / "out", build_two_files, MARKER)

    def fail(folder):
        (folder / "a.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_dir(out, fail, MARKER)
    assert (out / "a.txt").read_text() == "new a" and (out / "b.txt").read_text() == "new b"
    assert sorted(p.name for p in in_tmp.iterdir()) == ["out"]  # the temp folder is gone


def test_the_old_folder_is_moved_only_once_the_new_one_is_complete(in_tmp):
    out = replace_dir(in_tmp / "out", build_two_files, MARKER)
    seen = []

    def build(folder):
        (folder / "a.txt").write_text("newer")
        seen.append((out / "a.txt").read_text())  # while building, the old output is still in place

    replace_dir(out, build, MARKER)
    assert seen == ["new a"] and (out / "a.txt").read_text() == "newer"


def test_folders_and_files_get_normal_modes(in_tmp):
    umask = os.umask(0o022)
    try:
        out = replace_dir(in_tmp / "out", build_two_files, MARKER)
        atomic_write(in_tmp / "f.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o755  # mkdtemp's 0700 would hide it from other users
    assert (in_tmp / "f.bin").stat().st_mode & 0o777 == 0o644


def test_check_out_dir_accepts_a_missing_path(in_tmp):
    assert check_out_dir(in_tmp / "new" / "out", MARKER) == (in_tmp / "new" / "out").resolve()
    assert not (in_tmp / "new").exists()  # checking writes nothing


def test_leftovers_of_a_killed_build_are_removed_by_the_next_one(in_tmp):
    """SIGKILL mid-build leaves `.out.XXXXXXXX.tmp`; the next replace_dir of `out` removes it once stale."""
    import signal
    import subprocess
    import sys
    import time

    from chatbot.files import STALE_SECONDS

    code = (
        "import time; from pathlib import Path; from chatbot.files import replace_dir\n"
        "def build(tmp):\n    (tmp / 'a.txt').write_text('half')\n    time.sleep(60)\n"
        f"replace_dir('out', build, {MARKER!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=in_tmp, env=env)
    deadline = time.monotonic() + 60
    while not list(in_tmp.glob(".out.*.tmp/a.txt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (leftover,) = in_tmp.glob(".out.*.tmp")
    fresh = in_tmp / ".out.inflight.tmp"  # another write of `out` still in progress: kept
    fresh.mkdir()
    (in_tmp / ".other.abcdefgh.tmp").mkdir()  # a leftover of another path: not this write's to remove
    old = time.time() - STALE_SECONDS - 5
    for path in (leftover, leftover / "a.txt", in_tmp / ".other.abcdefgh.tmp"):
        os.utime(path, (old, old))
    replace_dir(in_tmp / "out", build_two_files, MARKER)
    assert sorted(p.name for p in in_tmp.iterdir()) == [".other.abcdefgh.tmp", ".out.inflight.tmp", "out"]
