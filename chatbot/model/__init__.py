"""The seq2seq network in its three forms, behind one protocol the searches use:
- `network`: the training form (`EncoderRNN`, `Attn`, `LuongAttnDecoderRNN`, `Seq2Seq`, `ModelConfig`);
- `fast`: the fast CPU inference form (`InferenceSeq2Seq`), on copies of the live weights;
- `exported`: the `torch.export` forms (imported on its own: it registers a custom op);
- `protocol`: `DecodingModel`, what `chatbot.decode` asks of any of them.
All three share `network.bridge` (encoder state -> decoder state); the fast form writes the GRU cell once.
"""

from chatbot.model.fast import InferenceSeq2Seq
from chatbot.model.network import (
    Attn,
    EncoderRNN,
    LuongAttnDecoderRNN,
    ModelConfig,
    Seq2Seq,
    bridge,
    select_positions,
)
from chatbot.model.protocol import DecodingModel

__all__ = [
    "Attn",
    "DecodingModel",
    "EncoderRNN",
    "InferenceSeq2Seq",
    "LuongAttnDecoderRNN",
    "ModelConfig",
    "Seq2Seq",
    "bridge",
    "select_positions",
]
