"""Tokenizers: the `Tokenizer` interface and special ids (base), the word `Voc` (word), SentencePiece
subwords (subword), and the factory that loads whichever one a checkpoint or folder holds.

Imports go one way, base <- word, subword <- factory, so there is no cycle.
"""

from chatbot.tokenizers.base import EOS_token, PAD_token, SOS_token, Tokenizer, UNK_token
from chatbot.tokenizers.factory import load_tokenizer, tokenizer_from_state
from chatbot.tokenizers.subword import SentencePieceTokenizer
from chatbot.tokenizers.word import Voc

__all__ = [
    "EOS_token",
    "PAD_token",
    "SOS_token",
    "UNK_token",
    "SentencePieceTokenizer",
    "Tokenizer",
    "Voc",
    "load_tokenizer",
    "tokenizer_from_state",
]
