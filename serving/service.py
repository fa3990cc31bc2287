"""The visearch BentoML service: REST API (OpenAPI at /docs) with the Gradio UI at /ui.

Contract rules (schemathesis checks them all, tests/service/test_service_reliability.py):

- The OpenAPI document (/docs.json) states exactly what the server accepts and answers.
- Field types come from ``serving.contract``: ``CategoryName``, ``K`` (1..Settings.max_k),
  ``MinSimilarity`` (0..100), ``ClassFilter``, ``Base64Image``; a limit taken from Settings is a
  ``FROM_SETTINGS`` marker filled in when the document is served.
- Bodies are JSON unless they carry files; a file field is an image (``IMAGE_MEDIA_TYPES``).
- Every error answer is ``ErrorBody`` JSON (``{"error": message, "status": code}``), a 4xx or 503,
  never a 500; each route lists the statuses it can send: a BentoML API with
  ``@api(route, errors=(...))``, a FastAPI route with ``responses=errors(...)``.
- Admin routes take ``**ADMIN`` (API-key guard, 401/403 first).

Run: ``bentoml serve serving.service:Visearch`` (or ``visearch serve``). A thin adapter over
``visearch.search.SearchEngine``: every endpoint is one library call through the server's
``Runtime``; errors become ``{"error": ..., "status": ...}`` JSON with a 4xx (or 503) status.

One worker: ONNX Runtime already uses every core for one batch, and BentoML's adaptive batching
(/embed) merges concurrent calls within the worker. Requests run in up to ``THREADS`` threads (a
request waiting on an engine holds only its own; the library serialises forward passes alone), so
one stuck on an engine never holds up the others. The embedded index opens read-only here, so
pipelines and the CLI use the same data home meanwhile.
"""

import contextlib
import json
import logging
import mimetypes
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import bentoml
from fastapi import Depends, FastAPI, Query, Security
from fastapi import Path as PathParam
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serving.contract import (
    FROM_SETTINGS,
    IMAGE_MEDIA_TYPES,
    Base64Image,
    CategoryName,
    ClassFilter,
    Diverse,
    ErrorShape,
    Filter,
    GroupByClass,
    K,
    MinSimilarity,
    Offset,
    OpenAPIContract,
    PointId,
    Text,
    api,
    errors,
)
from visearch import __version__, admin
from visearch.categories import Registry
from visearch.errors import ForbiddenError, ImageTooLargeError, UnauthorizedError
from visearch.results import DuplicatesPage, SearchAnswer
from visearch.runtime import Runtime, check_batch, error_payload, image_url, keep_temp_files_in_home, read_upload
from visearch.search import CategoryInfo, SearchResult
from visearch.settings import MAX_FORM_FILES, Settings
from visearch.tracking import Tracker

logger = logging.getLogger("visearch.service")
UNIONS = (typing.Union, types.UnionType)


def invalid(model: str, field: str, kind: str, message: str) -> ValidationError:
    """A pydantic validation error: BentoML answers it with 400 and the message in ``detail``."""
    line = {"type": PydanticCustomError(kind, message), "loc": (field,), "input": "<body>"}
    return ValidationError.from_exception_data(model, [line])  # type: ignore[list-item]


class FileParts(MultiPartParser):
    """Starlette's multipart parser, reading a part with an image Content-Type as a file.

    RFC 7578 makes a file part's filename a SHOULD; Starlette reads a part without one as text,
    so an image sent that way (as the OpenAPI document's encoding allows) would be refused.
    """

    # A part up to 4 MB (a phone photo) stays in memory; Starlette's 1 MB spools a 1.3 MB photo to
    # disk one thread-pool write per 64 KB chunk: 3.3 ms to parse it instead of 0.8 ms.
    spool_max_size = 4 * 1024 * 1024

    def on_headers_finished(self) -> None:
        """Give an image part without a filename one, then let Starlette make it an upload."""
        part = self._current_part
        content_type = dict(part.item_headers).get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type.startswith(b"image/") and b"filename" not in parse_options_header(part.content_disposition)[1]:
            part.content_disposition += b'; filename="upload"'
        super().on_headers_finished()


async def parse_form(request: Request) -> Any:
    """The request's multipart form, parsed by ``FileParts`` and cached where BentoML's parse reads it."""
    if request._form is None:  # noqa: SLF001 - Starlette's form cache: BentoML reads the form through it
        # More files than any endpoint takes: refused (400) before another part is read.
        parser = FileParts(request.headers, request.stream(), max_files=MAX_FORM_FILES)
        request._form = await parser.parse()  # noqa: SLF001
    return request._form  # noqa: SLF001


class GuardedInput(bentoml.IODescriptor):
    """Request input that turns BentoML's multipart pitfalls into 400s.

    A multipart body without boundary or with broken parts makes BentoML answer 500; a text value
    in a file field BentoML would fetch as a URL (a server-side request on the caller's behalf,
    and a 500 when it is no URL). Both are refused here as validation errors.
    """

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> bentoml.IODescriptor:
        """Refuse a malformed multipart body or a text value in a file field, then parse as BentoML does.

        Raises:
            ValidationError: the multipart body cannot be parsed, or a file field holds text (BentoML answers 400).
        """
        if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            try:
                form = await parse_form(request)
            except (HTTPException, MultiPartException) as exc:
                detail = getattr(exc, "detail", None) or getattr(exc, "message", "")
                raise invalid(cls.__name__, "body", "multipart_invalid", f"malformed multipart body: {detail}") from exc
            for name in cls.multipart_fields:
                if any(isinstance(value, str) for value in form.getlist(name)):
                    raise invalid(cls.__name__, name, "file_expected", "expected an uploaded file, got a text value")
            return cls.model_validate(await form_values(cls, form))
        return await super().from_http_request(request, serde)


def text_kind(annotation: Any) -> str | None:
    """``"str"`` for a text field, ``"list"`` for a list of texts, else None (optional or not)."""
    args = [arg for arg in get_args(annotation) if arg is not type(None)] if get_origin(annotation) in UNIONS else []
    if len(args) == 1:
        annotation = args[0]
    if annotation is str:
        return "str"
    if get_origin(annotation) is list and get_args(annotation) == (str,):
        return "list"
    return None


async def form_values(cls: type[GuardedInput], form: Any) -> dict[str, Any]:
    """The fields of a multipart form, as the input model takes them.

    BentoML reads every non-file part as JSON, falling back to the raw text, so a text field
    holding ``8`` or ``true`` arrived as a number or a boolean and was refused. Here a text field
    keeps its text, a list of texts is its repeated parts (or one part holding a JSON array),
    files stay uploads, and every other field (numbers, booleans, the filter object) is JSON.
    """
    data: dict[str, Any] = {}
    for name in dict.fromkeys(form.keys()):
        values = form.getlist(name)
        if name in cls.multipart_fields:
            data[name] = values if get_origin(cls.model_fields[name].annotation) is list else values[0]
            continue
        texts = [
            (await value.read()).decode("utf-8", "replace") if isinstance(value, UploadFile) else value
            for value in values
        ]
        field = cls.model_fields.get(name)
        kind = text_kind(field.annotation) if field else None
        if kind == "str":
            data[name] = texts[-1]
        elif kind == "list":
            data[name] = texts
            if len(texts) == 1:
                with contextlib.suppress(ValueError):
                    parsed = json.loads(texts[0])
                    if isinstance(parsed, list):
                        data[name] = parsed
        else:
            try:
                data[name] = json.loads(texts[-1])
            except ValueError:
                data[name] = texts[-1]
    return data


class Options(GuardedInput):
    """The search options every query endpoint takes (``visearch.results.SearchOptions``)."""

    k: K = 10
    min_similarity: MinSimilarity = 0.0
    class_filter: ClassFilter = None
    filter: Filter = None
    offset: Offset = 0
    group_by_class: GroupByClass = False


class SearchInput(Options):
    """Input of POST /search: one query image (multipart upload), optional caption text, the options."""

    image: Annotated[Path, Field(description="The query image (multipart file)")]
    category: CategoryName
    text: Text = None
    diverse: Diverse = False


class BatchInput(Options):
    """Input of POST /search_batch: several query images (multipart uploads) and the search options."""

    images: Annotated[
        list[Path],
        Field(
            description="Query images (repeat the multipart field)",
            min_length=1,
            json_schema_extra={FROM_SETTINGS: {"maxItems": "max_batch_images"}},
        ),
    ]
    category: CategoryName
    text: Text = None
    diverse: Diverse = False


class ByIdInput(Options):
    """Input of POST /search_by_id: the id of a stored image and the search options."""

    category: CategoryName
    point_id: PointId
    text: Text = None
    diverse: Diverse = False


class TextInput(Options):
    """Input of POST /search_text: caption words and the search options."""

    category: CategoryName
    text: Annotated[
        str, Field(description="Caption words (BM25 over the caption columns)", min_length=1, max_length=500)
    ]


class VectorInput(Options):
    """Input of POST /search_vector: a vector from /embed, the model version that made it, the options."""

    category: CategoryName
    vector: Annotated[list[float], Field(description="An embedding from /embed", min_length=1, max_length=4096)]
    model_version: Annotated[
        str, Field(description="The `model_version` /embed answered with the vector", max_length=100)
    ]
    text: Text = None
    diverse: Diverse = False


Ids = Annotated[
    list[str],
    Field(description="Ids of stored images (in a multipart form: repeat the field, or one JSON array)", max_length=64),
]


class RecommendInput(Options):
    """Input of POST /recommend: positive and negative examples (stored ids and/or uploaded images)."""

    category: CategoryName
    positive: Ids = []
    negative: Ids = []
    # Not optional (BentoML converts the parts of a ``list[Path]`` field only): none sent = empty.
    positive_images: Annotated[list[Path], Field(description="Uploaded images to look like", max_length=64)] = []
    negative_images: Annotated[list[Path], Field(description="Uploaded images to look unlike", max_length=64)] = []
    text: Text = None


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


ScoreKind = Literal["cosine", "recommend", "bm25", "rrf"]
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
            results=[Result.of(category, r) for r in answer.results],
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


class Facet(BaseModel):
    """One value of a keyword column and how many images of the live index hold it."""

    value: str | int
    count: int


class DuplicatePair(BaseModel):
    """Two images whose cosine similarity is above the category's duplicate threshold."""

    similarity: float = Field(description="Cosine similarity in percent")
    first: Result
    second: Result


class DuplicatesResponse(BaseModel):
    """One page of the live index's near-duplicate pairs, most similar first."""

    category: str
    pairs: list[DuplicatePair]
    total: int = Field(description="Pairs in the whole live index")
    threshold: float = Field(description="Cosine similarity (0-1) above which two images count as duplicates")
    next_offset: int | None = Field(description="The `offset` of the next page; null on the last page")

    @classmethod
    def of(cls, category: str, page: DuplicatesPage) -> "DuplicatesResponse":
        """The API form of a library duplicates page."""
        return cls(
            category=category,
            pairs=[
                DuplicatePair(
                    similarity=p.similarity, first=Result.of(category, p.first), second=Result.of(category, p.second)
                )
                for p in page.pairs
            ],
            total=page.total,
            threshold=page.threshold,
            next_offset=page.next_offset,
        )


class Category(BaseModel):
    """A category: what it holds, what it is for, its credits and whether it has an index yet."""

    name: str
    title: str
    business_usage: str
    credits: str
    image_count: int = Field(description="Images in the live index (0 before the first pipeline run)")
    indexed: bool
    filterable: dict[str, str] = Field(
        description="Columns a `filter` may name, each with its kind: keyword, integer, float or text"
    )
    captions: list[str] = Field(description="Caption columns a `text` query searches (empty: no text search)")

    @classmethod
    def of(cls, info: CategoryInfo, registry: Registry) -> "Category":
        """The API form of the library's category description, with its columns from the registry."""
        entry = registry.get(info.name)
        return cls(**info.to_dict(), filterable=dict(entry.filterable), captions=list(entry.captions))


class EmbedRequest(BaseModel):
    """One image to embed with the model of a category."""

    category: CategoryName
    image: Base64Image


class EmbedInput(GuardedInput):
    """Input of POST /embed: the images to embed, each with its category."""

    requests: Annotated[list[EmbedRequest], Field(min_length=1)]


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


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused (413) past ``max_bytes`` before more of it is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ImageTooLargeError(f"upload too large: {declared} bytes (limit {max_bytes})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ImageTooLargeError(f"upload too large: over {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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
web = FastAPI(title="visearch", version=__version__)


# --- admin: models and the API-key guard -----------------------------------------------------
class IndexVersion(BaseModel):
    """One version of a category's index."""

    name: str = Field(description="Collection name: <category>__<created>-<model version>-<data hash>")
    created: str
    model_version: str
    data_hash: str
    live: bool = Field(description="The category alias points at this version")
    being_written: bool = Field(description="A pipeline is still writing it")
    points: int | None = Field(description="Point count (null while being written)")


class IndexState(BaseModel):
    """The index versions of a category and which one is live."""

    category: str
    live: str | None = Field(description="The live version (null before the first pipeline run)")
    versions: list[IndexVersion] = Field(description="Oldest first")


class RollbackRequest(BaseModel):
    """Input of POST /admin/rollback: the category, and optionally the version to make live."""

    category: CategoryName
    to: str | None = Field(
        default=None,
        max_length=300,
        description="A version's `name` to make live (default: the one before the live one)",
    )


class RollbackResult(BaseModel):
    """The outcome of a rollback: the live version before and after, and the MLflow champion."""

    category: str
    live: str = Field(description="The version now live")
    previous: str = Field(description="The version that was live before the rollback")
    champion: str | None = Field(description="The MLflow registry version now holding the `champion` alias")
    note: str = Field(description="Why the champion did not move, if it did not")


class DeleteRequest(BaseModel):
    """Input of POST /admin/delete_version: the category and the version to delete."""

    category: CategoryName
    collection: str = Field(description="A version's `name` from GET /admin/index (not the live one)", max_length=300)


class DeleteResult(BaseModel):
    """The outcome of a deletion: the deleted version and the category's live one."""

    category: str
    deleted: str
    live: str | None


# auto_error=False: the guard decides (401 without a key, 403 with a wrong one), in the API's
# error shape; declaring both schemes gives Swagger UI its "Authorize" button.
bearer_scheme = HTTPBearer(auto_error=False, description="VISEARCH_API_KEY as a Bearer token")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="VISEARCH_API_KEY")


def admin_access(
    service: Annotated[Any, Depends(bentoml.get_current_service)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    api_key: Annotated[str | None, Security(api_key_scheme)],
    request: Request,
) -> None:
    """Refuse an admin request without the right API key (a dependency of every admin route).

    It runs before the body is validated, so callers without the key learn nothing about the
    endpoint's input.
    """
    try:
        admin.check_key(
            service.settings.visearch_api_key, admin.presented_key(bearer.credentials if bearer else None, api_key)
        )
    except (UnauthorizedError, ForbiddenError) as exc:
        client = request.client.host if request.client else "?"
        logger.warning("admin request %s %s from %s refused: %s", request.method, request.url.path, client, exc)
        raise


@web.exception_handler(UnauthorizedError)
@web.exception_handler(ForbiddenError)
def access_refused(request: Request, exc: Exception) -> JSONResponse:
    """Answer a refused admin request in the API's error shape; a 401 asks for a Bearer token."""
    response = error_response(exc)
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


ADMIN = {
    "responses": errors(400, 401, 403, 404, 409, 422, 502, 503),
    "tags": ["Admin"],
    "dependencies": [Depends(admin_access)],
}


# BentoML runs sync APIs in one thread unless told otherwise: one request waiting on an engine
# (up to ENGINE_* deadlines) would queue every other /search behind it.
THREADS = 16


# BentoML's OpenTelemetry middleware makes a span per request and wraps every receive and send,
# though no span leaves the process unless an exporter is configured: 0.3-0.5 ms of a ~3 ms
# /search_raw (benchmarks/results/latency.md). So every URL is excluded by default; to trace, set
# the service's tracing exporter_type and sample_rate and `excluded_urls: null` (README, Configuration).
TRACING = {"excluded_urls": ["."]}


@bentoml.service(
    name="visearch", workers=1, threads=THREADS, traffic={"timeout": 120, "concurrency": 32}, tracing=TRACING
)
@bentoml.asgi_app(web, path="/")
class Visearch:
    """Category-based visual similarity search."""

    def __init__(self) -> None:
        self.settings = Settings()
        keep_temp_files_in_home(self.settings)  # uploads stay inside the data home

        from ui.app import mount_ui  # after the line above: gradio reads GRADIO_TEMP_DIR at import

        self.runtime = Runtime(self.settings)
        if not self.runtime.ready():
            logger.warning("visearch not ready yet: %s", self.runtime.last_error)
        # Mounted here, not at import: the UI's category buttons come from the loaded registry.
        mount_ui(web, self.runtime)

    def __is_ready__(self) -> bool:
        """/readyz: ready once the registry and the index open."""
        return self.runtime.ready()

    @bentoml.on_shutdown
    def close(self) -> None:
        """Close the runtime and its engines when the service shuts down."""
        self.runtime.close()

    def _answer(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error, never a traceback
            return error_response(exc)

    def _query(self, category: str, call: Callable[[Any], Any]) -> Any:
        """Run ``call(engine)`` for a registry category; an unknown one is a 404 before any option is judged."""

        def run(engine: Any) -> Any:
            engine.registry.get(category)
            return call(engine)

        return self._answer(lambda: self.runtime.run(run))

    # --- POST endpoints (BentoML APIs) ---------------------------------------------------
    @api("/search", errors=QUERY_ERRORS, input_spec=SearchInput)
    def search(self, image: Path, category: str, **options: Any) -> SearchResponse:
        """Images of the category most similar to an uploaded image; with `text` hybrid (image and captions)."""

        def call(engine: Any) -> SearchResponse:
            data = read_upload(image, self.settings.max_upload_bytes)
            return SearchResponse.of(category, engine.search(category, data, **options))

        return self._query(category, call)  # type: ignore[no-any-return]

    @api("/embed", errors=(400,), input_spec=EmbedInput, batchable=True, max_batch_size=32, max_latency_ms=10_000)
    def embed(self, requests: list[EmbedRequest]) -> list[EmbedOutcome]:
        """Embedding vectors of images (BentoML adaptive batching), each with the model version that made it.

        Concurrent calls are merged into one forward pass per category. One outcome per
        request item; a bad image fails only its own item (status and error in the outcome).
        """
        try:
            outcomes = self.runtime.run(
                lambda engine: engine.embed_many_versioned([(r.category, r.image) for r in requests])
            )
        except Exception as exc:  # noqa: BLE001 - e.g. the engine is unavailable: every item says so
            outcomes = [exc] * len(requests)
        return [EmbedOutcome.of(outcome) for outcome in outcomes]

    @api("/search_by_id", errors=(400, 404, 503), input_spec=ByIdInput)
    def search_by_id(self, category: str, point_id: str, **options: Any) -> SearchResponse:
        """More like this: the neighbours of a stored image, the image itself excluded (never "unusual")."""

        def call(engine: Any) -> SearchResponse:
            text = options.pop("text", None)
            if text:  # the stored image as the one positive example, fused with the caption text
                return SearchResponse.of(category, engine.recommend(category, [point_id], text=text, **options))
            return SearchResponse.of(category, engine.similar(category, point_id, **options))

        return self._query(category, call)  # type: ignore[no-any-return]

    @api("/search_batch", errors=QUERY_ERRORS, input_spec=BatchInput)
    def search_batch(self, images: list[Path], category: str, **options: Any) -> BatchResponse:
        """Several query images in one request, embedded as one batch."""

        def call(engine: Any) -> BatchResponse:
            check_batch(len(images), self.settings.max_batch_images)
            datas = [read_upload(path, self.settings.max_upload_bytes) for path in images]
            answers = engine.search_many(category, datas, **options)
            return BatchResponse(
                category=category,
                results=[[Result.of(category, r) for r in answer.results] for answer in answers],
                notices=[answer.notice for answer in answers],
                next_offsets=[answer.next_offset for answer in answers],
                model_version=answers[0].model_version,
                score_kind=answers[0].score_kind,
            )

        return self._query(category, call)  # type: ignore[no-any-return]

    @api("/search_text", errors=(400, 404, 503), input_spec=TextInput)
    def search_text(self, category: str, text: str, **options: Any) -> SearchResponse:
        """Images whose caption columns hold the words of `text` (BM25 over the category's captions)."""
        return self._query(  # type: ignore[no-any-return]
            category, lambda engine: SearchResponse.of(category, engine.search_text(category, text, **options))
        )

    @api("/search_vector", errors=(400, 404, 409, 503), input_spec=VectorInput)
    def search_vector(self, category: str, vector: list[float], model_version: str, **options: Any) -> SearchResponse:
        """Neighbours of a vector from /embed: refused (409) if another model made it, (400) of another dimension."""

        def call(engine: Any) -> SearchResponse:
            answer = engine.vector_search(category, vector, model_version=model_version, **options)
            return SearchResponse.of(category, answer)

        return self._query(category, call)  # type: ignore[no-any-return]

    @api("/recommend", errors=QUERY_ERRORS, input_spec=RecommendInput)
    def recommend(
        self,
        category: str,
        positive: list[str],
        negative: list[str],
        positive_images: list[Path],
        negative_images: list[Path],
        **options: Any,
    ) -> SearchResponse:
        """More like the positive examples, less like the negative ones (stored ids and/or uploaded images).

        Qdrant's recommend query, strategy best_score: a point scores by its similarity to the
        closest positive and is penalised when a negative is closer than every positive. The
        stored examples never come back. JSON when only ids are sent; multipart with images.
        """

        def call(engine: Any) -> SearchResponse:
            limit = self.settings.max_upload_bytes
            liked = [read_upload(p, limit) for p in positive_images]
            unliked = [read_upload(p, limit) for p in negative_images]
            answer = engine.recommend(category, positive, negative, liked, unliked, **options)
            return SearchResponse.of(category, answer)

        return self._query(category, call)  # type: ignore[no-any-return]

    @web.post(
        "/search_raw",
        response_model=SearchResponse,
        responses=errors(400, 404, 413, 422, 503),
        tags=["Service APIs"],
        openapi_extra={"requestBody": RAW_IMAGE_BODY},
    )
    async def search_raw(
        self,
        request: Request,
        category: Annotated[str, Query(max_length=100, description="Category name from GET /categories")],
        k: Annotated[
            int,
            Query(
                description="Number of results (1 to the server's max_k)",
                json_schema_extra={"minimum": 1, FROM_SETTINGS: {"maximum": "max_k"}},
            ),
        ] = 10,
        min_similarity: Annotated[float, Query(ge=0, le=100, description="Minimum similarity in percent")] = 0.0,
        class_filter: Annotated[str | None, Query(max_length=200, description="Only results of this class")] = None,
    ) -> Any:
        """/search with the image as the raw body (``Content-Type: image/png`` ...) and the options in the query.

        No multipart parsing and no spooled upload: the cheapest way to send one image.
        """
        try:
            data = await read_body(request, self.settings.max_upload_bytes)
        except ImageTooLargeError as exc:
            return error_response(exc)

        def call(engine: Any) -> SearchResponse:
            options = {"k": k, "min_similarity": min_similarity, "class_filter": class_filter}
            return SearchResponse.of(category, engine.search(category, data, **options))

        # In a worker thread like BentoML's sync APIs: a query waiting on an engine must not block the loop.
        return await run_in_threadpool(self._query, category, call)

    # --- GET endpoints (FastAPI, in the same OpenAPI document) ---------------------------
    @web.get("/categories", response_model=list[Category], responses=GET_ERRORS, tags=["Service APIs"])
    def categories(self) -> Any:
        """Every category: title, business usage, credits, indexed images, filterable and caption columns."""
        return self._answer(
            lambda: self.runtime.run(lambda e: [Category.of(info, e.registry) for info in e.categories()])
        )

    @web.get(
        "/categories/{category}/examples", response_model=list[Result], responses=GET_ERRORS, tags=["Service APIs"]
    )
    def examples(
        self,
        category: Annotated[str, PathParam(max_length=100)],
        limit: Annotated[int, Query(ge=1, le=100)] = 12,
    ) -> Any:
        """A few stored images of the category (ids to try /search_by_id with)."""
        return self._answer(
            lambda: [Result.of(category, r) for r in self.runtime.run(lambda e: e.examples(category, limit))]
        )

    @web.get(
        "/images/{category}/{point_id}",
        response_class=Response,
        responses={200: {"content": {"image/*": {}}, "description": "The image file"}, **GET_ERRORS},
        tags=["Service APIs"],
    )
    def image(
        self,
        category: Annotated[str, PathParam(max_length=100)],
        point_id: Annotated[str, PathParam(max_length=100)],
    ) -> Response:
        """The stored image of a point, as uploaded to the dataset."""

        def call() -> Response:
            data, payload = self.runtime.run(lambda e: e.image(category, point_id))
            media_type = mimetypes.guess_type(str(payload.get("image_key", "")))[0] or "application/octet-stream"
            headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
            return Response(data, media_type=media_type, headers=headers)

        return self._answer(call)

    @web.get(
        "/categories/{category}/facets/{column}",
        response_model=list[Facet],
        responses=GET_ERRORS,
        tags=["Service APIs"],
    )
    def facets(
        self,
        category: Annotated[str, PathParam(max_length=100)],
        column: Annotated[str, PathParam(max_length=100)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        """Values of a keyword column in the live index with their counts, most frequent first (filter controls)."""
        return self._query(
            category,
            lambda e: [Facet(value=value, count=count) for value, count in e.facets(category, column, limit=limit)],
        )

    @web.get("/duplicates/{category}", response_model=DuplicatesResponse, responses=GET_ERRORS, tags=["Service APIs"])
    def duplicates(
        self,
        category: Annotated[str, PathParam(max_length=100)],
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Any:
        """Near-duplicate pairs of the live index (cosine above the category's threshold), a page at a time."""
        return self._query(
            category, lambda e: DuplicatesResponse.of(category, e.duplicates(category, offset=offset, limit=limit))
        )

    # --- admin endpoints (API key required; see visearch.admin) -------------------------------
    def _admin(self, category: str, call: Callable[[Any], Any]) -> Any:
        def run(engine: Any) -> Any:
            engine.registry.get(category)  # unknown category: 404
            return call(engine.index)

        return self._answer(lambda: self.runtime.run(run))

    @web.get("/admin/index", response_model=IndexState, **ADMIN)
    def admin_index(self, category: Annotated[str, Query(max_length=100)]) -> Any:
        """The category's index versions with their point counts, and which one is live."""
        return self._admin(category, lambda index: IndexState(**admin.index_state(index, category)))

    @web.post("/admin/rollback", response_model=RollbackResult, **ADMIN)
    def admin_rollback(self, body: RollbackRequest) -> Any:
        """Point the category at its previous index version; the next query uses it and its model."""

        def call(index: Any) -> RollbackResult:
            tracker = Tracker.from_settings(self.settings)  # MLflow down: 503 before anything moves
            result = RollbackResult(**admin.rollback(index, body.category, to=body.to, tracker=tracker))
            # WARNING, not INFO: an audit line must show, and BentoML passes only WARNING+ of app loggers.
            logger.warning("admin: rolled %s back from %s to %s", body.category, result.previous, result.live)
            return result

        return self._admin(body.category, call)

    @web.post("/admin/delete_version", response_model=DeleteResult, **ADMIN)
    def admin_delete_version(self, body: DeleteRequest) -> Any:
        """Delete an index version that is neither live nor being written (409 for the live one)."""

        def call(index: Any) -> DeleteResult:
            result = DeleteResult(**admin.delete_version(index, body.category, body.collection))
            logger.warning("admin: deleted index version %s", result.deleted)
            return result

        return self._admin(body.category, call)


# Independent of their order: one rewrites answers of status >= 400, the other the 200 of /docs.json.
Visearch.add_asgi_middleware(OpenAPIContract)
Visearch.add_asgi_middleware(ErrorShape)
