"""Text normalization: the tutorial's `normalizeString`, and a Unicode mode for any language.

- "tutorial": exactly the tutorial's steps (lowercase, accents stripped to ASCII, `.!?` split off,
  everything but letters and `.!?` removed). English only: digits, apostrophes and every non-Latin
  script are deleted ("Aren't you?" -> "aren t you ?", "你好" -> "").
- "unicode": NFKC, lowercase where the script has case, keeps letters of every script, digits,
  apostrophes inside words, marks, symbols and emoji; each punctuation mark becomes its own token
  (except . , : inside a number such as 25.99, 1,000 or 10:30);
  CJK text is kept as written (unsegmented; use the SentencePiece tokenizer for it).

Both modes are idempotent: normalizing normalized text changes nothing.
"""

from __future__ import annotations

import re
import unicodedata

MODES = ("tutorial", "unicode")


def unicodeToAscii(s: str) -> str:
    """Strip accents: decompose (NFD) and drop the combining marks (the tutorial's helper)."""
    if s.isascii():  # not in the tutorial: a fast path (same result; ASCII has no marks) that makes prepare faster
        return s
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")


_NOT_LETTER = re.compile(r"[^a-zA-Z.!?]+")
# ASCII -> ASCII one-character tables take str.translate's fast path (far quicker than a regex).
_ASCII_NOT_LETTER = str.maketrans({chr(i): " " for i in range(128) if not (chr(i).isalpha() or chr(i) in ".!?")})


def normalizeString(s: str) -> str:
    """The tutorial's normalizeString, step for step (faster equivalents of its regexes, same output)."""
    s = unicodeToAscii(s.lower().strip())
    s = s.replace(".", " .").replace("!", " !").replace("?", " ?")  # re.sub(r"([.!?])", r" \1", s)
    s = s.translate(_ASCII_NOT_LETTER) if s.isascii() else _NOT_LETTER.sub(" ", s)  # re.sub(r"[^a-zA-Z.!?]+", " ", s)
    s = " ".join(s.split())  # re.sub(r"\s+", r" ", s).strip(): only ASCII letters, .!? and spaces are left
    # Not in the tutorial: a few characters (e.g. U+212A KELVIN SIGN) only become ASCII capitals after NFD,
    # so a second pass would lowercase them; lowering here keeps the mode idempotent. No-op on real text.
    return s.lower()


# Curly quotes, backtick, acute accent and prime all mean an apostrophe in dialogue text.
_APOSTROPHES = str.maketrans({c: "'" for c in "\u2018\u2019\u201b\u0060\u00b4\u2032\uff07"})
# ASCII text without symbols ($+<=>^|~), the common case, takes a fast path with the same result: one
# translate spaces out each punctuation mark and blanks control characters.
_ASCII_FAST = str.maketrans(
    {
        c: "'" if c == "`" else " " if unicodedata.category(c) == "Cc" else f" {c} "
        for c in map(chr, range(128))
        if c == "`"
        or (unicodedata.category(c) == "Cc" and not c.isspace())
        or (unicodedata.category(c)[0] == "P" and c not in "'_")
    }
)
_ASCII_SYMBOLS = frozenset(c for c in map(chr, range(128)) if unicodedata.category(c)[0] == "S" and c != "`")
_NON_WORD_RUN = re.compile(r"[^\w\s']+")
_LONE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")
_NUMBER_PUNCT = re.compile(r"(?<=\d) ([.,:]) (?=\d)")  # "25 . 99" as spaced out from "25.99": rejoin
_ZWJ = "\u200d"  # zero-width joiner: glues emoji sequences such as a family emoji together


def _space_out(match: re.Match[str]) -> str:
    """Make each punctuation mark its own token, keep symbol runs (emoji) whole, drop control characters."""
    out: list[str] = []
    in_symbols = False  # inside a run of symbols (with their joiners and variation selectors)
    for c in match.group():
        cat = unicodedata.category(c)[0]
        if cat == "M" or c == _ZWJ:  # combining marks and joiners stay attached to what precedes them
            out.append(c)
        elif cat in "CZ":  # controls, format characters, unassigned, odd separators
            out.append(" ")
            in_symbols = False
        elif cat == "P":
            out.append(f" {c} ")
            in_symbols = False
        else:  # symbols: emoji, currency, maths; a run of them stays one token
            out.append(c if in_symbols else f" {c}")
            in_symbols = True
    return "".join(out) + (" " if in_symbols else "")


def normalize_unicode(s: str) -> str:
    """NFKC, lowercase, punctuation split off (not inside numbers); keeps every script, digits, apostrophes, emoji."""
    if s.isascii():
        s = s.lower()
    else:
        # lower() can leave text that NFKC would change again (e.g. U+0130 -> "i" + combining dot); redo it.
        s = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", s).lower())
    if s.isascii() and _ASCII_SYMBOLS.isdisjoint(s):  # the fast path: same result as the regex below
        s = s.translate(_ASCII_FAST)
    else:
        s = _NON_WORD_RUN.sub(_space_out, s.translate(_APOSTROPHES))
    s = _NUMBER_PUNCT.sub(r"\1", s)  # keep 25.99, 1,000 and 10:30 whole (single spaces: they were adjacent)
    if "'" in s:
        s = _LONE_APOSTROPHE.sub(" ", s)
    return " ".join(s.split())  # str.split() and re's \s agree on what whitespace is


def normalize_string(s: str, mode: str = "tutorial") -> str:
    """Normalize one line of dialogue; `mode` is "tutorial" or "unicode"."""
    if mode == "tutorial":
        return normalizeString(s)
    if mode == "unicode":
        return normalize_unicode(s)
    raise ValueError(f"unknown normalize mode {mode!r} (choose from {', '.join(MODES)})")
