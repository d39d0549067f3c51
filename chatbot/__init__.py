"""A small GRU seq2seq chatbot with Luong attention, grown from the PyTorch chatbot tutorial."""

__version__ = "0.1.0"
