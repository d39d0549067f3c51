"""Read a dialogue corpus into conversations and query/response pairs, and split it by conversation.

Three inputs, detected from the path (or named with `fmt`):
- "cornell": the original Cornell Movie-Dialogs files, `movie_lines.txt` + `movie_conversations.txt`
  (ISO-8859-1, fields separated by " +++$+++ ").
- "convokit": ConvoKit's `utterances.jsonl` (one JSON object per utterance, each conversation's lines
  in reverse order, as the tutorial's ConvoKit version notes).
- "pairs": `query<TAB>response` per line, UTF-8, optionally gzipped (the tutorial's
  `formatted_movie_lines.txt`, or a user's own corpus in any language).

Malformed lines are skipped and counted (`ParsedCorpus.malformed`, with the first few as "file:line: why"),
never fatal; a conversation that names a missing line id is cut at the gap, so no pair ever joins two
lines that were not adjacent (the tutorial raised a KeyError there).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from chatbot.errors import ChatbotError

FORMATS = ("cornell", "convokit", "pairs")
FIELD_SEP = " +++$+++ "
LINES_FILE = "movie_lines.txt"
CONVERSATIONS_FILE = "movie_conversations.txt"
UTTERANCES_FILE = "utterances.jsonl"
_LINE_ID = re.compile(r"'([^']*)'")
_SEARCH_DEPTH = 3  # a downloaded zip unpacks into a sub-folder or two; look that far down


@dataclass
class Pair:
    """One query/response pair (raw text) and the conversation it came from."""

    query: str
    response: str
    conversation: str


@dataclass
class ParsedCorpus:
    """Conversations as lists of line texts in spoken order (None where a line id was missing)."""

    fmt: str
    source: Path
    conversations: dict[str, list[str | None]] = field(default_factory=dict)
    pairs: list[Pair] | None = None  # set directly by the pairs format, which has no conversations
    malformed: int = 0
    malformed_examples: list[str] = field(default_factory=list)
    missing_line_ids: int = 0

    def skip(self, path: Path, lineno: int, why: str) -> None:
        """Count a malformed line and remember the first few for the report."""
        self.malformed += 1
        if len(self.malformed_examples) < 5:
            self.malformed_examples.append(f"{path}:{lineno}: {why}")


# --- finding and reading the files --------------------------------------------------------------


def _find(root: Path, name: str) -> Path | None:
    """`root/name`, or the shallowest `name` up to `_SEARCH_DEPTH` folders below `root`."""
    for depth in range(_SEARCH_DEPTH + 1):
        hits = sorted(root.glob("/".join(["*"] * depth + [name])))
        if hits:
            return hits[0]
    return None


def detect_format(path: str | Path) -> tuple[str, Path]:
    """Which input `path` is, and the file or folder to read: ("cornell", folder), ("convokit", file), ("pairs", file)."""
    path = Path(path)
    if not path.exists():
        raise ChatbotError(f"{path} does not exist")
    if path.is_dir():
        lines = _find(path, LINES_FILE)
        if lines is not None and (lines.parent / CONVERSATIONS_FILE).is_file():
            return "cornell", lines.parent
        utterances = _find(path, UTTERANCES_FILE)
        if utterances is not None:
            return "convokit", utterances
        raise ChatbotError(
            f"{path} is a folder without a corpus: expected {LINES_FILE} + {CONVERSATIONS_FILE} (Cornell) "
            f"or {UTTERANCES_FILE} (ConvoKit); for a pairs file give the file itself"
        )
    if path.name in (LINES_FILE, CONVERSATIONS_FILE):
        return "cornell", path.parent
    if path.name.endswith(".jsonl"):
        return "convokit", path
    if path.suffix == ".zip":
        raise ChatbotError(f"{path} is a zip: unpack it first (`chatbot download` does) and give the folder")
    return "pairs", path


def _read_text(path: Path, encoding: str) -> str:
    """The whole file as text (gunzipped if it ends in .gz); a clear error if it cannot be read or decoded."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ChatbotError(f"cannot read {path}: {err}") from err
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        lineno = data.count(b"\n", 0, err.start) + 1
        raise ChatbotError(f"{path}:{lineno}: not {encoding} text ({err.reason}); is this the right file?") from err


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for each line; only "\\n" ends a line (the text may hold stray "\\r")."""
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if line.strip():
            yield lineno, line


def tsv_pairs(path: str | Path, strict: bool = True) -> Iterator[tuple[int, tuple[str, str] | None]]:
    """(line number, (query, response)) for each non-blank line of a `query<TAB>response` file (UTF-8,
    .gz allowed): the one reader of pairs files, raw corpora and prepared splits alike. A line without
    exactly one tab raises a one-line `ChatbotError`, or with `strict=False` comes as (line number, None)."""
    path = Path(path)
    for lineno, line in _lines(_read_text(path, "utf-8")):
        values = line.split("\t")
        if len(values) == 2:
            yield lineno, (values[0], values[1])
        elif strict:
            raise ChatbotError(
                f"{path}:{lineno}: expected query<TAB>response, found {len(values)} tab-separated field(s)"
            )
        else:
            yield lineno, None


# --- the three parsers ----------------------------------------------------------------------------


def read_cornell(folder: str | Path) -> ParsedCorpus:
    """Parse the original `movie_lines.txt` and `movie_conversations.txt` (ISO-8859-1)."""
    folder = Path(folder)
    corpus = ParsedCorpus("cornell", folder)
    lines_path, convs_path = folder / LINES_FILE, folder / CONVERSATIONS_FILE
    for p in (lines_path, convs_path):
        if not p.is_file():
            raise ChatbotError(f"{p} not found (the Cornell format needs {LINES_FILE} and {CONVERSATIONS_FILE})")
    texts: dict[str, str] = {}
    for lineno, line in _lines(_read_text(lines_path, "iso-8859-1")):
        # lineID, characterID, movieID, character name, text; maxsplit keeps a text that holds the separator
        values = line.split(FIELD_SEP, 4)
        if len(values) != 5:
            corpus.skip(lines_path, lineno, f"expected 5 fields separated by {FIELD_SEP.strip()!r}")
            continue
        texts[values[0].strip()] = values[4]
    for lineno, line in _lines(_read_text(convs_path, "iso-8859-1")):
        # character 1, character 2, movieID, "['L194', 'L195', ...]"
        values = line.split(FIELD_SEP)
        ids = _LINE_ID.findall(values[-1]) if len(values) == 4 else []
        if not ids:
            corpus.skip(convs_path, lineno, "expected 4 fields, the last a list of line ids")
            continue
        conv = [texts.get(i) for i in ids]
        corpus.missing_line_ids += conv.count(None)
        corpus.conversations[f"{values[2].strip()}:{lineno}"] = conv
    return corpus


def read_convokit(path: str | Path) -> ParsedCorpus:
    """Parse ConvoKit's `utterances.jsonl`; each conversation's utterances are listed newest first."""
    path = Path(path)
    if path.is_dir():
        path = path / UTTERANCES_FILE
    if not path.is_file():
        raise ChatbotError(f"{path} not found")
    corpus = ParsedCorpus("convokit", path)
    for lineno, line in _lines(_read_text(path, "utf-8")):
        try:
            obj = json.loads(line)
            conv_id, text = str(obj["conversation_id"]), obj["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
        except (ValueError, KeyError, TypeError) as err:
            corpus.skip(path, lineno, f"not an utterance object ({err.__class__.__name__}: {err})")
            continue
        corpus.conversations.setdefault(conv_id, []).append(text)
    for lines in corpus.conversations.values():
        lines.reverse()  # the file lists each conversation last line first (the tutorial inserts at 0)
    return corpus


def read_pairs(path: str | Path) -> ParsedCorpus:
    """Parse a `query<TAB>response` file (UTF-8, .gz allowed).

    A pairs file has no conversation ids, so consecutive rows where one row's response is the next
    row's query (A>B, B>C: adjacent pairs of one dialogue) are grouped into one conversation, which
    keeps them in the same split.
    """
    path = Path(path)
    if not path.is_file():
        raise ChatbotError(f"{path} is not a file")
    corpus = ParsedCorpus("pairs", path, pairs=[])
    conv, previous_response = 0, None
    for lineno, pair in tsv_pairs(path, strict=False):
        if pair is None:
            corpus.skip(path, lineno, "expected query<TAB>response, not one tab")
            previous_response = None
            continue
        query, response = pair
        if query != previous_response:
            conv += 1
        corpus.pairs.append(Pair(query, response, f"row{conv}"))
        previous_response = response
    return corpus


def read_corpus(path: str | Path, fmt: str = "auto") -> ParsedCorpus:
    """Detect (or take) the format of `path` and parse it."""
    if fmt == "auto":
        fmt, path = detect_format(path)
    elif fmt not in FORMATS:
        raise ChatbotError(f"unknown format {fmt!r} (choose from auto, {', '.join(FORMATS)})")
    elif not Path(path).exists():
        raise ChatbotError(f"{path} does not exist")
    elif fmt == "cornell" and Path(path).is_file():
        if Path(path).name not in (LINES_FILE, CONVERSATIONS_FILE):
            raise ChatbotError(
                f"{path} is not a Cornell file: give the folder with {LINES_FILE} and {CONVERSATIONS_FILE}"
            )
        path = Path(path).parent
    reader = {"cornell": read_cornell, "convokit": read_convokit, "pairs": read_pairs}[fmt]
    return reader(path)


# --- pairs and splits ------------------------------------------------------------------------------


def extract_pairs(corpus: ParsedCorpus) -> list[Pair]:
    """Every adjacent pair of lines within a conversation; pairs with an empty side dropped (as the tutorial)."""
    if corpus.pairs is not None:
        return [p for p in corpus.pairs if p.query.strip() and p.response.strip()]
    pairs = []
    for conv_id, lines in corpus.conversations.items():
        for query, response in zip(lines, lines[1:], strict=False):
            if query is None or response is None:  # a missing line id: these two were not adjacent
                continue
            query, response = query.strip(), response.strip()
            if query and response:
                pairs.append(Pair(query, response, conv_id))
    return pairs


def split_of(conversation: str, valid_fraction: float, test_fraction: float, seed: int) -> str:
    """ "train", "valid" or "test" for one conversation id: a function of the id and the seed alone.

    sha256("seed:id") read as a number in [0, 1): below test_fraction is test, below
    test_fraction + valid_fraction is valid. So every dataset prepared from one corpus (any max
    length, tokenizer or filter) puts a conversation in the same split, and no model is scored on
    pairs that another preparation of the same corpus trained it on.
    """
    digest = hashlib.sha256(f"{seed}:{conversation}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    return "valid" if u < test_fraction + valid_fraction else "train"


def pair_key(query: str, response: str) -> str:
    """A short fingerprint of one normalized pair (for hold-out lists that must not hold the text itself)."""
    return hashlib.sha256(f"{query}\t{response}".encode()).hexdigest()[:16]


def split_by_conversation(
    pairs: list[Pair],
    valid_fraction: float,
    test_fraction: float,
    seed: int,
    hold_out: dict[str, str] | None = None,
) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Deterministic train/valid/test split that never puts one conversation in two sets.

    `hold_out` maps pair keys (`pair_key`) to "valid" or "test": a conversation holding such a pair
    goes to that split ("test" wins), whatever its hash says.
    """
    which: dict[str, str] = {}
    for p in pairs:
        forced = hold_out.get(pair_key(p.query, p.response)) if hold_out else None
        if forced is not None and which.get(p.conversation) != "test":
            which[p.conversation] = forced
    splits: dict[str, list[Pair]] = {"train": [], "valid": [], "test": []}
    for p in pairs:
        if p.conversation not in which:
            which[p.conversation] = split_of(p.conversation, valid_fraction, test_fraction, seed)
        splits[which[p.conversation]].append(p)
    return splits["train"], splits["valid"], splits["test"]
