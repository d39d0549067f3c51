"""`chatbot prepare`: parse -> normalize -> filter -> split -> tokenize, into one dataset folder.

The folder (read back with `load_prepared`) holds `train.tsv`, `valid.tsv`, `test.tsv` (normalized
`query<TAB>response` per line, UTF-8), the tokenizer (`voc.json` or `spm.model`) and `stats.json`.
It is built in a temp folder beside `--out` and renamed into place at the end, so a failure never
leaves a partial dataset.

Statistics: `pairs_read`, `pairs_filtered`, `words_counted`, `keep_words`, `pairs_trimmed` are the
tutorial's own numbers, computed as the tutorial does over the whole corpus (word level), whatever
the tokenizer and split. The dataset itself then differs from the tutorial where it fixes a problem:
- pairs whose normalized side is empty are dropped (the tutorial kept them: "--" normalizes to "");
- the split is by conversation (the tutorial had no validation or test set);
- word level: the `Voc` is counted on the training split only, and only training pairs are trimmed
  to it (as the tutorial trims), so valid/test keep their rare words, which encode to UNK;
- SentencePiece: trained on the training split only; MAX_LENGTH counts pieces instead of words; no trim.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tqdm import tqdm

from chatbot.cli import add_dataclass_flags, float_in, int_in
from chatbot.corpus import FORMATS, Pair, extract_pairs, pair_key, read_corpus, split_by_conversation, tsv_pairs
from chatbot.errors import ChatbotError
from chatbot.files import check_out_dir, replace_dir
from chatbot.normalize import MODES, normalize_string
from chatbot.tokenizers import Tokenizer, Voc, load_tokenizer

SPLITS = ("train", "valid", "test")
MARKER = ".chatbot-prepare"  # lists what `chatbot prepare` wrote, so --force may replace that and nothing else
STATS_FILE = "stats.json"
TOKENIZERS = ("word", "sentencepiece")
MAX_LENGTH_RANGE = (2, 10_000)  # MAX_LENGTH of --max-length, stats.json and checkpoints


@dataclass
class PrepareConfig:
    """Options of `chatbot prepare`; defaults are the tutorial's where it has one."""

    fmt: str = "auto"
    normalize: str = "tutorial"
    tokenizer: str = "word"
    max_length: int = 10  # MAX_LENGTH: keep pairs whose sides are shorter (words, or pieces for SentencePiece)
    min_count: int = 3  # MIN_COUNT: the word vocabulary's trim threshold
    vocab_size: int = 8000  # SentencePiece pieces (not in the tutorial)
    sp_model_type: str = "bpe"  # trains several times faster than unigram on 2 cores (see README benchmark)
    dedupe: bool = False  # drop repeated normalized pairs (not in the tutorial)
    valid_fraction: float = 0.05  # the tutorial has no held-out data
    test_fraction: float = 0.05
    seed: int = 0
    # Not in the tutorial, all off by default (see the README's quality section for what they do):
    max_entropy: float = 0.0  # drop training pairs whose reply's entropy (bits) is above this; 0 = off
    hold_out: str = ""  # JSON of pair keys that must stay in valid/test (e.g. an earlier model's held-out pairs)
    exclude_queries: str = ""  # files of prompts (comma-separated): training pairs with such a query are dropped
    swap: bool = False  # reply -> query pairs, for the backward model p(S|T) of MMI reranking


HELP = {
    "fmt": "input format; auto detects it from the path",
    "normalize": "tutorial: the tutorial's English-only ASCII normalization; unicode: NFKC, any script, digits kept",
    "tokenizer": "word: the tutorial's Voc (+UNK); sentencepiece: subwords trained on the training split",
    "max_length": "MAX_LENGTH: keep pairs whose sides have fewer words (pieces for sentencepiece) than this",
    "min_count": "MIN_COUNT: word vocabulary keeps words seen at least this often",
    "vocab_size": "sentencepiece vocabulary size (a small corpus may get fewer pieces; never below its minimum)",
    "sp_model_type": "sentencepiece algorithm",
    "dedupe": "drop repeated (query, response) pairs after normalization",
    "valid_fraction": "fraction of conversations held out for validation",
    "test_fraction": "fraction of conversations held out for testing",
    "seed": "seed of the conversation hash that makes the split",
    "max_entropy": "generic-reply filter (Csaky et al. 2019): drop training pairs whose reply follows so many "
    "different queries that its entropy is above this many bits (0 = keep all)",
    "hold_out": "JSON file of pair keys (scripts/make_hold_out.py) whose conversations go to valid/test",
    "exclude_queries": "files of prompts (comma-separated; one per line, text before a tab) kept out of training: "
    "pairs with such a query are dropped",
    "swap": "write reply<TAB>query pairs (after every filter), for a backward model that scores p(query | reply)",
}
CHOICES = {"fmt": ("auto", *FORMATS), "normalize": MODES, "tokenizer": TOKENIZERS, "sp_model_type": ("unigram", "bpe")}


FLAG_TYPES = {
    "fmt": str,
    "normalize": str,
    "tokenizer": str,
    "sp_model_type": str,
    "hold_out": str,
    "exclude_queries": str,
    "max_length": int_in(*MAX_LENGTH_RANGE),
    "min_count": int_in(1),
    "vocab_size": int_in(1, 10_000_000),
    "valid_fraction": float_in(0, 1, high_open=True),
    "test_fraction": float_in(0, 1, high_open=True),
    "seed": int_in(0),
    "max_entropy": float_in(0),
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `chatbot prepare`, generated from `PrepareConfig`."""
    parser.add_argument("input", help="a folder with the Cornell or ConvoKit files, utterances.jsonl, or a pairs file")
    parser.add_argument("--out", required=True, help="dataset folder to write (must not exist unless --force)")
    parser.add_argument("--force", action="store_true", help="replace --out if it already exists")
    add_dataclass_flags(parser, PrepareConfig, HELP, FLAG_TYPES, choices=CHOICES, flags={"fmt": "--format"})


def run(args: argparse.Namespace) -> int:
    """Entry point of `chatbot prepare`."""
    config = PrepareConfig(**{f.name: getattr(args, f.name) for f in fields(PrepareConfig)})
    stats = prepare(args.input, args.out, config, force=args.force, log=print)
    print(f"wrote {args.out} in {stats['seconds']:.1f} s")
    return 0


# --- the tutorial's statistics ----------------------------------------------------------------------


def tutorial_statistics(pairs: list[tuple[str, str]], max_length: int, min_count: int) -> dict[str, int]:
    """The tutorial's filterPairs -> Voc -> trimRareWords on normalized pairs, and the counts it prints."""
    # filterPair: both sides shorter than MAX_LENGTH words, split on single spaces as the tutorial does
    filtered = [p for p in pairs if len(p[0].split(" ")) < max_length and len(p[1].split(" ")) < max_length]
    voc = Voc.from_sentences(s for p in filtered for s in p)
    words_before_trim = len(voc.word2index)
    keep = set(voc.trim(min_count))
    trimmed = [p for p in filtered if all(w in keep for s in p for w in s.split(" "))]
    return {
        "pairs_read": len(pairs),
        "pairs_filtered": len(filtered),
        "words_counted": words_before_trim + 3,  # the tutorial's num_words: PAD, SOS, EOS and the words (no UNK)
        "keep_words": len(keep),
        "words_before_trim": words_before_trim,
        "pairs_trimmed": len(trimmed),
    }


def tutorial_lines(s: dict[str, Any]) -> list[str]:
    """The lines the tutorial prints for these statistics."""
    return [
        f"Read {s['pairs_read']} sentence pairs",
        f"Trimmed to {s['pairs_filtered']} sentence pairs",
        f"Counted words: {s['words_counted']}",
        f"keep_words {s['keep_words']} / {s['words_before_trim']} = {s['keep_words'] / max(s['words_before_trim'], 1):.4f}",
        f"Trimmed from {s['pairs_filtered']} pairs to {s['pairs_trimmed']}, "
        f"{s['pairs_trimmed'] / max(s['pairs_filtered'], 1):.4f} of total",
    ]


# --- the pipeline -----------------------------------------------------------------------------------


def _normalize_pairs(pairs: list[Pair], mode: str) -> list[Pair]:
    """Normalize both sides of every pair (cached: dialogue repeats many short lines)."""
    cache: dict[str, str] = {}

    def norm(s: str) -> str:
        out = cache.get(s)
        if out is None:
            out = cache[s] = normalize_string(s, mode)
        return out

    return [
        Pair(norm(p.query), norm(p.response), p.conversation)
        for p in tqdm(pairs, "normalize", disable=None, leave=False)
    ]


def _build_tokenizer(train: list[Pair], config: PrepareConfig) -> Tokenizer:
    """Word Voc (counted on train, trimmed with MIN_COUNT) or SentencePiece (trained on train)."""
    if config.tokenizer == "word":
        voc = Voc.from_sentences(s for p in train for s in (p.query, p.response))
        voc.trim(config.min_count)
        return voc
    from chatbot.tokenizers import SentencePieceTokenizer

    try:
        sp = SentencePieceTokenizer.train(
            (s for p in train for s in (p.query, p.response)), config.vocab_size, config.sp_model_type
        )
    except RuntimeError as err:  # e.g. a corpus too small for SentencePiece's minimum vocabulary
        raise ChatbotError(f"SentencePiece training failed: {str(err).splitlines()[0]}") from err
    return sp


def _short(pair: Pair, max_length: int) -> bool:
    """Both sides have fewer than `max_length` words (the tutorial's filterPair)."""
    return len(pair.query.split()) < max_length and len(pair.response.split()) < max_length


def _lengths(tokenizer: Tokenizer, texts: list[str]) -> list[int]:
    """Token count of each text (SentencePiece encodes a batch in C++ threads)."""
    sp = getattr(tokenizer, "sp", None)
    if sp is not None:
        return [len(ids) for ids in sp.encode(texts, num_threads=2)]
    return [len(t.split()) for t in texts]


def prepare(
    input_path: str | Path, out: str | Path, config: PrepareConfig, force: bool = False, log=lambda *a, **k: None
) -> dict[str, Any]:
    """Run the whole pipeline and write the dataset folder `out`; returns its statistics."""
    start = time.perf_counter()
    out = Path(out)
    if config.normalize not in MODES or config.tokenizer not in TOKENIZERS:
        raise ChatbotError(f"normalize must be one of {MODES} and tokenizer one of {TOKENIZERS}")
    if out.exists() and not force:
        raise ChatbotError(f"{out} already exists (use --force to replace it)")
    if force:  # before any work: --force replaces only an earlier dataset folder, never the input or notes
        check_out_dir(out, MARKER, [input_path])
    if config.max_length < 2 or not (0 <= config.valid_fraction < 1 and 0 <= config.test_fraction < 1):
        raise ChatbotError("--max-length must be at least 2 and the fractions between 0 and 1")

    corpus = read_corpus(input_path, config.fmt)
    if corpus.malformed:
        log(f"skipped {corpus.malformed} malformed line(s), e.g. {corpus.malformed_examples[0]}", file=sys.stderr)
    raw = extract_pairs(corpus)
    if not raw:
        raise ChatbotError(f"no pairs in {corpus.source} ({corpus.fmt} format): the corpus is empty or unreadable")
    pairs = _normalize_pairs(raw, config.normalize)

    # The tutorial's statistics, over the whole corpus.
    stats: dict[str, Any] = tutorial_statistics(
        [(p.query, p.response) for p in pairs], config.max_length, config.min_count
    )
    for line in tutorial_lines(stats):
        log(line)

    # The dataset: drop empty sides (and duplicates), split by conversation, tokenize, filter by length.
    nonempty = [p for p in pairs if p.query and p.response]
    stats["empty_after_normalize"] = len(pairs) - len(nonempty)
    if config.dedupe:
        deduped = _dedupe(nonempty)
        stats["duplicates_removed"] = len(nonempty) - len(deduped)
        nonempty = deduped
    if config.tokenizer == "word":  # MAX_LENGTH in words before the Voc is counted, as the tutorial
        nonempty = [p for p in nonempty if _short(p, config.max_length)]
    hold_out = read_hold_out(config.hold_out) if config.hold_out else None
    train, valid, test = split_by_conversation(
        nonempty, config.valid_fraction, config.test_fraction, config.seed, hold_out
    )
    if hold_out:
        stats["hold_out_pairs_found"] = sum(pair_key(p.query, p.response) in hold_out for p in valid + test)
        log(f"hold-out: {stats['hold_out_pairs_found']} of {len(hold_out)} listed pairs found, kept in valid/test")
    if config.exclude_queries:
        train = _exclude_queries(train, config, stats, log)
    if config.max_entropy > 0:
        train = entropy_filter(train, config.max_entropy, stats, log)
    if not train:
        raise ChatbotError(
            f"every pair of {corpus.source} was filtered out ({stats['empty_after_normalize']} of {len(pairs)} "
            f"empty after {config.normalize} normalization, max length {config.max_length})"
        )
    tokenizer = _build_tokenizer(train, config)
    splits = _tokenizer_filter({"train": train, "valid": valid, "test": test}, tokenizer, config)
    if not splits["train"]:
        raise ChatbotError(
            f"every pair of {corpus.source} was filtered out (max length {config.max_length}, min count {config.min_count})"
        )

    if config.swap:  # the same pairs, the same split and the same tokenizer, each pair turned around
        splits = {name: [Pair(p.response, p.query, p.conversation) for p in split] for name, split in splits.items()}
    stats.update(_dataset_stats(corpus, config, tokenizer, splits, input_path))
    stats["seconds"] = round(time.perf_counter() - start, 2)
    _write(out, splits, tokenizer, stats, input_path)
    log(
        f"dataset: train {len(splits['train'])} / valid {len(splits['valid'])} / test {len(splits['test'])} pairs, "
        f"{config.tokenizer} tokenizer of {len(tokenizer)} ids"
    )
    return stats


def _dedupe(pairs: list[Pair]) -> list[Pair]:
    """The first occurrence of each (query, response); run before the split, so no duplicate straddles two sets."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for p in pairs:
        if (p.query, p.response) not in seen:
            seen.add((p.query, p.response))
            kept.append(p)
    return kept


def _tokenizer_filter(
    splits: dict[str, list[Pair]], tokenizer: Tokenizer, config: PrepareConfig
) -> dict[str, list[Pair]]:
    """Word: the tutorial's trimRareWords on the training pairs only (valid/test keep their rare words).
    SentencePiece: MAX_LENGTH in pieces, on every split."""
    if config.tokenizer == "word":
        known = tokenizer.word2index
        train = [p for p in splits["train"] if all(w in known for s in (p.query, p.response) for w in s.split())]
        return {**splits, "train": train}
    kept = {}
    for name, split in splits.items():
        # Every word is at least one piece (pieces never cross a space), so pairs already too long in
        # words are dropped before the (slower) encoding.
        split = [p for p in split if _short(p, config.max_length)]
        lengths = _lengths(tokenizer, [s for p in split for s in (p.query, p.response)])
        kept[name] = [
            p
            for p, lq, lr in zip(split, lengths[::2], lengths[1::2], strict=True)
            if lq < config.max_length and lr < config.max_length
        ]
    return kept


def read_hold_out(path: str | Path) -> dict[str, str]:
    """A hold-out file -> {pair key: "valid" or "test"}."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        keys = {k: split for split in ("valid", "test") for k in data[split]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ChatbotError(f"--hold-out {path}: not a hold-out file ({err.__class__.__name__}: {err})") from err
    return keys


def _exclude_queries(train: list[Pair], config: PrepareConfig, stats: dict[str, Any], log) -> list[Pair]:
    """Drop training pairs whose query is one of the prompts in `config.exclude_queries` (normalized)."""
    lines = []
    for path in config.exclude_queries.split(","):
        try:
            lines += Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ChatbotError(f"--exclude-queries {path}: cannot read it ({err})") from err
    prompts = {normalize_string(line.split("\t")[0], config.normalize) for line in lines if line.strip()}
    kept = [p for p in train if p.query not in prompts]
    stats["excluded_query_pairs"] = len(train) - len(kept)
    log(
        f"exclude-queries: dropped {len(train) - len(kept)} training pairs whose query is one of {len(prompts)} prompts"
    )
    return kept


def reply_entropy(pairs: list[Pair]) -> dict[str, float]:
    """Entropy in bits of the queries each reply follows: H(Q | R = r) = -sum_q p(q|r) log2 p(q|r).

    Csaky et al. (2019)'s "target" entropy with identity clustering: a reply that follows one query
    has entropy 0; "i don t know ." follows hundreds of different queries and scores about 9 bits.
    """
    counts: dict[str, Counter[str]] = {}
    for p in pairs:
        counts.setdefault(p.response, Counter())[p.query] += 1
    entropy = {}
    for response, queries in counts.items():
        n = sum(queries.values())
        entropy[response] = -sum(c / n * math.log2(c / n) for c in queries.values())
    return entropy


def entropy_filter(train: list[Pair], max_entropy: float, stats: dict[str, Any], log) -> list[Pair]:
    """Drop training pairs whose reply's entropy is above `max_entropy` bits; report what went."""
    entropy = reply_entropy(train)
    kept = [p for p in train if entropy[p.response] <= max_entropy]
    removed = Counter(p.response for p in train if entropy[p.response] > max_entropy)
    stats["entropy_removed"] = len(train) - len(kept)
    stats["entropy_removed_replies"] = len(removed)
    stats["entropy_removed_top"] = removed.most_common(20)
    top = ", ".join(f"{r!r} ({n})" for r, n in removed.most_common(8))
    log(
        f"generic-reply filter: removed {len(train) - len(kept)} of {len(train)} training pairs "
        f"({(len(train) - len(kept)) / max(len(train), 1):.1%}), {len(removed)} distinct replies with entropy "
        f"> {max_entropy} bits; most removed: {top}"
    )
    return kept


def _unk_rate(tokenizer: Tokenizer, split: list[Pair]) -> float:
    """Fraction of tokens that are UNK over both sides of a split."""
    ids = [i for p in split for s in (p.query, p.response) for i in tokenizer.encode(s)]
    return round(sum(i == tokenizer.unk_id for i in ids) / max(len(ids), 1), 6)


def _dataset_stats(
    corpus, config: PrepareConfig, tokenizer: Tokenizer, splits: dict[str, list[Pair]], input_path
) -> dict[str, Any]:
    """Everything `stats.json` records besides the tutorial's numbers."""
    return {
        "input": str(input_path),
        "format": corpus.fmt,
        "normalize": config.normalize,
        "tokenizer": config.tokenizer,
        "max_length": config.max_length,
        "config": asdict(config),
        "malformed_lines": corpus.malformed,
        "missing_line_ids": corpus.missing_line_ids,
        "conversations": len({p.conversation for s in splits.values() for p in s}),
        "tokenizer_size": len(tokenizer),
        **{name: len(split) for name, split in splits.items()},
        **{f"unk_rate_{name}": _unk_rate(tokenizer, splits[name]) for name in ("valid", "test")},
    }


def _write(out: Path, splits: dict[str, list[Pair]], tokenizer: Tokenizer, stats: dict[str, Any], input_path) -> None:
    """Build the folder beside `out` and swap it in (`chatbot.files.replace_dir`): an existing `out` is
    replaced only if an earlier `chatbot prepare` wrote it, and never when it holds the input."""

    def build(tmp: Path) -> None:
        for name, split in splits.items():
            with open(tmp / f"{name}.tsv", "w", encoding="utf-8", newline="\n") as f:
                f.writelines(f"{p.query}\t{p.response}\n" for p in split)
        tokenizer.save(tmp)
        (tmp / STATS_FILE).write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    try:
        replace_dir(out, build, MARKER, [input_path])
    except OSError as err:
        raise ChatbotError(f"cannot write the dataset folder {out}: {err.strerror}") from err


# --- reading a prepared folder --------------------------------------------------------------------


@dataclass
class PreparedDataset:
    """A prepared-dataset folder in memory: normalized pairs per split, the tokenizer and the statistics."""

    train: list[tuple[str, str]]
    valid: list[tuple[str, str]]
    test: list[tuple[str, str]]
    tokenizer: Tokenizer
    stats: dict[str, Any]

    @property
    def normalize(self) -> str:
        """The normalization mode the text was prepared with (apply the same one to user input)."""
        return self.stats["normalize"]

    @property
    def max_length(self) -> int:
        """MAX_LENGTH the pairs were filtered with."""
        return int(self.stats["max_length"])


def check_text_fields(state: dict[str, Any]) -> str | None:
    """The first invalid `normalize` or `max_length` of a stats.json or a checkpoint, as "field (value): the rule"."""
    if "normalize" in state and state["normalize"] not in MODES:
        return f"normalize ({state['normalize']!r}): must be one of {', '.join(MODES)}"
    if "max_length" in state:
        value, (low, high) = state["max_length"], MAX_LENGTH_RANGE
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"max_length ({value!r}): must be an integer in {low}..{high}"
    return None


def _check_stats(stats: Any) -> str | None:
    """What is wrong with a loaded stats.json (the fields training and chatting rely on), or None."""
    if not isinstance(stats, dict):
        return f"is a JSON {type(stats).__name__}, not an object of the dataset's settings"
    missing = [name for name in ("normalize", "max_length") if name not in stats]
    if missing:
        return f"has no {missing[0]} field"
    problem = check_text_fields(stats)
    if problem is None and stats.get("tokenizer", TOKENIZERS[0]) not in TOKENIZERS:
        problem = f"tokenizer ({stats['tokenizer']!r}): must be one of {', '.join(TOKENIZERS)}"
    return None if problem is None else f"has an invalid {problem}"


def _check_tokenizer(stats: dict[str, Any], tokenizer: Tokenizer) -> str | None:
    """Whether the loaded tokenizer is the one stats.json describes (a folder mixed from two runs is not)."""
    if stats.get("tokenizer", tokenizer.kind) != tokenizer.kind:
        return f"says tokenizer {stats['tokenizer']!r}, but the folder holds a {tokenizer.kind} tokenizer"
    size = stats.get("tokenizer_size", len(tokenizer))
    if size != len(tokenizer):
        return f"records tokenizer_size {size!r}, but the folder's tokenizer has {len(tokenizer)} tokens"
    return None


def load_prepared(path: str | Path) -> PreparedDataset:
    """Read a folder written by `chatbot prepare`; any problem becomes a one-line `ChatbotError`."""
    path = Path(path)
    if not path.is_dir():
        raise ChatbotError(f"{path} is not a prepared dataset folder (run `chatbot prepare INPUT --out {path}`)")
    missing = [n for n in (STATS_FILE, *(f"{s}.tsv" for s in SPLITS)) if not (path / n).is_file()]
    if missing:
        raise ChatbotError(f"{path} is not a prepared dataset folder: missing {', '.join(missing)}")
    try:
        stats = json.loads((path / STATS_FILE).read_text(encoding="utf-8"))
        problem = _check_stats(stats)  # before the tokenizer and splits are read, and before any training
        if problem is None:
            tokenizer = load_tokenizer(path)
            problem = _check_tokenizer(stats, tokenizer)
        if problem:
            raise ChatbotError(f"{path / STATS_FILE} {problem}; run `chatbot prepare` again to rebuild {path}")
        splits = {s: [pair for _, pair in tsv_pairs(path / f"{s}.tsv")] for s in SPLITS}
    except ChatbotError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise ChatbotError(f"{path} is not a valid prepared dataset: {err.__class__.__name__}: {err}") from err
    return PreparedDataset(splits["train"], splits["valid"], splits["test"], tokenizer, stats)
