"""The seq2seq network in its three forms, behind one protocol the searches use:
- `network`: the training form (`EncoderRNN`, `Attn`, `LuongAttnDecoderRNN`, `Seq2Seq`, `ModelConfig`);
- `fast`: the fast CPU inference form (`InferenceSeq2Seq`), on copies of the live weights;
- `exported`: the `torch.export` forms, and `ExportedSeq2Seq` that answers from the saved programs;
- `protocol`: `DecodingModel`, what `chatbot.decode` asks of any of them;
- `shared`: the math they share, written once (`bridge`: encoder state -> decoder state; `gru_cell`).
Import from the submodule itself: an exported model loads without the network's code.
"""
