"""The living catalogue's REST writes: add, replace and remove one image of a live category.

Behind the admin API key (``serving.auth.admin_access``: 401 without a key, 403 with a wrong one)
and audited like the admin writes (a WARNING line per change). Each route reads its multipart form
with ``serving.forms.parse_form`` and makes one library call (``visearch.catalogue_api``) through
the server's ``Runtime``; an unknown category is a 404 before anything else is judged.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import bentoml
from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from serving.auth import admin_access
from serving.contract import errors, file_part
from serving.forms import parse_form
from serving.schemas import error_response
from visearch.catalogue_api import WriteAnswer, parse_row
from visearch.errors import ImageTooLargeError, InvalidImageError, InvalidQueryError, VisearchError
from visearch.search import SearchEngine

logger = logging.getLogger("visearch.service")
router = APIRouter(tags=["Catalogue"], dependencies=[Depends(admin_access)])
Service = Annotated[Any, Depends(bentoml.get_current_service)]
Category = Annotated[str, PathParam(max_length=100, description="Category name from GET /categories")]
PointId = Annotated[str, PathParam(max_length=100, description="The image's `id` (an add's answer, a result's id)")]
WRITE_ERRORS = errors(400, 401, 403, 404, 409, 413, 422, 503)


class NearDuplicateOut(BaseModel):
    """An image already in the category, more similar to the written one than the category's duplicate threshold."""

    id: str
    file: str
    class_: str = Field(alias="class")
    similarity: float = Field(description="Cosine similarity in percent")


class ImageWrite(BaseModel):
    """What a catalogue write did."""

    op: str = Field(description="add, replace or remove")
    id: str = Field(description="The image's point id (the same for the same `file`)")
    file: str = Field(description="Its file name in the category's data (given in the row, or named by content)")
    created: bool = Field(description="False when the same image and row were added before: nothing changed")
    model_version: str = Field(description="The model that embedded it: the live index version's")
    seq: int = Field(description="The category's change-log position after the write")
    data_version: str = Field(description="The category's data version after the write (live data hash + seq)")
    new_class: bool = Field(description="Its class was not seen when the live model was trained")
    near_duplicates: list[NearDuplicateOut] = Field(description="Up to 5 images above the duplicate threshold")


ROW_TEXT = (
    "JSON object text: `class` (required on add), optional `label`, `file`, and the category's caption/filter "
    'columns, e.g. {"class": "Sneaker", "label": 7}'
)


def form_body(required: list[str]) -> dict[str, Any]:
    """The OpenAPI request body of a write: a multipart form with an image file and a row (JSON text)."""
    schema = {
        "type": "object",
        "required": required,
        "properties": {
            "image": {"type": "string", "format": "binary", "description": "The image file"},
            "row": {"type": "string", "description": ROW_TEXT, "maxLength": 10_000},
        },
    }
    encoding = {"image": file_part("image"), "row": {"contentType": "text/plain"}}
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema, "encoding": encoding}}}
    }


@dataclass
class WriteForm:
    """A write's form: the image bytes, the row text, or the reason the form cannot be used (raised in the call)."""

    image: bytes | None = None
    row: str | None = None
    problem: VisearchError | None = None

    def check(self) -> None:
        """Raise the form's problem, if any (after the category was found: unknown categories are 404 first)."""
        if self.problem is not None:
            raise self.problem


async def read_form(request: Request, max_bytes: int) -> WriteForm:
    """The ``image`` and ``row`` fields of a multipart write."""
    kind = request.headers.get("content-type", "").lower()
    if not kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        return WriteForm(problem=InvalidQueryError("body: send multipart/form-data with `image` and/or `row`"))
    try:  # a row alone may come url-encoded (no file part)
        form = await parse_form(request) if kind.startswith("multipart/") else await request.form()
    except (HTTPException, MultiPartException) as exc:
        detail = getattr(exc, "detail", None) or getattr(exc, "message", "")
        return WriteForm(problem=InvalidQueryError(f"body: malformed multipart body: {detail}"))
    result = WriteForm()
    image, row = form.get("image"), form.get("row")
    if isinstance(image, str):
        result.problem = InvalidImageError("image: expected an uploaded file, got a text value")
    elif isinstance(image, UploadFile):
        if image.size is not None and image.size > max_bytes:
            result.problem = ImageTooLargeError(f"image: upload too large: {image.size} bytes (limit {max_bytes})")
        else:
            result.image = await image.read()
    result.row = (await row.read()).decode("utf-8", "replace") if isinstance(row, UploadFile) else row
    return result


def answer(service: Any, category: str, call: Callable[[SearchEngine], WriteAnswer], created: int = 200) -> Response:
    """``call(engine)`` for a registry category, audited; its JSON answer (``created`` for a new add) or error."""
    try:
        done = service.runtime.query(category, call)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error, never a traceback
        return error_response(exc)
    if done.created:
        # WARNING, not INFO: an audit line must show, and BentoML passes only WARNING+ of app loggers.
        logger.warning("catalogue: %s %s (%s) in %s, seq %d", done.op, done.id, done.file, category, done.seq)
    status = created if done.created else 200
    return JSONResponse(ImageWrite.model_validate(done.to_dict()).model_dump(by_alias=True), status_code=status)


@router.post(
    "/categories/{category}/images",
    status_code=201,
    response_model=ImageWrite,
    responses={
        200: {"model": ImageWrite, "description": "The same image and row again: nothing changed"},
        **WRITE_ERRORS,
    },
    openapi_extra=form_body(["image", "row"]),
)
async def add_image(service: Service, request: Request, category: Category) -> Response:
    """Add an image to a live category: searchable at once, kept in every later pipeline run."""
    form = await read_form(request, service.settings.max_upload_bytes)

    def call(engine: SearchEngine) -> WriteAnswer:
        form.check()
        row = parse_row(form.row, required=True)
        if form.image is None:
            raise InvalidImageError("image: required, an image file")
        return service.runtime.catalogues.add(engine, category, form.image, row)

    return await run_in_threadpool(answer, service, category, call, 201)


@router.put(
    "/categories/{category}/images/{point_id}",
    response_model=ImageWrite,
    responses=WRITE_ERRORS,
    openapi_extra=form_body([]),
)
async def replace_image(service: Service, request: Request, category: Category, point_id: PointId) -> Response:
    """Replace an image's bytes and/or row (its row values merge into the current row): vector and payload at once."""
    form = await read_form(request, service.settings.max_upload_bytes)

    def call(engine: SearchEngine) -> WriteAnswer:
        form.check()
        row = parse_row(form.row, required=False)
        return service.runtime.catalogues.replace(engine, category, point_id, form.image, row)

    return await run_in_threadpool(answer, service, category, call)


@router.delete(
    "/categories/{category}/images/{point_id}",
    response_model=ImageWrite,
    responses=errors(400, 401, 403, 404, 422, 503),
)
def remove_image(service: Service, category: Category, point_id: PointId) -> Response:
    """Remove an image: gone from every query at once, and from the category's data."""
    return answer(service, category, lambda engine: service.runtime.catalogues.remove(engine, category, point_id))


@router.api_route(
    "/categories/{category}/images/{point_id}",
    methods=["GET", "HEAD", "POST", "PATCH", "OPTIONS"],
    include_in_schema=False,
)
def other_methods(category: Category, point_id: PointId) -> Response:
    """405 naming both methods: Starlette's own 405 would name only the first route's (PUT)."""
    body = {"error": "Method Not Allowed", "status": 405}
    return JSONResponse(body, status_code=405, headers={"Allow": "PUT, DELETE"})
