"""What a search takes and gives: :class:`SearchOptions` in, :class:`SearchAnswer` out.

Every search method of :class:`visearch.search.SearchEngine` takes the options as keyword
arguments (``k=5, filter={...}, text="boot"``), checked in one place (:meth:`SearchOptions.check`);
:func:`build_request` turns checked options into the index's request. A batch of query images
answers a :class:`BatchAnswer`, the near-duplicates a :class:`DuplicatesPage`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from qdrant_client import models

from visearch.categories import Category
from visearch.errors import InvalidQueryError
from visearch.index import Hit, SearchRequest
from visearch.index.filters import parse_filter
from visearch.index.semantic import query_vector as semantic_query
from visearch.index.text import query_vector
from visearch.index.types import MMR_DIVERSITY

CORE_FIELDS = ("file", "class", "label", "image_key", "image_uri")
MAX_CLASS_FILTER_CHARS = 200
MAX_TEXT_CHARS = 500
MAX_WINDOW = 10_000  # offset + k: deeper pages cost the engine more than they are worth
# How a result's ``score`` is to be read: a cosine similarity (nearest, MMR, best per class), a
# recommend score (best_score strategy: cosine to the closest positive, penalised near a
# negative), a BM25 score (text only) or a Reciprocal Rank Fusion score (image + text, or text by
# words and by meaning).
ScoreKind = Literal["cosine", "recommend", "bm25", "rrf"]
UNUSUAL_NOTICE = "unlike anything in this category"


def check_int(name: str, value: object, low: int, high: int) -> int:
    """``value`` if it is an integer from ``low`` to ``high`` (a bool is not an integer here).

    Raises:
        InvalidQueryError: naming ``name``, its range and the value given.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidQueryError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def check_batch(count: int, limit: int) -> None:
    """Raise InvalidQueryError unless a batch holds 1 to ``limit`` images."""
    if not 1 <= count <= limit:
        raise InvalidQueryError(f"a batch holds 1 to {limit} images, got {count}")


@dataclass(frozen=True)
class SearchOptions:
    """How to search: every search method of the engine takes these as keyword arguments.

    Attributes:
        k: results per page, 1 to ``Settings.max_k``.
        min_similarity: percent (0-100); hits of a lower cosine similarity are left out.
        class_filter: only this class (shorthand for a ``class`` match condition).
        filter: Qdrant's filter JSON over the category's filterable columns
            (see :mod:`visearch.index.filters`).
        text: caption words: alone → text search (BM25, fused by RRF with the captions' meaning where
            the index has semantic caption vectors); with an image → hybrid (RRF).
        offset: results to skip (pagination); ``SearchAnswer.next_offset`` gives the next page.
        diverse: re-rank for variety (MMR, diversity 0.5 over the nearest 4,000).
        group_by_class: the best hit of each class, best class first (one page, no offset).
    """

    k: int = 10
    min_similarity: float = 0.0
    class_filter: str | None = None
    filter: Mapping[str, Any] | None = None
    text: str | None = None
    offset: int = 0
    diverse: bool = False
    group_by_class: bool = False

    def check(self, max_k: int) -> None:
        """Raise InvalidQueryError naming the first option out of its limits."""
        k = check_int("k", self.k, 1, max_k)
        similarity = self.min_similarity
        if isinstance(similarity, bool) or not isinstance(similarity, int | float) or not 0 <= similarity <= 100:
            raise InvalidQueryError(f"min_similarity must be a percentage from 0 to 100, got {similarity!r}")
        if self.class_filter is not None and (
            not isinstance(self.class_filter, str) or len(self.class_filter) > MAX_CLASS_FILTER_CHARS
        ):
            raise InvalidQueryError(f"class_filter must be a class name of at most {MAX_CLASS_FILTER_CHARS} characters")
        if self.filter is not None and not isinstance(self.filter, Mapping):
            raise InvalidQueryError(f"filter must be a JSON object, got {type(self.filter).__name__}")
        if self.text is not None and (not isinstance(self.text, str) or len(self.text) > MAX_TEXT_CHARS):
            raise InvalidQueryError(f"text must be a string of at most {MAX_TEXT_CHARS} characters")
        offset = self.offset
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0 or offset + k > MAX_WINDOW:
            raise InvalidQueryError(f"offset must be an integer from 0, with offset + k at most {MAX_WINDOW}")
        for name in ("diverse", "group_by_class"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidQueryError(f"{name} must be true or false")
        if self.group_by_class and (self.offset or self.diverse):
            raise InvalidQueryError("group_by_class returns one page of one hit per class: no offset, no diverse")


def captions_of(payload: dict[str, Any]) -> dict[str, Any]:
    """A point payload's caption columns: every field but the core ones (file, class, label, store key and URI)."""
    return {k: v for k, v in payload.items() if k not in CORE_FIELDS}


@dataclass
class SearchResult:
    """One similar image: point id, score, similarity in percent, class, file, captions, store key.

    ``calibrated`` (0-100, cosine scores only) is where the similarity stands among the category's
    nearest-neighbour similarities (:mod:`visearch.neighbours`): 50 = a typical nearest neighbour.
    """

    id: str
    score: float
    similarity: float
    cls: str
    file: str
    captions: dict[str, Any] = field(default_factory=dict)
    image_key: str = ""
    calibrated: float | None = None

    @classmethod
    def from_hit(cls, hit: Hit, calibrated: float | None = None) -> SearchResult:
        """The result for an index hit; payload fields other than the core ones become captions."""
        payload = hit.payload
        captions = captions_of(payload)
        return cls(
            hit.id,
            round(hit.score, 6),
            hit.similarity_percent,
            str(payload.get("class", "")),
            str(payload.get("file", "")),
            captions,
            str(payload.get("image_key", "")),
            calibrated,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field but the store key, with ``class`` for ``cls``."""
        return {
            "id": self.id,
            "score": self.score,
            "similarity": self.similarity,
            "calibrated": self.calibrated,
            "class": self.cls,
            "file": self.file,
            "captions": self.captions,
        }


@dataclass
class SearchAnswer:
    """One search's answer.

    Attributes:
        results: the hits of this page, best first.
        model_version: the model whose vectors were searched (the live index version's).
        collection: the index version searched.
        score_kind: how to read ``score`` (see ``ScoreKind``).
        notice: ``"unlike anything in this category"`` when the query image's nearest neighbour
            is less similar than the category's usual range (``Settings.visearch_unusual_percentile``),
            else None.
        next_offset: the ``offset`` of the next page, None when this page was not full.
    """

    results: list[SearchResult]
    model_version: str
    collection: str
    score_kind: ScoreKind = "cosine"
    notice: str | None = None
    next_offset: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: results as :meth:`SearchResult.to_dict`, the rest as is."""
        return {**asdict(self), "results": [r.to_dict() for r in self.results]}


@dataclass
class BatchAnswer:
    """The answers of several query images searched as one batch (one model version, one score kind).

    Attributes:
        results: one result list per query image, in the order the images were given.
        notices: one notice per query image (see ``SearchAnswer.notice``).
        next_offsets: one next page offset per query image (None: that page was not full).
        model_version: the model whose vectors were searched.
        collection: the index version searched.
        score_kind: how to read ``score`` (the same for every image of a batch).
    """

    results: list[list[SearchResult]]
    notices: list[str | None]
    next_offsets: list[int | None]
    model_version: str
    collection: str
    score_kind: ScoreKind

    @classmethod
    def of(cls, answers: Sequence[SearchAnswer]) -> BatchAnswer:
        """The batch of one search's answers (at least one; all from the version the first one names).

        Raises:
            InvalidQueryError: no answers.
        """
        if not answers:
            raise InvalidQueryError("no images given")
        first = answers[0]
        return cls(
            [answer.results for answer in answers],
            [answer.notice for answer in answers],
            [answer.next_offset for answer in answers],
            first.model_version,
            first.collection,
            first.score_kind,
        )


@dataclass
class DuplicatePair:
    """Two images of a category whose cosine similarity is above its ``duplicate_threshold``."""

    similarity: float
    first: SearchResult
    second: SearchResult

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"similarity": self.similarity, "first": self.first.to_dict(), "second": self.second.to_dict()}


@dataclass
class DuplicatesPage:
    """One page of a category's near-duplicate pairs, most similar first."""

    pairs: list[DuplicatePair]
    total: int
    threshold: float
    next_offset: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "pairs": [p.to_dict() for p in self.pairs],
            "total": self.total,
            "threshold": self.threshold,
            "next_offset": self.next_offset,
        }


def build_request(
    category: Category,
    opts: SearchOptions,
    *,
    vector: list[float] | None = None,
    positives: list[list[float]] | None = None,
    negatives: list[list[float]] | None = None,
    exclude: Sequence[str] = (),
    semantic: bool = False,
) -> tuple[SearchRequest, ScoreKind]:
    """The engine request for checked options and a query (vector, examples and/or ``opts.text``).

    ``semantic``: the collection holds semantic caption vectors, so text also matches by meaning
    (fused with BM25 by RRF); not with ``group_by_class``, whose fused ranks the engines compute
    differently (BM25 alone there).

    Raises:
        InvalidQueryError: a bad filter, text without caption columns or searchable words,
            nothing to search with, or ``diverse`` without one query vector or with text.
    """
    flt = parse_filter(opts.filter, category.filterable)
    text = None
    if opts.text is not None and opts.text.strip():
        if not category.captions:
            raise InvalidQueryError(f"category {category.name} has no caption columns")
        text = query_vector(opts.text)
        if text is None:
            raise InvalidQueryError(f"text {opts.text!r} has no searchable word")
    dense = vector is not None or bool(positives)
    if not dense and text is None:
        raise InvalidQueryError("give an image, examples or text to search with")
    if opts.group_by_class and dense and text is not None:
        # Fused ranks per class would differ between the engines (edge ranks within each class).
        raise InvalidQueryError("group_by_class works with an image or a text query, not with both")
    if opts.diverse and (vector is None or text is not None):
        # MMR inside a hybrid prefetch differs between the engines: diversity is for image queries only.
        raise InvalidQueryError("diverse needs one query image and no text")
    meaning = None
    if semantic and opts.text and text is not None and not opts.group_by_class:
        meaning = semantic_query(opts.text)
    request = SearchRequest(
        opts.k,
        vector=vector,
        positives=positives or [],
        negatives=negatives or [],
        text=text,
        semantic=meaning,
        filter=flt,
        offset=opts.offset,
        min_score=opts.min_similarity / 100 or None,
        diversity=MMR_DIVERSITY if opts.diverse else None,
        exclude_ids=list(exclude),
    )
    if opts.class_filter:
        request = request.narrowed(models.FieldCondition(key="class", match=models.MatchValue(value=opts.class_filter)))
    fused = text is not None and (dense or meaning is not None)
    kind: ScoreKind = "rrf" if fused else "bm25" if text else "recommend" if positives else "cosine"
    return request, kind


def duplicates_page(
    pairs: Sequence[Mapping[str, Any]],
    payloads: Mapping[str, dict[str, Any]],
    offset: int,
    limit: int,
    threshold: float,
) -> DuplicatesPage:
    """One page of stored duplicate pairs (``{"a", "b", "similarity"}``) with the points' payloads."""
    found = [
        DuplicatePair(
            round(pair["similarity"] * 100, 2),
            SearchResult.from_hit(Hit(pair["a"], pair["similarity"], payloads.get(pair["a"], {}))),
            SearchResult.from_hit(Hit(pair["b"], pair["similarity"], payloads.get(pair["b"], {}))),
        )
        for pair in pairs[offset : offset + limit]
    ]
    more = offset + limit < len(pairs)
    return DuplicatesPage(found, len(pairs), threshold, offset + limit if more else None)
