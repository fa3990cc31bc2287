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
``Runtime``, its answer translated by a schema of ``serving.schemas``; errors become
``{"error": ..., "status": ...}`` JSON with a 4xx (or 503) status. Multipart parsing lives in
``serving.forms``, the admin guard in ``serving.auth``.

One worker unless ``SERVE_WORKERS`` says more (``visearch serve`` passes it to BentoML); within it the
library runs one single-threaded forward per core and merges concurrent queries of one model into
one forward (``visearch.batcher``), and BentoML's adaptive batching (/embed) merges /embed calls. Requests run in up to ``THREADS`` threads (a
request waiting on an engine holds only its own; the library serialises forward passes alone), so
one stuck on an engine never holds up the others. The embedded index opens read-only here, so
pipelines and the CLI use the same data home meanwhile.
"""

import gc
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import bentoml
from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from serving.auth import (
    ADMIN,
    REFUSALS,
    DeleteRequest,
    DeleteResult,
    IndexState,
    RollbackRequest,
    RollbackResult,
    access_refused,
)
from serving.browse import router as browse_router
from serving.catalogue import router as catalogue_router
from serving.contract import ErrorShape, OpenAPIContract, api, errors, query_parameters
from serving.forms import query_values, read_body
from serving.schemas import (
    GET_ERRORS,
    QUERY_ERRORS,
    RAW_IMAGE_BODY,
    BatchInput,
    BatchResponse,
    ByIdInput,
    CategoryOut,
    DuplicatesResponse,
    EmbedInput,
    EmbedOutcome,
    EmbedRequest,
    Facet,
    RecommendInput,
    Result,
    SearchInput,
    SearchQuery,
    SearchResponse,
    TextInput,
    VectorInput,
    error_response,
    validation_response,
)
from visearch import __version__, admin
from visearch.errors import ImageTooLargeError
from visearch.index import VectorIndex
from visearch.runtime import Runtime, keep_temp_files_in_home, read_upload, read_uploads, stored_image
from visearch.search import SearchEngine
from visearch.settings import Settings

logger = logging.getLogger("visearch.service")
web = FastAPI(title="visearch", version=__version__)
for refusal in REFUSALS:
    web.add_exception_handler(refusal, access_refused)
web.include_router(catalogue_router)  # POST/PUT/DELETE /categories/{category}/images: the living catalogue
web.include_router(browse_router)  # GET /categories/{category}/images: browse, no key
IMAGE_HEADERS = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}

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
        self.runtime.catch_up()  # writes a crash left between change record and index write
        # Mounted here, not at import: the UI's category buttons come from the loaded registry.
        mount_ui(web, self.runtime)
        # What start-up made (~600k objects: torch, gradio, BentoML) lives as long as the worker; left
        # to the collector, each full collection walked them all, a 0.3-0.4 s pause of every request
        # (p99 at 8 clients 560 ms against 64 ms, benchmarks/results/load.md). Frozen, it walks the rest.
        gc.freeze()

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

    def _query(self, category: str, call: Callable[[SearchEngine], Any]) -> Any:
        """``call(engine)`` for a registry category (an unknown one is a 404 first), or its JSON error."""
        return self._answer(lambda: self.runtime.query(category, call))

    def _read(self, path: Path) -> bytes:
        """The bytes of an uploaded file (413 past the upload limit)."""
        return read_upload(path, self.settings.max_upload_bytes)

    # --- POST endpoints (BentoML APIs) ---------------------------------------------------
    @api("/search", errors=QUERY_ERRORS, input_spec=SearchInput)
    def search(self, image: Path, category: str, **options: Any) -> SearchResponse:
        """Images of the category most similar to an uploaded image; with `text` hybrid (image and captions)."""
        return self._query(  # type: ignore[no-any-return]
            category, lambda e: SearchResponse.of(category, e.search(category, self._read(image), **options))
        )

    @api("/embed", errors=(400,), input_spec=EmbedInput, batchable=True, max_batch_size=32, max_latency_ms=10_000)
    def embed(self, requests: list[EmbedRequest]) -> list[EmbedOutcome]:
        """Embedding vectors of images (BentoML adaptive batching), each with the model version that made it.

        Concurrent calls are merged into one forward pass per category. One outcome per
        request item; a bad image fails only its own item (status and error in the outcome).
        """
        try:
            outcomes = self.runtime.run(lambda e: e.embed_many_versioned([(r.category, r.image) for r in requests]))
        except Exception as exc:  # noqa: BLE001 - e.g. the engine is unavailable: every item says so
            outcomes = [exc] * len(requests)
        return [EmbedOutcome.of(outcome) for outcome in outcomes]

    @api("/search_by_id", errors=(400, 404, 503), input_spec=ByIdInput)
    def search_by_id(self, category: str, point_id: str, **options: Any) -> SearchResponse:
        """More like this: the neighbours of a stored image, the image itself excluded (never "unusual")."""
        return self._query(  # type: ignore[no-any-return]
            category, lambda e: SearchResponse.of(category, e.search_by_id(category, point_id, **options))
        )

    @api("/search_batch", errors=QUERY_ERRORS, input_spec=BatchInput)
    def search_batch(self, images: list[Path], category: str, **options: Any) -> BatchResponse:
        """Several query images in one request, embedded as one batch."""

        def call(engine: SearchEngine) -> BatchResponse:
            limits = {"max_bytes": self.settings.max_upload_bytes, "max_count": self.settings.max_batch_images}
            return BatchResponse.of(category, engine.search_batch(category, read_uploads(images, **limits), **options))

        return self._query(category, call)  # type: ignore[no-any-return]

    @api("/search_text", errors=(400, 404, 503), input_spec=TextInput)
    def search_text(self, category: str, text: str, **options: Any) -> SearchResponse:
        """Images whose caption columns hold the words of `text` (BM25 over the category's captions)."""
        return self._query(  # type: ignore[no-any-return]
            category, lambda e: SearchResponse.of(category, e.search_text(category, text, **options))
        )

    @api("/search_vector", errors=(400, 404, 409, 503), input_spec=VectorInput)
    def search_vector(self, category: str, vector: list[float], model_version: str, **options: Any) -> SearchResponse:
        """Neighbours of a vector from /embed: refused (409) if another model made it, (400) of another dimension."""

        def call(engine: SearchEngine) -> SearchResponse:
            return SearchResponse.of(
                category, engine.vector_search(category, vector, model_version=model_version, **options)
            )

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

        def call(engine: SearchEngine) -> SearchResponse:
            liked, unliked = [self._read(p) for p in positive_images], [self._read(p) for p in negative_images]
            return SearchResponse.of(
                category, engine.recommend(category, positive, negative, liked, unliked, **options)
            )

        return self._query(category, call)  # type: ignore[no-any-return]

    @web.post(
        "/search_raw",
        response_model=SearchResponse,
        responses=errors(400, 404, 413, 503),
        tags=["Service APIs"],
        openapi_extra={"requestBody": RAW_IMAGE_BODY, "parameters": query_parameters(SearchQuery)},
    )
    async def search_raw(self, request: Request) -> Any:
        """/search with the image as the raw body (``Content-Type: image/png`` ...) and its options in the query.

        No multipart parsing and no spooled upload: the cheapest way to send one image. The
        options are /search's (``SearchQuery``), read by the same rules and refused with the same 400s.
        """
        try:
            query = SearchQuery.model_validate(query_values(SearchQuery, request.query_params))
            data = await read_body(request, self.settings.max_upload_bytes)
        except ValidationError as exc:
            return validation_response(exc)
        except ImageTooLargeError as exc:
            return error_response(exc)
        options = query.model_dump()
        category = options.pop("category")

        def call(engine: SearchEngine) -> SearchResponse:
            return SearchResponse.of(category, engine.search(category, data, **options))

        # In a worker thread like BentoML's sync APIs: a query waiting on an engine must not block the loop.
        return await run_in_threadpool(self._query, category, call)

    # --- GET endpoints (FastAPI, in the same OpenAPI document) ---------------------------
    @web.get("/categories", response_model=list[CategoryOut], responses=GET_ERRORS, tags=["Service APIs"])
    def categories(self) -> Any:
        """Every category: texts, indexed images, columns, and the changes made since its model was trained."""

        def call(e: SearchEngine) -> list[CategoryOut]:
            changes = self.runtime.catalogues.changes_now
            return [CategoryOut.of(info, e.registry, changes(e, info.name)) for info in e.categories()]

        return self._answer(lambda: self.runtime.run(call))

    @web.get(
        "/categories/{category}/examples", response_model=list[Result], responses=GET_ERRORS, tags=["Service APIs"]
    )
    def examples(
        self,
        category: Annotated[str, PathParam(max_length=100)],
        limit: Annotated[int, Query(ge=1, le=100)] = 12,
    ) -> Any:
        """A few stored images of the category (ids to try /search_by_id with)."""
        return self._answer(lambda: Result.many(category, self.runtime.run(lambda e: e.examples(category, limit))))

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
            data, media_type = self.runtime.run(lambda e: stored_image(e, category, point_id))
            return Response(data, media_type=media_type, headers=IMAGE_HEADERS)

        return self._answer(call)  # type: ignore[no-any-return]

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
    def _admin(self, category: str, call: Callable[[VectorIndex], Any]) -> Any:
        """``call(index)`` for a registry category (an unknown one is a 404 first), or its JSON error."""
        return self._query(category, lambda engine: call(engine.index))

    @web.get("/admin/index", response_model=IndexState, **ADMIN)
    def admin_index(self, category: Annotated[str, Query(max_length=100)]) -> Any:
        """The category's index versions with their point counts, and which one is live."""
        return self._admin(category, lambda index: IndexState(**admin.index_state(index, category)))

    @web.post("/admin/rollback", response_model=RollbackResult, **ADMIN)
    def admin_rollback(self, body: RollbackRequest) -> Any:
        """Point the category at its previous index version; the next query uses it and its model."""

        def call(index: VectorIndex) -> RollbackResult:
            result = RollbackResult(**admin.rollback_tracked(index, self.settings, body.category, to=body.to))
            # WARNING, not INFO: an audit line must show, and BentoML passes only WARNING+ of app loggers.
            logger.warning("admin: rolled %s back from %s to %s", body.category, result.previous, result.live)
            return result

        return self._admin(body.category, call)

    @web.post("/admin/delete_version", response_model=DeleteResult, **ADMIN)
    def admin_delete_version(self, body: DeleteRequest) -> Any:
        """Delete an index version that is neither live nor being written (409 for the live one)."""

        def call(index: VectorIndex) -> DeleteResult:
            result = DeleteResult(**admin.delete_version(index, body.category, body.collection))
            logger.warning("admin: deleted index version %s", result.deleted)
            return result

        return self._admin(body.category, call)


# Independent of their order: one rewrites answers of status >= 400, the other the 200 of /docs.json.
Visearch.add_asgi_middleware(OpenAPIContract)
Visearch.add_asgi_middleware(ErrorShape)
