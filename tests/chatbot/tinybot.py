"""Tiny models for the decoding tests: random ones, and one trained for a moment on a handful of pairs."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from chatbot.checkpoint import save_checkpoint
from chatbot.model.network import ModelConfig, Seq2Seq
from chatbot.tokenizers import EOS_token, PAD_token, SOS_token, Voc

REPO_ROOT = Path(__file__).resolve().parents[2]
PAIRS = [
    ("hello .", "hi ."),
    ("how are you ?", "i m fine ."),
    ("what is your name ?", "i don t know ."),
    ("where are you going ?", "home ."),
    ("are you ok ?", "yes i am ."),
    ("good night .", "good night ."),
    ("who are you ?", "a friend ."),
    ("do you like it ?", "no i don t ."),
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine: a second intra-op thread only adds waiting (10x slower here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_voc() -> Voc:
    return Voc.from_sentences([s for pair in PAIRS for s in pair])


def random_model(vocab_size: int, seed: int = 0, hidden: int = 16, attn: str = "dot", layers: int = 2) -> Seq2Seq:
    """A random network; its replies rarely reach EOS, which is what max-length tests need."""
    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=vocab_size, hidden_size=hidden, encoder_n_layers=layers, decoder_n_layers=layers, attn_model=attn
    )
    return Seq2Seq(cfg).eval()


def batch(voc: Voc, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs -> input_seq (Ts, B), lengths (B,), decoder_input (Tt, B), target (Tt, B), PAD 0."""
    src = [voc.encode(q) + [EOS_token] for q, _ in pairs]
    tgt = [voc.encode(r) + [EOS_token] for _, r in pairs]
    Ts, Tt = max(map(len, src)), max(map(len, tgt))
    input_seq = torch.full((Ts, len(pairs)), PAD_token)
    target = torch.full((Tt, len(pairs)), PAD_token)
    for b, (s, t) in enumerate(zip(src, tgt, strict=True)):
        input_seq[: len(s), b] = torch.tensor(s)
        target[: len(t), b] = torch.tensor(t)
    decoder_input = torch.cat((torch.full((1, len(pairs)), SOS_token), target[:-1]))
    return input_seq, torch.tensor([len(s) for s in src]), decoder_input, target


@functools.cache
def trained_model(steps: int = 60, seed: int = 0) -> tuple[Seq2Seq, Voc]:
    """A tiny model that has learnt PAIRS (a few Adam steps); it stops at EOS like a real one."""
    voc = make_voc()
    model = random_model(len(voc), seed=seed, hidden=32)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    input_seq, lengths, decoder_input, target = batch(voc, PAIRS)
    for _ in range(steps):
        logits = model(input_seq, lengths, decoder_input)  # (Tt, B, V)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD_token)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), voc


def write_checkpoint(path: Path, model: Seq2Seq, voc: Voc, normalize: str = "tutorial", max_length: int = 10) -> Path:
    save_checkpoint(
        path,
        {
            "model_config": model.config.to_dict(),
            "model": model.state_dict(),
            "tokenizer": voc.state_dict(),
            "normalize": normalize,
            "max_length": max_length,
        },
    )
    return path


def sequence_log_prob(model: Seq2Seq, src_ids: list[int], tokens: list[int]) -> float:
    """log p(tokens | source) by the teacher-forced fast path: an independent check on a decoder's sums."""
    input_seq = torch.tensor(src_ids).unsqueeze(1)
    decoder_input = torch.tensor([SOS_token] + tokens[:-1]).unsqueeze(1)
    with torch.no_grad():
        logits = model(input_seq, torch.tensor([len(src_ids)]), decoder_input)  # (Tt, 1, V)
    log_probs = F.log_softmax(logits[:, 0].double(), dim=-1)
    return float(log_probs.gather(1, torch.tensor(tokens).unsqueeze(1)).sum())


def greedy_search(
    model, src_ids: list[int], max_length: int, min_length: int = 0, no_repeat_ngram_size: int = 0
) -> list[int]:
    """The likeliest next id at every step, until EOS or `max_length` ids (`decode.generate_tokens`, greedy)."""
    from chatbot.decode import DecodeSettings, generate_tokens

    settings = DecodeSettings("greedy", min_length=min_length, no_repeat_ngram_size=no_repeat_ngram_size)
    return list(generate_tokens(model, src_ids, max_length, settings))


def sample(model, src_ids: list[int], max_length: int, settings) -> list[int]:
    """One reply drawn by `decode.generate_tokens` with `settings` (strategy sample)."""
    from chatbot.decode import generate_tokens

    return list(generate_tokens(model, src_ids, max_length, settings))
