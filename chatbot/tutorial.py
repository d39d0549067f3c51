"""The tutorial's own code, as written there (its bugs included), for parity tests and benchmarks.

`GreedySearchDecoder` (its greedy decoder), `maskNLLLoss` and `train` (its loss and one training
iteration) and `tutorial_steps` (its `trainIters` loop over random batches). The project's own code
fixes these (see `chatbot.decode`, `chatbot.train`); nothing in the package decodes or trains with them.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from chatbot.batching import make_batch
from chatbot.model.network import Seq2Seq
from chatbot.tokenizers import SOS_token


class GreedySearchDecoder(torch.nn.Module):
    """The tutorial's greedy decoder, the reference for tests and `scripts/bench_decode.py`.

    As in the tutorial it always runs `max_length` steps (no stop at EOS), takes the max of a softmax
    at each step, and grows its outputs with `torch.cat`; it may emit PAD/SOS/UNK.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_seq: torch.Tensor, input_length: torch.Tensor, max_length: int):
        """input_seq (Ts, 1), input_length (1,) -> all_tokens (max_length,), all_scores (max_length,)."""
        encoder_outputs, decoder_hidden, src_mask = self.model.encode(input_seq, input_length)
        decoder_input = torch.ones(1, 1, dtype=torch.long) * SOS_token
        all_tokens = torch.zeros([0], dtype=torch.long)
        all_scores = torch.zeros([0])
        for _ in range(max_length):
            logits, decoder_hidden, _ = self.model.decoder(decoder_input, decoder_hidden, encoder_outputs, src_mask)
            decoder_output = F.softmax(logits[0], dim=1)  # the tutorial's decoder returned probabilities
            decoder_scores, decoder_input = torch.max(decoder_output, dim=1)
            all_tokens = torch.cat((all_tokens, decoder_input), dim=0)
            all_scores = torch.cat((all_scores, decoder_scores), dim=0)
            decoder_input = torch.unsqueeze(decoder_input, 0)
        return all_tokens, all_scores


def maskNLLLoss(inp: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The tutorial's loss: inp (B, V) softmax probabilities -> mean -log p over the unmasked rows."""
    nTotal = mask.sum()
    crossEntropy = -torch.log(torch.gather(inp, 1, target.view(-1, 1)).squeeze(1))
    loss = crossEntropy.masked_select(mask).mean()
    return loss, nTotal.item()


def train(batch, model: Seq2Seq, encoder_optimizer, decoder_optimizer, clip: float) -> float:
    """The tutorial's `train()` for one batch (teacher_forcing_ratio 1.0, as its default)."""
    encoder_optimizer.zero_grad()
    decoder_optimizer.zero_grad()
    encoder_outputs, decoder_hidden, src_mask = model.encode(batch.input_seq, batch.lengths)
    decoder_input = torch.full((1, batch.target.size(1)), SOS_token, dtype=torch.long, device=batch.target.device)
    loss, print_losses, n_totals = 0, [], 0
    for t in range(batch.target.size(0)):
        logits, decoder_hidden, _ = model.decoder(decoder_input, decoder_hidden, encoder_outputs, src_mask)
        decoder_output = F.softmax(logits[0], dim=1)  # the tutorial's decoder returns probabilities
        decoder_input = batch.target[t].view(1, -1)  # teacher forcing
        mask_loss, nTotal = maskNLLLoss(decoder_output, batch.target[t], batch.mask[t])
        loss += mask_loss
        print_losses.append(mask_loss.item() * nTotal)
        n_totals += nTotal
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.encoder.parameters(), clip)
    torch.nn.utils.clip_grad_norm_(model.decoder.parameters(), clip)
    encoder_optimizer.step()
    decoder_optimizer.step()
    return sum(print_losses) / n_totals


def tutorial_steps(model, examples, device, seed):
    """Endless (batch, closure) pairs of the tutorial's `trainIters`: its two Adam optimizers (lr 1e-4,
    decoder x5), batches of 64 drawn with random.choice and sorted by input length (batch2TrainData);
    calling a closure runs `train` on its batch and returns the batch's mean loss."""
    lr, ratio = 1e-4, 5.0
    encoder_optimizer = torch.optim.Adam(model.encoder.parameters(), lr=lr)
    decoder_optimizer = torch.optim.Adam(model.decoder.parameters(), lr=lr * ratio)
    rng = random.Random(seed)
    while True:
        chosen = sorted((rng.choice(examples) for _ in range(64)), key=lambda e: len(e[0]), reverse=True)
        batch = make_batch(chosen).to(device)
        yield batch, lambda b=batch: train(b, model, encoder_optimizer, decoder_optimizer, 50.0)
