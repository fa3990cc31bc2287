"""``GET /categories/{category}/images``: a category's live index a page at a time, filtered (no API key).

Beside the living catalogue's writes on the same path (``serving.catalogue``, behind the key), a
read for anyone who may search. One library call (``visearch.browse.browse``) through the server's
``Runtime``; the filter is ``/search``'s, as JSON text in the query string. Out-of-range ``offset``
or ``limit`` and a bad filter are the library's 400s, with its message.
"""

from typing import Annotated, Any

import bentoml
from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from serving.contract import errors
from serving.schemas import error_response
from visearch.browse import DEFAULT_PAGE, MAX_OFFSET, MAX_PAGE, BrowseItem, BrowsePage, browse, filter_from_text
from visearch.runtime import image_url

router = APIRouter(tags=["Service APIs"])
Service = Annotated[Any, Depends(bentoml.get_current_service)]
FILTER_TEXT = (
    "Qdrant filter JSON as in /search (must / should / must_not conditions over the category's filterable "
    'columns), URL-encoded, e.g. {"must": [{"key": "class", "match": {"value": "Bag"}}]}'
)


class BrowseItemOut(BaseModel):
    """One stored image of the category."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str = Field(description="Point id; use it with /search_by_id, /recommend and /images/{category}/{id}")
    class_: str = Field(alias="class", description="Class of the image (meta CSV `class`)")
    label: int | None = Field(description="Integer label of the class (meta CSV `label`)")
    file: str = Field(description="File name in the dataset")
    captions: dict[str, Any] = Field(description="Caption columns of the meta CSV")
    image_url: str = Field(description="GET this (relative to the service root) for the image")

    @classmethod
    def of(cls, category: str, item: BrowseItem) -> "BrowseItemOut":
        """The API form of a library browse item."""
        return cls(
            id=item.id,
            class_=item.cls,
            label=item.label,
            file=item.file,
            captions=item.captions,
            image_url=image_url(category, item.id),
        )


class BrowseResponse(BaseModel):
    """One page of the category's images, in a stable order (the index's point id order)."""

    category: str
    items: list[BrowseItemOut]
    offset: int = Field(description="Matching images before this page")
    limit: int = Field(description="The page size asked for")
    next_offset: int | None = Field(description="The `offset` of the next page; null when this page is the last")
    model_version: str = Field(description="The model of the live index version read")

    @classmethod
    def of(cls, category: str, page: BrowsePage) -> "BrowseResponse":
        """The API form of a library browse page."""
        return cls(
            category=category,
            items=[BrowseItemOut.of(category, item) for item in page.items],
            offset=page.offset,
            limit=page.limit,
            next_offset=page.next_offset,
            model_version=page.model_version,
        )


@router.get("/categories/{category}/images", response_model=BrowseResponse, responses=errors(400, 404, 422, 503))
def browse_images(
    service: Service,
    category: Annotated[str, PathParam(max_length=100, description="Category name from GET /categories")],
    # Ranges documented, checked by the library (a 400 naming the limit, as /search's k).
    offset: Annotated[
        int,
        Query(
            description="Matching images to skip (a page's `next_offset`)",
            json_schema_extra={"minimum": 0, "maximum": MAX_OFFSET},
        ),
    ] = 0,
    limit: Annotated[
        int,
        Query(description=f"Images per page (1 to {MAX_PAGE})", json_schema_extra={"minimum": 1, "maximum": MAX_PAGE}),
    ] = DEFAULT_PAGE,
    filter: Annotated[str | None, Query(max_length=10_000, description=FILTER_TEXT)] = None,
) -> Any:
    """The category's images a page at a time, optionally filtered, in a stable order; `next_offset` pages on."""
    try:
        page = service.runtime.query(
            category,
            lambda engine: browse(engine, category, offset=offset, limit=limit, filter=filter_from_text(filter)),
        )
    except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error, never a traceback
        return error_response(exc)
    return BrowseResponse.of(category, page)
