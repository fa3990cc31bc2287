"""The service's request and response schemas, and how a library answer becomes one.

Inputs of the BentoML APIs derive from ``GuardedInput`` (``serving.forms``); the search options
every query takes are declared once, in ``Options`` and the two bases above it. Responses are the
API form of the library's answers (``visearch.search_options``), each built by its ``of``. The
field types and limits come from ``serving.contract``.
"""

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from serving.contract import (
    FROM_SETTINGS,
    IMAGE_MEDIA_TYPES,
    Base64Image,
    CategoryName,
    ClassFilter,
    Diverse,
    Filter,
    GroupByClass,
    K,
    MinSimilarity,
    Offset,
    PointId,
    Text,
    errors,
)
from serving.forms import GuardedInput
from visearch.categories import Registry
from visearch.runtime import error_payload, image_url
from visearch.search import CategoryInfo
from visearch.search_options import BatchAnswer, DuplicatesPage, ScoreKind, SearchAnswer, SearchResult


# --- inputs of the BentoML APIs -------------------------------------------------------------
class Options(GuardedInput):
    """The search options every query endpoint takes (``visearch.search_options.SearchOptions``)."""

    k: K = 10
    min_similarity: MinSimilarity = 0.0
    class_filter: ClassFilter = None
    filter: Filter = None
    offset: Offset = 0
    group_by_class: GroupByClass = False


class CategoryOptions(Options):
    """The search options of a query in one category."""

    category: CategoryName


class QueryOptions(CategoryOptions):
    """The search options of a query by one image or vector: caption text makes it hybrid; diversity."""

    text: Text = None
    diverse: Diverse = False


class SearchInput(QueryOptions):
    """Input of POST /search: one query image (multipart upload), optional caption text, the options."""

    image: Annotated[Path, Field(description="The query image (multipart file)")]


class BatchInput(QueryOptions):
    """Input of POST /search_batch: several query images (multipart uploads) and the search options."""

    images: Annotated[
        list[Path],
        Field(
            description="Query images (repeat the multipart field)",
            min_length=1,
            json_schema_extra={FROM_SETTINGS: {"maxItems": "max_batch_images"}},
        ),
    ]


class ByIdInput(QueryOptions):
    """Input of POST /search_by_id: the id of a stored image and the search options."""

    point_id: PointId


class TextInput(CategoryOptions):
    """Input of POST /search_text: caption words and the search options."""

    text: Annotated[
        str, Field(description="Caption words (BM25 over the caption columns)", min_length=1, max_length=500)
    ]


class VectorInput(QueryOptions):
    """Input of POST /search_vector: a vector from /embed, the model version that made it, the options."""

    vector: Annotated[list[float], Field(description="An embedding from /embed", min_length=1, max_length=4096)]
    model_version: Annotated[
        str, Field(description="The `model_version` /embed answered with the vector", max_length=100)
    ]


Ids = Annotated[
    list[str],
    Field(description="Ids of stored images (in a multipart form: repeat the field, or one JSON array)", max_length=64),
]


class RecommendInput(CategoryOptions):
    """Input of POST /recommend: positive and negative examples (stored ids and/or uploaded images)."""

    positive: Ids = []
    negative: Ids = []
    # Not optional (BentoML converts the parts of a ``list[Path]`` field only): none sent = empty.
    positive_images: Annotated[list[Path], Field(description="Uploaded images to look like", max_length=64)] = []
    negative_images: Annotated[list[Path], Field(description="Uploaded images to look unlike", max_length=64)] = []
    text: Text = None


class EmbedRequest(BaseModel):
    """One image to embed with the model of a category."""

    category: CategoryName
    image: Base64Image


class EmbedInput(GuardedInput):
    """Input of POST /embed: the images to embed, each with its category."""

    requests: Annotated[list[EmbedRequest], Field(min_length=1)]


# --- answers ------------------------------------------------------------------------------------
class Result(BaseModel):
    """One similar image."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str = Field(description="Point id; use it with /search_by_id, /recommend and /images/{category}/{id}")
    score: float = Field(description="The score of the answer's `score_kind` (cosine similarity: -1..1)")
    similarity: float = Field(description="max(score, 0) in percent")
    calibrated: float | None = Field(
        default=None,
        description=(
            "Where the similarity stands among the category's nearest-neighbour similarities, 0-100 "
            "(50 = a typical nearest neighbour); null unless the score is a cosine similarity"
        ),
    )
    class_: str = Field(alias="class", description="Class of the image (meta CSV `class`)")
    file: str = Field(description="File name in the dataset")
    captions: dict[str, Any] = Field(default_factory=dict, description="Caption columns of the meta CSV")
    image_url: str = Field(description="GET this (relative to the service root) for the image")

    @classmethod
    def of(cls, category: str, result: SearchResult) -> "Result":
        """The API form of a library search result; its ``image_url`` points into ``category``."""
        return cls(
            id=result.id,
            score=result.score,
            similarity=result.similarity,
            calibrated=result.calibrated,
            class_=result.cls,
            file=result.file,
            captions=result.captions,
            image_url=image_url(category, result.id),
        )

    @classmethod
    def many(cls, category: str, results: list[SearchResult]) -> list["Result"]:
        """The API form of several library search results."""
        return [cls.of(category, result) for result in results]


SCORE_KIND = (
    "How to read `score`: cosine (similarity), recommend (best_score: cosine to the closest positive, "
    "penalised near a negative), bm25 (text only) or rrf (image + text, Reciprocal Rank Fusion)"
)
NOTICE = (
    'null, or "unlike anything in this category" when the query image\'s nearest neighbour is less '
    "similar than the category's usual range (VISEARCH_UNUSUAL_PERCENTILE)"
)


class SearchResponse(BaseModel):
    """The images most similar to the query, best first."""

    category: str
    results: list[Result]
    model_version: str = Field(description="The model whose vectors were searched (the live index version's)")
    score_kind: ScoreKind = Field(description=SCORE_KIND)
    notice: str | None = Field(description=NOTICE)
    next_offset: int | None = Field(description="The `offset` of the next page; null when this page was not full")

    @classmethod
    def of(cls, category: str, answer: SearchAnswer) -> "SearchResponse":
        """The API form of a library answer."""
        return cls(
            category=category,
            results=Result.many(category, answer.results),
            model_version=answer.model_version,
            score_kind=answer.score_kind,
            notice=answer.notice,
            next_offset=answer.next_offset,
        )


class BatchResponse(BaseModel):
    """The images most similar to each query image, best first."""

    category: str
    results: list[list[Result]] = Field(description="One result list per uploaded image, in upload order")
    notices: list[str | None] = Field(description="One notice per uploaded image: " + NOTICE)
    next_offsets: list[int | None] = Field(description="One next page offset per uploaded image")
    model_version: str = Field(description="The model whose vectors were searched")
    score_kind: ScoreKind = Field(description=SCORE_KIND)

    @classmethod
    def of(cls, category: str, batch: BatchAnswer) -> "BatchResponse":
        """The API form of a library batch answer."""
        return cls(
            category=category,
            results=[Result.many(category, results) for results in batch.results],
            notices=batch.notices,
            next_offsets=batch.next_offsets,
            model_version=batch.model_version,
            score_kind=batch.score_kind,
        )


class Facet(BaseModel):
    """One value of a keyword column and how many images of the live index hold it."""

    value: str | int
    count: int


class DuplicatePairOut(BaseModel):
    """Two images whose cosine similarity is above the category's duplicate threshold."""

    # Named as before the rename in the OpenAPI document: clients generated from it keep their names.
    model_config = ConfigDict(title="DuplicatePair")
    __qualname__ = "DuplicatePair"

    similarity: float = Field(description="Cosine similarity in percent")
    first: Result
    second: Result


class DuplicatesResponse(BaseModel):
    """One page of the live index's near-duplicate pairs, most similar first."""

    category: str
    pairs: list[DuplicatePairOut]
    total: int = Field(description="Pairs in the whole live index")
    threshold: float = Field(description="Cosine similarity (0-1) above which two images count as duplicates")
    next_offset: int | None = Field(description="The `offset` of the next page; null on the last page")

    @classmethod
    def of(cls, category: str, page: DuplicatesPage) -> "DuplicatesResponse":
        """The API form of a library duplicates page."""
        pairs = [
            DuplicatePairOut(
                similarity=p.similarity, first=Result.of(category, p.first), second=Result.of(category, p.second)
            )
            for p in page.pairs
        ]
        return cls(
            category=category, pairs=pairs, total=page.total, threshold=page.threshold, next_offset=page.next_offset
        )


class ChangeCounts(BaseModel):
    """Images added, replaced and removed in a live category since its model was trained (net per file)."""

    add: int = 0
    replace: int = 0
    remove: int = 0


class CategoryOut(BaseModel):
    """A category: what it holds, what it is for, its credits and whether it has an index yet."""

    # Named as before the rename in the OpenAPI document: clients generated from it keep their names.
    model_config = ConfigDict(title="Category")
    __qualname__ = "Category"

    name: str
    title: str
    business_usage: str
    credits: str
    image_count: int = Field(description="Images in the live index (0 before the first pipeline run)")
    indexed: bool
    index_lag: str | None = Field(
        default=None,
        description="Why the live index does not serve the registry's fields/captions yet (null: it does)",
    )
    filterable: dict[str, str] = Field(
        description="Columns a `filter` may name, each with its kind: keyword, integer, float or text"
    )
    captions: list[str] = Field(description="Caption columns a `text` query searches (empty: no text search)")
    changes: ChangeCounts | None = Field(
        default=None,
        description="Images changed since the live model was trained (null while the object store cannot say)",
    )

    @classmethod
    def of(cls, info: CategoryInfo, registry: Registry, changes: dict[str, int] | None = None) -> "CategoryOut":
        """The API form of the library's category description, with its columns from the registry."""
        entry = registry.get(info.name)
        counts = ChangeCounts(**changes) if changes is not None else None
        return cls(**info.to_dict(), filterable=dict(entry.filterable), captions=list(entry.captions), changes=counts)


class EmbedOutcome(BaseModel):
    """The embedding of one request item, or the error that item got."""

    vector: list[float] | None = Field(default=None, description="L2-normalised embedding (null on error)")
    model_version: str | None = Field(
        default=None, description="The model that made the vector: send it with the vector to /search_vector"
    )
    error: str | None = None
    status: int = Field(default=200, description="HTTP status this item would get on its own")

    @classmethod
    def of(cls, outcome: Any) -> "EmbedOutcome":
        """A (vector, model version) outcome, or the error message and status of an exception in its place."""
        if isinstance(outcome, BaseException):
            status, body = error_payload(outcome)
            return cls(error=body["error"], status=status)
        vector, version = outcome
        return cls(vector=[float(x) for x in vector], model_version=version)


def error_response(exc: BaseException) -> JSONResponse:
    """The JSON error answer for an exception, with its HTTP status (never a traceback)."""
    status, body = error_payload(exc)
    return JSONResponse(body, status_code=status)


# POST /search_raw: the image is the whole body, so the document lists each image type FastAPI
# cannot infer from a parameter (the body is read from the request itself).
RAW_IMAGE_BODY = {
    "required": True,
    "description": "The query image file itself (no multipart)",
    "content": {
        kind.strip(): {"schema": {"type": "string", "format": "binary"}} for kind in IMAGE_MEDIA_TYPES.split(",")
    },
}
GET_ERRORS = errors(400, 404, 422, 503)
QUERY_ERRORS = (400, 404, 413, 503)
