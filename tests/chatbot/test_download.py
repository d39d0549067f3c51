"""`chatbot download` against a real HTTP server on 127.0.0.1 that the test starts and controls."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatbot.cli import main
from chatbot.corpus import detect_format, extract_pairs, read_corpus
from chatbot.download import SOURCES, download, extract_zip
from chatbot.errors import ChatbotError

SEP = " +++$+++ "


def cornell_zip() -> bytes:
    """A small zip laid out like the original: a sub-folder with the two files (ISO-8859-1), plus junk."""
    lines = [f"L{i}{SEP}u{i % 2}{SEP}m0{SEP}X{SEP}Line number {i}, café." for i in range(1, 301)]
    convs = [f"u0{SEP}u1{SEP}m0{SEP}['L{i}', 'L{i + 1}', 'L{i + 2}']" for i in range(1, 299, 3)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # stored: a cut at half the bytes is mid-member
        zf.writestr("cornell movie-dialogs corpus/movie_lines.txt", "\n".join(lines).encode("iso-8859-1"))
        zf.writestr("cornell movie-dialogs corpus/movie_conversations.txt", "\n".join(convs).encode("iso-8859-1"))
        zf.writestr("__MACOSX/._movie_lines.txt", b"\x00junk")
    return buf.getvalue()


class Server:
    """Serves `files` (path -> bytes) with Range support; `cut[path]` = how many requests to cut mid-body."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.ignore_range = False  # behave like a server without Range support
        self.requests: list[tuple[str, str | None]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                owner.requests.append((self.path, self.headers.get("Range")))
                data = owner.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                ranged = self.headers.get("Range") and not owner.ignore_range
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if ranged else 0
                if start >= len(data):
                    self.send_error(416, "Range Not Satisfiable")
                    return
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if owner.cut.get(self.path, 0) > 0:  # send half, then really drop the connection
                    owner.cut[self.path] -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def cli(*argv: str) -> int:
    return main(["download", *map(str, argv), "--no-progress", "--timeout", "5"])


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_success_pinned_hash_unpacks_and_prepare_reads_it(server: Server, tmp_path: Path, capsys) -> None:
    data = cornell_zip()
    server.files["/c.zip"] = data
    sha = hashlib.sha256(data).hexdigest()
    assert cli("cornell", "--dir", tmp_path, "--url", server.url + "/c.zip", "--sha256", sha) == 0
    out = capsys.readouterr().out
    assert f"sha256 {sha} (pinned hash matches)" in out
    assert (tmp_path / "cornell_movie_dialogs_corpus.zip").read_bytes() == data
    assert names(tmp_path) == ["cornell", "cornell_movie_dialogs_corpus.zip"]  # no .part, no temp folder
    fmt, folder = detect_format(tmp_path / "cornell")
    assert fmt == "cornell" and not (tmp_path / "cornell" / "__MACOSX").exists()
    pairs = extract_pairs(read_corpus(folder))
    assert len(pairs) == 200 and pairs[0].query == "Line number 1, café."
    # A second run finds the file, checks it, and downloads nothing.
    n = len(server.requests)
    assert cli("cornell", "--dir", tmp_path, "--url", server.url + "/c.zip", "--sha256", sha) == 0
    assert "already downloaded, pinned hash matches" in capsys.readouterr().out and len(server.requests) == n


def test_first_download_records_the_hash_and_later_runs_check_it(server: Server, tmp_path: Path, capsys) -> None:
    data = cornell_zip()
    server.files["/m.zip"] = data
    dest = tmp_path / "m.zip"
    digest, how = download(server.url + "/m.zip", dest, None, progress=False)
    assert digest == hashlib.sha256(data).hexdigest() and how.startswith("hash recorded in")
    assert (tmp_path / "m.zip.sha256").read_text().split() == [digest, "m.zip"]
    dest.unlink()
    assert download(server.url + "/m.zip", dest, None, progress=False)[1] == "recorded hash matches"
    dest.unlink()
    server.files["/m.zip"] = data + b"changed upstream"
    with pytest.raises(Exception, match="expected " + digest):
        download(server.url + "/m.zip", dest, None, progress=False)
    assert not dest.exists() and not (tmp_path / "m.zip.part").exists()


def test_resume_after_the_server_cuts_the_connection(server: Server, tmp_path: Path) -> None:
    data = cornell_zip()
    server.files["/c.zip"] = data
    server.cut["/c.zip"] = 1
    dest = tmp_path / "c.zip"
    digest, _ = download(server.url + "/c.zip", dest, hashlib.sha256(data).hexdigest(), retries=2, progress=False)
    assert dest.read_bytes() == data and digest == hashlib.sha256(data).hexdigest()
    half = (len(data)) // 2
    assert server.requests == [("/c.zip", None), ("/c.zip", f"bytes={half}-")]


def test_cut_without_retries_keeps_the_part_and_the_next_run_resumes(server: Server, tmp_path: Path, capsys) -> None:
    data = cornell_zip()
    server.files["/c.zip"] = data
    server.cut["/c.zip"] = 1
    sha = hashlib.sha256(data).hexdigest()
    argv = ("cornell", "--dir", tmp_path, "--url", server.url + "/c.zip", "--sha256", sha, "--retries", "0")
    assert cli(*argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "kept in" in err and "to place it by hand" in err
    part = tmp_path / "cornell_movie_dialogs_corpus.zip.part"
    assert part.stat().st_size == len(data) // 2
    assert not (tmp_path / "cornell_movie_dialogs_corpus.zip").exists()  # nothing under the final name
    assert cli(*argv) == 0
    assert server.requests[-1] == ("/c.zip", f"bytes={len(data) // 2}-")
    assert (tmp_path / "cornell_movie_dialogs_corpus.zip").read_bytes() == data and not part.exists()


def test_server_without_range_support_restarts_from_zero(server: Server, tmp_path: Path) -> None:
    data = cornell_zip()
    server.files["/c.zip"] = data
    server.ignore_range = True
    (tmp_path / "c.zip.part").write_bytes(b"stale bytes from an earlier try")
    download(server.url + "/c.zip", tmp_path / "c.zip", hashlib.sha256(data).hexdigest(), progress=False)
    assert (tmp_path / "c.zip").read_bytes() == data and not (tmp_path / "c.zip.part").exists()


def test_part_file_already_complete_is_checked_and_renamed(server: Server, tmp_path: Path) -> None:
    data = cornell_zip()
    server.files["/c.zip"] = data
    (tmp_path / "c.zip.part").write_bytes(data)  # e.g. interrupted between the last byte and the rename
    download(server.url + "/c.zip", tmp_path / "c.zip", hashlib.sha256(data).hexdigest(), progress=False)
    assert server.requests == [("/c.zip", f"bytes={len(data)}-")]  # answered 416: nothing left to send
    assert (tmp_path / "c.zip").read_bytes() == data


def test_hash_mismatch_removes_the_bad_file(server: Server, tmp_path: Path, capsys) -> None:
    server.files["/c.zip"] = cornell_zip()
    assert cli("cornell", "--dir", tmp_path, "--url", server.url + "/c.zip", "--sha256", "0" * 64) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected " + "0" * 64 in err and "bad file was removed" in err
    assert names(tmp_path) == []


def test_pinned_hash_of_the_real_corpus_is_used_by_default(server: Server, tmp_path: Path, capsys) -> None:
    server.files["/c.zip"] = cornell_zip()  # not the real corpus, so the pinned hash must reject it
    assert cli("cornell", "--dir", tmp_path, "--url", server.url + "/c.zip") == 1
    assert "expected " + SOURCES["cornell"].sha256 in capsys.readouterr().err
    assert names(tmp_path) == []


def test_404_is_one_clear_line(server: Server, tmp_path: Path, capsys) -> None:
    assert cli("convokit", "--dir", tmp_path, "--url", server.url + "/missing.zip") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HTTP 404" in err and "movie-corpus.zip" in err and "by hand" in err
    assert names(tmp_path) == []


def test_unreachable_host_is_one_clear_line(tmp_path: Path, capsys) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli("convokit", "--dir", tmp_path, "--url", f"http://127.0.0.1:{port}/x.zip") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "failed" in err and "refused" in err.lower() and "by hand" in err
    assert names(tmp_path) == []


def test_truncated_zip_is_refused_and_not_kept(server: Server, tmp_path: Path, capsys) -> None:
    server.files["/t.zip"] = cornell_zip()[:-200]  # served whole, but the zip itself is cut short
    assert cli("convokit", "--dir", tmp_path, "--url", server.url + "/t.zip") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a complete zip" in err
    assert names(tmp_path) == []  # neither the zip nor its recorded hash is kept as a reference


def test_zip_members_escaping_the_folder_are_refused(tmp_path: Path) -> None:
    for evil in ("../escape.txt", "/abs/escape.txt", "a/../../escape.txt", "C:/escape.txt"):
        path = tmp_path / "evil.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("ok.txt", b"fine")
            zf.writestr(evil, b"gotcha")
        with pytest.raises(Exception, match="would land outside"):
            extract_zip(path, tmp_path / "out" / "target")
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
        assert not list(tmp_path.rglob("escape.txt"))


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("innocent")
        info.external_attr = 0o120777 << 16  # a symlink, pointing outside
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(Exception, match="would land outside"):
        extract_zip(path, tmp_path / "target")


def test_download_folder_that_is_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("not a folder")
    assert cli("cornell", "--dir", tmp_path / "file", "--url", "http://127.0.0.1:9/x.zip") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot use" in err


def test_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["download", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--dir", "--url", "--sha256", "--retries", "--timeout", "--no-progress"):
        assert flag in text


def test_script_form_runs_from_a_checkout(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "download_corpus.py"
    argv = [sys.executable, script, "convokit", "--dir", tmp_path, "--url", "http://127.0.0.1:9/x.zip", "--no-progress"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "by hand" in done.stderr


def test_unpacking_replaces_only_an_earlier_unpacking(tmp_path: Path) -> None:
    """A second unpacking replaces the first one whole; a folder of notes in its place is refused, untouched."""
    path = tmp_path / "corpus.zip"
    path.write_bytes(cornell_zip())
    target = tmp_path / "unpacked"
    extract_zip(path, target)
    (target / "cornell movie-dialogs corpus" / "movie_lines.txt").write_text("edited")
    extract_zip(path, target)  # its own earlier output: replaced, so the edit is gone
    lines = (target / "cornell movie-dialogs corpus" / "movie_lines.txt").read_bytes()
    assert lines.startswith(b"L1 +++$+++")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    with pytest.raises(ChatbotError, match="was not written by this command"):
        extract_zip(path, notes)
    assert [p.name for p in notes.iterdir()] == ["todo.txt"] and (notes / "todo.txt").read_text() == "keep me"
