"""`DecodingModel`: the three things a search needs from a network, whichever form it takes.

`Seq2Seq` (training form), `InferenceSeq2Seq` (fast CPU form) and `ExportedSeq2Seq` (torch.export
programs) all answer it, so `chatbot.decode` has one implementation of each search. A model may also have
`greedy_step(input_step, last_hidden, encoder_outputs, src_mask, ban) -> (token (1, 1), hidden)`, the same
step and argmax done faster (`InferenceSeq2Seq` has one); greedy search uses it when it is there.
"""

from __future__ import annotations

from typing import Protocol

import torch


class DecodingModel(Protocol):
    """encode a query batch once, then run the decoder one step at a time."""

    @property
    def device(self) -> torch.device:
        """Where the search must put its tensors."""
        ...

    def encode(
        self, input_seq: torch.Tensor, input_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_seq (Ts, B), input_lengths (B,) -> encoder_outputs (Ts, B, H), hidden (L, B, H), src_mask (B, Ts)."""
        ...

    def decoder(
        self, input_step: torch.Tensor, last_hidden: torch.Tensor, encoder_outputs: torch.Tensor, src_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """input_step (1, K), last_hidden (L, K, H), encoder_outputs (Ts, K, H), src_mask (K, Ts)
        -> logits (1, K, V), hidden (L, K, H), attention weights (K, 1, Ts) or None."""
        ...
