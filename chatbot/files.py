"""Writing files and folders safely: atomic replaces, normal modes, and never clobbering what we did not write.

- `atomic_write(path, write)`: a file is written to a temp file beside it, fsynced, then renamed into place
  (`atomic_write_bytes` for bytes in memory).
- `sha256_file(path)`: a file's hash, read in chunks.
- `replace_dir(out, build, marker, inputs)`: a folder is built complete in a temp folder beside `out`,
  then swapped in. An existing `out` is replaced only when it is empty or a previous output of the
  same command (it holds `marker`, which lists the entries that command wrote, and nothing else);
  anything else is refused with one line naming the path, as git refuses to overwrite untracked files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from chatbot.errors import ChatbotError

MARKER_FILES_KEY = "files"  # the marker is JSON: {"files": [the entries the command wrote]}
STALE_SECONDS = 60  # a temp file this old is a leftover of an interrupted write, not one in progress


def normal_mode(directory: bool = False) -> int:
    """The mode a plain `open()` or `mkdir` would give under the current umask (0644 / 0755 under umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def _newest_mtime(path: str) -> float:
    """The latest mtime of a folder and everything in it (a build in progress keeps touching some file)."""
    newest = os.stat(path, follow_symlinks=False).st_mtime
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            newest = max(newest, os.stat(os.path.join(folder, name), follow_symlinks=False).st_mtime)
    return newest


def remove_stale_temps(path: str | Path, older_than: float = STALE_SECONDS) -> list[Path]:
    """Delete leftovers of interrupted writes of `path` -> the removed paths: `.NAME.XXXXXXXX.tmp` files of
    `atomic_write(path)`, and `.NAME.XXXXXXXX.tmp` / `.old` folders of `replace_dir(path)` (a SIGKILL or
    SIGTERM gives no chance to clean up, so the next write of the same path does).

    Only names `tempfile.mkstemp`/`mkdtemp` make for exactly this path, and only ones untouched for
    `older_than` seconds (a write in progress keeps its file's mtime fresh).
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.(tmp|old)")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                if now - _newest_mtime(entry.path) > older_than:
                    shutil.rmtree(entry.path)
                    removed.append(Path(entry.path))
            elif match[1] == "tmp" and entry.is_file(follow_symlinks=False):
                if now - entry.stat(follow_symlinks=False).st_mtime > older_than:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write(file_object)` on a temp file beside `path`, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, normal_mode())  # mkstemp makes the file private (0600); give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """`atomic_write` of bytes already in memory."""
    atomic_write(path, lambda f: f.write(data))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_within(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies inside it (both resolved)."""
    return path == folder or folder in path.parents


def read_marker(folder: Path, marker: str) -> set[str] | None:
    """The entries a previous run recorded in `folder/marker`, or None if the folder is not such an output."""
    path = folder / marker
    if path.is_symlink() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    files = data.get(MARKER_FILES_KEY) if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return {*files, marker}


def check_out_dir(out: str | Path, marker: str | None, inputs: Iterable[str | Path] = (), flag: str = "--out") -> Path:
    """Refuse (one line) an `out` that replacing (or writing into) would lose data in; returns `out` resolved.

    Allowed: a missing path, an empty folder, or a previous output (holds `marker`, and no entry it does
    not list; with `marker` None no folder counts as one). Never allowed: a file, a symlink, the current
    folder or one above it, or a folder holding (or being) one of `inputs`.
    """
    given = Path(out)
    if given.is_symlink():
        raise ChatbotError(f"{flag} {given} is a symbolic link; remove it or choose another folder")
    resolved = given.resolve()
    if resolved.exists() and not resolved.is_dir():
        raise ChatbotError(f"{flag} {given} is a file, not a folder; choose another path")
    if _is_within(Path.cwd().resolve(), resolved):
        raise ChatbotError(f"{flag} {given} is the current folder or one above it; choose a new folder")
    for item in inputs:
        if item is not None and _is_within(Path(item).resolve(), resolved):
            raise ChatbotError(f"{flag} {given} holds the input {item}; choose a folder that does not")
    if not resolved.is_dir():
        return resolved
    entries = {p.name for p in resolved.iterdir()}
    if not entries:
        return resolved
    ours = None if marker is None else read_marker(resolved, marker)
    if ours is None:
        first = sorted(entries)[0]
        if marker is None:
            raise ChatbotError(
                f"{flag} {given} already exists and is not empty (it holds {first}); choose a new folder"
            )
        raise ChatbotError(
            f"{flag} {given} already exists and was not written by this command (it holds {first}); "
            "remove it or choose another folder"
        )
    foreign = sorted(entries - ours)
    if foreign:
        raise ChatbotError(f"{flag} {given} holds {foreign[0]}, which this command did not write; move it first")
    return resolved


def replace_dir(
    out: str | Path,
    build: Callable[[Path], object],
    marker: str,
    inputs: Iterable[str | Path] = (),
    flag: str = "--out",
) -> Path:
    """Build a folder with `build(tmp)` and swap it in at `out` -> `out`.

    `check_out_dir` runs first (before any work), so a refusal costs nothing. The new folder is
    complete, with `marker` listing its entries, before the old one is moved away; if anything fails,
    the old folder is left as it was and the temp folder is removed.
    """
    inputs = list(inputs)
    check_out_dir(out, marker, inputs, flag)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old: Path | None = None
    try:
        os.chmod(tmp, normal_mode(directory=True))  # mkdtemp makes the folder private (0700)
        build(tmp)
        written = sorted(p.name for p in tmp.iterdir())
        (tmp / marker).write_text(json.dumps({MARKER_FILES_KEY: written}) + "\n", encoding="utf-8")
        check_out_dir(out, marker, inputs, flag)  # again: something may have appeared while we built
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
        try:
            os.replace(tmp, out)
        except BaseException:
            if old is not None:
                os.replace(old / out.name, out)  # put the previous output back
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not (old / out.name).exists():
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out
