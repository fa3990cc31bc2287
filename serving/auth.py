"""The admin API's access and schemas: the API-key guard every ``/admin/*`` route depends on.

The key check itself is the library's (``visearch.admin.check_key``); here it is wired into
FastAPI. Without a configured key every admin request is refused (403); with one, no key is a 401,
a wrong one a 403, each logged and answered in the API's error shape before the body is read.
"""

import logging
from typing import Annotated, Any

import bentoml
from fastapi import Depends, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from serving.contract import CategoryName, errors
from serving.schemas import error_response
from visearch import admin
from visearch.errors import ForbiddenError, UnauthorizedError

logger = logging.getLogger("visearch.service")

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


def access_refused(request: Request, exc: Exception) -> JSONResponse:
    """Answer a refused admin request in the API's error shape; a 401 asks for a Bearer token."""
    response = error_response(exc)
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


# What ``access_refused`` answers: register it for each (``app.add_exception_handler``).
REFUSALS = (UnauthorizedError, ForbiddenError)
# The route options of every admin endpoint: ``@web.get(path, response_model=..., **ADMIN)``.
ADMIN = {
    "responses": errors(400, 401, 403, 404, 409, 422, 502, 503),
    "tags": ["Admin"],
    "dependencies": [Depends(admin_access)],
}


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
