"""`chatbot download`: fetch the Cornell Movie-Dialogs corpus, check its SHA-256, unpack it.

Both published forms: the original zip (`movie_lines.txt` + `movie_conversations.txt`) and ConvoKit's
`movie-corpus.zip` (`utterances.jsonl`). A download streams into `NAME.part` (resumed with an HTTP
Range request after a cut connection, within a run and on the next run), is hash-checked, and only
then renamed to `NAME`, so no half-file ever sits under the final name. Unpacking goes through a temp
folder too and refuses zip members that would land outside it.

Hashes: the original zip's SHA-256 is pinned (Cornell publishes none; this is the value that independent
projects pin for the same URL, e.g. dellison/CornellMovieDialogsCorpus.jl). ConvoKit's zip has no
published hash, so the first download's hash is recorded in `NAME.sha256` and later downloads and
runs are checked against it (trust on first use); the output says which applies.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import stat
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from chatbot.cli import float_in, int_in
from chatbot.errors import ChatbotError
from chatbot.files import atomic_write_bytes, replace_dir, sha256_file

CHUNK = 1 << 16


@dataclass(frozen=True)
class Source:
    """One downloadable form of the corpus."""

    name: str
    url: str
    filename: str
    sha256: str | None  # pinned hash, or None: record the first download's hash
    folder: str  # unpacked into DIR/folder
    prepare_hint: str  # what to pass to `chatbot prepare` afterwards


SOURCES = {
    "cornell": Source(
        "cornell",
        "http://www.cs.cornell.edu/~cristian/data/cornell_movie_dialogs_corpus.zip",
        "cornell_movie_dialogs_corpus.zip",
        "3bde8a571f615201bc2d2453e22878090719638592f774720eddec739de8c900",
        "cornell",
        "cornell",
    ),
    "convokit": Source(
        "convokit",
        "https://zissou.infosci.cornell.edu/convokit/datasets/movie-corpus/movie-corpus.zip",
        "movie-corpus.zip",
        None,
        "convokit",
        "convokit",
    ),
}


def _by_hand(url: str, dest: Path) -> str:
    return f"to place it by hand, download {url} in a browser, save it as {dest}, and run this command again"


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the rest of `url` to `part` (a Range request when `part` already holds bytes)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "chatbot-download/1"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the range starts at the end: the part file is already complete
            return
        raise
    with response:
        if have and response.status != 206:  # the server ignored the Range header: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with (
            open(part, "ab" if have else "wb") as f,
            tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=part.name[:-5], disable=not progress
            ) as bar,
        ):
            while block := response.read(CHUNK):
                f.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size < total:  # the server closed the connection early
        raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def download(
    url: str, dest: str | Path, sha256: str | None = None, retries: int = 3, timeout: float = 30, progress: bool = True
) -> tuple[str, str]:
    """Download `url` to `dest` (resumable, atomic, hash-checked); returns (sha256, how it was checked)."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ChatbotError(f"cannot use {dest.parent} as the download folder: {err.strerror}") from err
    recorded = dest.with_name(dest.name + ".sha256")
    expected = sha256 or (recorded.read_text().split()[0] if recorded.is_file() else None)
    if dest.exists():
        digest = sha256_file(dest)
        if expected is not None and digest != expected:
            raise ChatbotError(f"{dest} has sha256 {digest}, expected {expected}: delete it and run this command again")
        return digest, "already downloaded, " + ("pinned hash matches" if sha256 else "recorded hash matches")

    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, timeout, progress)
            break
        except urllib.error.HTTPError as err:
            raise ChatbotError(
                f"download of {url} failed: HTTP {err.code} {err.reason}; {_by_hand(url, dest)}"
            ) from err
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            if attempt == retries or isinstance(reason, socket.gaierror | ConnectionRefusedError):
                kept = f"{part.stat().st_size} bytes kept in {part} for resuming; " if part.exists() else ""
                raise ChatbotError(
                    f"download of {url} failed ({reason or err.__class__.__name__}); {kept}{_by_hand(url, dest)}"
                ) from err
    digest = sha256_file(part)
    if expected is not None and digest != expected:
        part.unlink()
        raise ChatbotError(f"download of {url} has sha256 {digest}, expected {expected}; the bad file was removed")
    how = "pinned hash matches" if sha256 else "recorded hash matches" if expected else f"hash recorded in {recorded}"
    if expected is None:
        atomic_write_bytes(recorded, f"{digest}  {dest.name}\n".encode())
    os.replace(part, dest)
    return digest, how


def _safe_member(name: str, info: zipfile.ZipInfo) -> bool:
    """A member that unpacks inside the target folder: relative, no "..", no drive, not a symlink."""
    path = PurePosixPath(name.replace("\\", "/"))
    is_link = stat.S_ISLNK(info.external_attr >> 16)
    return not (path.is_absolute() or ".." in path.parts or ":" in name or is_link)


MARKER = ".chatbot-download"  # written into every folder `chatbot download` unpacks; only those are replaced


def extract_zip(zip_path: str | Path, target: str | Path) -> Path:
    """Unpack `zip_path` into `target` (built complete in a temp folder, then swapped in: `replace_dir`);
    refuses members that would escape it."""
    zip_path, target = Path(zip_path), Path(target)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            bad = [i.filename for i in infos if not _safe_member(i.filename, i)]
            if bad:
                raise ChatbotError(f"refusing to unpack {zip_path}: member {bad[0]!r} would land outside {target}")
            broken = zf.testzip()
            if broken is not None:
                raise zipfile.BadZipFile(f"member {broken!r} fails its CRC check")

            def unpack(tmp: Path) -> None:
                for info in infos:
                    if not info.filename.startswith("__MACOSX/"):  # resource forks macOS adds to zips
                        zf.extract(info, tmp)

            # An earlier unpacking (it holds MARKER) is replaced whole; a folder we did not write is refused.
            replace_dir(target, unpack, MARKER, [zip_path], flag="the unpack folder")
    except (zipfile.BadZipFile, EOFError) as err:
        raise ChatbotError(f"{zip_path} is not a complete zip ({err}): delete it and download it again") from err
    return target


def fetch_source(
    source: Source, directory: str | Path, url: str | None = None, sha256: str | None = None, **kw
) -> Path:
    """Download and unpack one source into `directory`; returns the unpacked folder."""
    directory = Path(directory)
    dest = directory / source.filename
    url = url or source.url
    pinned = sha256 if sha256 is not None else source.sha256
    print(f"{source.name}: {url} -> {dest}")
    digest, how = download(url, dest, pinned, **kw)
    print(f"{source.name}: sha256 {digest} ({how})")
    try:
        folder = extract_zip(dest, directory / source.folder)
    except ChatbotError:
        if not pinned:  # never keep a broken file or its recorded hash as the reference for later runs
            dest.unlink(missing_ok=True)
            dest.with_name(dest.name + ".sha256").unlink(missing_ok=True)
        raise
    print(f"{source.name}: unpacked into {folder}; next: chatbot prepare {folder} --out corpus/prepared/{source.name}")
    return folder


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `chatbot download`."""
    parser.add_argument(
        "which", nargs="?", default="cornell", choices=[*SOURCES, "all"], help="which form of the corpus"
    )
    parser.add_argument("--dir", default="corpus/raw", help="folder for the zip and the unpacked files")
    parser.add_argument("--url", default=None, help="download from this URL instead (a mirror); one source only")
    parser.add_argument("--sha256", default=None, help="expected SHA-256 of the zip (overrides the pinned one)")
    parser.add_argument("--retries", type=int_in(0, 100), default=3, help="resume attempts after a cut connection")
    parser.add_argument(
        "--timeout",
        type=float_in(0, 3600, low_open=True),
        default=30.0,
        help="seconds to wait for the server before giving up",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Entry point of `chatbot download`."""
    names = list(SOURCES) if args.which == "all" else [args.which]
    if args.url and len(names) > 1:
        raise ChatbotError("--url names one file: pick cornell or convokit, not all")
    for name in names:
        fetch_source(
            SOURCES[name],
            args.dir,
            args.url,
            args.sha256,
            retries=args.retries,
            timeout=args.timeout,
            progress=not args.no_progress,
        )
    return 0
