"""Caption text as BM25 sparse vectors, computed by qdrant-edge's ``Bm25`` for every engine.

Both engines store the same document vectors and get the same query vectors, so text search
scores alike on the embedded engine and on a Qdrant server; the engines apply IDF themselves
(the ``captions`` sparse vector is created with the IDF modifier).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import qdrant_edge as edge

from visearch.index.types import Sparse


@functools.cache
def _model() -> edge.Bm25:
    return edge.Bm25(edge.Bm25Config())


def caption_text(payload: Mapping[str, Any], columns: Sequence[str]) -> str:
    """The text of a point's caption ``columns`` (missing or empty values skipped), space-joined."""
    return " ".join(str(payload[c]) for c in columns if payload.get(c) not in (None, ""))


def document_vector(text: str) -> Sparse | None:
    """BM25 document vector of ``text``; None when it has no token (the point gets no text vector)."""
    vector = _model().embed_document(text) if text.strip() else None
    return Sparse(list(vector.indices), list(vector.values)) if vector and vector.indices else None


def query_vector(text: str) -> Sparse | None:
    """BM25 query vector of ``text``; None when it has no token (stop words or punctuation only)."""
    vector = _model().embed_query(text) if text.strip() else None
    return Sparse(list(vector.indices), list(vector.values)) if vector and vector.indices else None
