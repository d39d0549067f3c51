"""`ReplyIndex`: the training split's replies as relevance vectors, so rerank can score real lines too.

Not in the tutorial. Rerank picks the best of a few sampled replies, and with this model most samples
are a little broken ("Almost four four dollars."); the pick cannot be better than the best candidate.
The relevance model (`chatbot.relevance`) was trained to tell which reply fits a query, so its reply
encoder can also *find* candidates: every distinct reply of the training split is encoded once, and a
query's nearest replies (largest cosine with its query vector) are scored by rerank beside the samples,
by the same score (retrieve-and-rerank; the candidates of a retrieval model, as in Henderson et al.
2017, picked by a generative model's score). A retrieved reply is a line some film character said,
word for word; it wins only when its score beats every sample's.

The index lives in the relevance checkpoint, as data: {"member": which ensemble member encoded it,
"texts": the normalized replies, "vectors": their unit vectors as int8 rows (`chatbot.checkpoint.int8_rows`)}.
`scripts/ship_relevance.py --index DATA` builds it from a prepared dataset's training split.
"""

from __future__ import annotations

import torch

from chatbot.checkpoint import from_int8_rows, int8_rows
from chatbot.relevance import DualEncoder, encode_ids
from chatbot.tokenizers import EOS_token, Tokenizer


class ReplyIndex:
    """Replies (normalized text) and their reply-encoder unit vectors (N, H); `search` finds a query's nearest."""

    def __init__(self, texts: list[str], vectors: torch.Tensor, member: int = 0):
        if len(texts) != vectors.size(0):
            raise ValueError(f"{len(texts)} texts but {vectors.size(0)} vectors")
        self.texts = texts
        self.vectors = vectors.float()  # (N, H)
        self.member = member

    @classmethod
    @torch.inference_mode()
    def build(
        cls, encoder: DualEncoder, tokenizer: Tokenizer, texts: list[str], member: int = 0, batch_size: int = 4096
    ) -> ReplyIndex:
        """Encode `texts` (normalized, as the relevance model's tokenizer reads them) with `encoder`'s reply encoder."""
        encoder.eval()
        ids = [tokenizer.encode(t) + [EOS_token] for t in texts]
        vectors = encode_ids(encoder.reply_encoder, ids, batch_size)  # (N, H), unit vectors
        return cls(list(texts), vectors, member)

    def search(self, query_vector: torch.Tensor, k: int) -> list[int]:
        """query_vector (H,) -> the indices of the k replies with the largest cosine, best first."""
        k = min(k, len(self.texts))
        if k <= 0:
            return []
        return (self.vectors @ query_vector.float().cpu()).topk(k).indices.tolist()  # (N,) -> k, on the CPU

    @torch.inference_mode()
    def nearest(self, encoder: DualEncoder, query_ids: list[int], k: int) -> list[int]:
        """A query (the relevance tokenizer's ids, EOS included) -> the k nearest replies' indices, best first."""
        return self.search(encode_ids(encoder.query_encoder, [query_ids], 1)[0], k)  # (H,) query vector

    def subset(self, keep: list[int]) -> ReplyIndex:
        """The index of only the replies at `keep`, in that order."""
        return ReplyIndex([self.texts[i] for i in keep], self.vectors[keep], self.member)

    def state_dict(self) -> dict:
        """The index as checkpoint data (int8 vectors: a quarter of fp32's size, cosines within about 0.01)."""
        return {"member": self.member, "texts": list(self.texts), "vectors": int8_rows(self.vectors)}

    @classmethod
    def from_state(cls, state: dict) -> ReplyIndex:
        return cls(list(state["texts"]), from_int8_rows(state["vectors"]), int(state.get("member", 0)))


def training_replies(pairs: list[tuple[str, str]], max_words: int = 12) -> list[str]:
    """The distinct replies of (query, reply) pairs with 1 to `max_words` words, sorted (so a rebuild is identical)."""
    return sorted({r for _, r in pairs if 1 <= len(r.split()) <= max_words})


def load_index(state: dict, path) -> ReplyIndex | None:
    """The reply index a relevance checkpoint carries, or None for one written without it."""
    from chatbot.errors import ChatbotError

    if "index" not in state:
        return None
    try:
        index = ReplyIndex.from_state(state["index"])
        members = len(state["members"]) if "members" in state else 1
        hidden = state["model_config"]["hidden_size"]
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ChatbotError(f"{path}: its reply index is not readable: {err}") from None
    if not 0 <= index.member < members or (index.texts and index.vectors.size(1) != hidden):
        raise ChatbotError(f"{path}: its reply index does not match its relevance model")
    return index
