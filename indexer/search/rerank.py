"""The optional rerank stage: a cross-encoder rescores the best fused passages.

Off unless `PARACITE_RERANKER` names a sentence-transformers CrossEncoder (a local folder, or
a name sentence-transformers can load). It reads each of the top `RERANK_DEPTH` fused
passages together with the question, which a bi-encoder cannot, at the cost of one
transformer pass per passage (README "Reranking").
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from indexer.errors import ModelUnavailable
from indexer.hub import locate_model
from indexer.search.types import Fused, Query
from indexer.segments import SegmentedStore

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

# Fused passages the cross-encoder rescores per question (each is one forward pass).
RERANK_DEPTH = 20


def load_cross_encoder(name: str) -> CrossEncoder:
    """The cross-encoder at a local folder, or by a name sentence-transformers can load."""
    from sentence_transformers import CrossEncoder

    try:
        name = locate_model(name)
    except ModelUnavailable as error:
        raise ModelUnavailable(f"cannot load the reranker {name!r}: {error}") from None
    try:
        return CrossEncoder(name, device="cpu")
    except Exception as error:  # sentence-transformers raises many kinds for a bad model
        raise ModelUnavailable(f"cannot load the reranker {name!r}: {error}") from error


class RerankStage:
    """Rescores the top fused passages with a cross-encoder; fused candidates in and out.

    The passages it reads change places by the cross-encoder's scores, and take the fused
    scores of the places they land on: the order is the cross-encoder's, while the scores
    the answer stage and the answerability model read keep their usual scale."""

    def __init__(
        self, model: CrossEncoder, store: SegmentedStore, depth: int = RERANK_DEPTH
    ) -> None:
        self.model = model
        self.store = store
        self.depth = depth

    def run(self, query: Query, fused: Fused) -> Fused:
        """The fused candidates with the top `depth` reordered by the cross-encoder."""
        top = fused.order()[: self.depth]
        if len(top) < 2:
            return fused
        passages = self.store.passages(fused.rows[top])
        pairs = [(query.text, f"{p.title}\n{p.text}") for p in passages]
        relevance = np.asarray(
            self.model.predict(pairs, batch_size=len(pairs), show_progress_bar=False),
            dtype=np.float32,
        ).reshape(len(pairs), -1)[:, -1]
        # Best first by the cross-encoder; ties keep the fused order.
        reranked = top[np.argsort(-relevance, kind="stable")]
        scores = fused.scores.copy()
        scores[reranked] = fused.scores[top]  # fused.scores[top] is best first
        return replace(fused, scores=scores)
