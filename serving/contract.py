"""The HTTP contract of the service: shared field types, the error statuses, and two ASGI layers.

The OpenAPI document (/docs.json) must state exactly what the server accepts and answers. FastAPI
routes declare it themselves (``responses=errors(...)``); BentoML generates its APIs' part with fixed
error responses and no body requirement, so ``OpenAPIContract`` completes that part when the
document is served, and fills in the limits that come from ``Settings`` (max_k, batch size).
``ErrorShape`` gives every error answer, whichever layer sends it (BentoML, FastAPI, Starlette's
router), the documented ``ErrorBody`` JSON.
"""

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Annotated, Any

import bentoml
from pydantic import Base64Bytes, BaseModel, Field, WithJsonSchema

# A schema holding this key takes the named Settings values when the document is served, e.g.
# {"maximum": "max_k"}: the limit is configuration, so the document follows the server's own.
FROM_SETTINGS = "x-visearch-settings"
# Media types an uploaded image may have (what Pillow decodes here); stated as the multipart
# encoding of every file field, so clients (and schemathesis) know a file field holds an image.
IMAGE_MEDIA_TYPES = "image/png, image/jpeg, image/webp, image/gif, image/bmp, image/tiff"

CategoryName = Annotated[str, Field(description="Category name from GET /categories", max_length=100)]
# The library checks k against Settings.max_k (one rule for REST, UI and CLI, with its own message),
# so the bounds here are documentation only.
K = Annotated[
    int,
    Field(
        description="Number of results (1 to the server's max_k)",
        json_schema_extra={"minimum": 1, FROM_SETTINGS: {"maximum": "max_k"}},
    ),
]
MinSimilarity = Annotated[float, Field(description="Minimum similarity in percent", ge=0, le=100)]
ClassFilter = Annotated[str | None, Field(description="Only results of this class", max_length=200)]
# Qdrant's own filter JSON over the category's filterable columns (GET /categories lists them);
# checked by visearch.index.filters, which names the wrong place in its 400.
Filter = Annotated[
    dict[str, Any] | None,
    Field(
        description=(
            "Qdrant filter JSON: must / should / must_not lists of conditions "
            '({"key": column, "match": {"value" | "any" | "except" | "text": ...}} or '
            '{"key": column, "range": {"gte", "gt", "lte", "lt": number}}), nested filters allowed '
            "(3 levels, 32 conditions); in a multipart form or a query string a JSON string"
        )
    ),
]
Text = Annotated[
    str | None,
    Field(
        description="Caption words: alone BM25 over the caption columns, with an image hybrid (RRF of both)",
        max_length=500,
    ),
]
# The library refuses offset + k over MAX_WINDOW with its own message; the bound here is documentation.
Offset = Annotated[int, Field(description="Results to skip (paging; the answer's next_offset)", ge=0, le=9_999)]
Diverse = Annotated[bool, Field(description="Re-rank for variety: MMR, diversity 0.5 over the nearest 4,000")]
GroupByClass = Annotated[bool, Field(description="The best hit of each class, best first (one page, no offset)")]
PointId = Annotated[str, Field(description="Id of a stored image (a result's `id`)", max_length=100)]
# OpenAPI 3.0 names base64 text ``format: byte`` (pydantic would say "base64", which clients ignore).
Base64Image = Annotated[
    Base64Bytes, WithJsonSchema({"type": "string", "format": "byte", "description": "An image file, base64-encoded"})
]


class ErrorBody(BaseModel):
    """The error answer of every endpoint: a message and the HTTP status."""

    error: str
    status: int


MEANINGS: dict[int, str] = {
    400: "Invalid request: a field out of range, a body that does not parse, or an image that does not decode",
    401: "No API key sent",
    403: "Wrong API key, or admin endpoints disabled (VISEARCH_API_KEY unset)",
    404: "Unknown category, id, version or index",
    409: "The version is live or being written, or a vector was made by another model version than the live one",
    413: "Upload larger than the server's max_upload_bytes",
    422: "A query parameter or body field fails validation",
    502: "MLflow refused the request",
    503: "An engine (index, object store, MLflow) is unavailable; retry shortly",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` for these error statuses, each answering ``ErrorBody`` JSON."""
    return {code: {"model": ErrorBody, "description": MEANINGS[code]} for code in codes}


def openapi_errors(codes: tuple[int, ...]) -> dict[str, Any]:
    """The OpenAPI ``responses`` entries of these error statuses (the form FastAPI would emit)."""
    schema = {"$ref": "#/components/schemas/ErrorBody"}
    return {
        str(code): {"description": MEANINGS[code], "content": {"application/json": {"schema": schema}}}
        for code in codes
    }


# Route -> error statuses of each BentoML API; filled by ``api`` as the service class is defined.
API_ERRORS: dict[str, tuple[int, ...]] = {}


def api(route: str, *, errors: tuple[int, ...], **options: Any) -> Callable[[Any], Any]:
    """``bentoml.api`` that also records the error statuses the route can send, for the document."""
    API_ERRORS[route] = errors
    return bentoml.api(route=route, **options)  # type: ignore[no-any-return]


def contract_document(document: dict[str, Any], settings: Any) -> dict[str, Any]:
    """BentoML's OpenAPI document made exact.

    Its APIs' bodies become required, their error answers the real ones, file fields images, and
    every ``FROM_SETTINGS`` marker the value of ``settings``.
    """
    for path, item in document.get("paths", {}).items():
        operation = item.get("post", {})
        if path in API_ERRORS and "x-bentoml-name" in operation:
            operation["responses"] = {"200": operation["responses"]["200"], **openapi_errors(API_ERRORS[path])}
            body = operation.get("requestBody", {})
            body["required"] = True
            for media_type, content in body.get("content", {}).items():
                if media_type == "multipart/form-data":
                    properties = content.get("schema", {}).get("properties", {})
                    encoding = content.setdefault("encoding", {})
                    for name, schema in properties.items():
                        if "binary" in (schema.get("format"), schema.get("items", {}).get("format")):
                            encoding[name] = file_part(name)
                        elif is_text(schema):  # the server keeps a text part's text (BentoML says JSON)
                            encoding[name] = {"contentType": "text/plain"}
    ready = document.get("paths", {}).get("/readyz", {}).get("get")
    if ready:
        ready["responses"].update(openapi_errors((503,)))
    document.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = ErrorBody.model_json_schema()
    _fill_settings(document, settings)
    return document


def is_text(schema: dict[str, Any]) -> bool:
    """Whether a form field's schema is a string, an optional string or a list of strings (repeated parts)."""
    options = [option for option in schema.get("anyOf", [schema]) if option.get("type") != "null"]
    return len(options) == 1 and "string" in (options[0].get("type"), options[0].get("items", {}).get("type"))


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The OpenAPI query parameters of ``model``'s fields, with the schemas its body form has.

    An optional field's schema is its type's, as BentoML documents a form field (an absent
    parameter is the null). A field holding an object (the filter) is JSON text in the query
    string: a ``content`` parameter, so clients send JSON rather than one parameter per key.
    """
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = []
    for name, property_ in schema["properties"].items():
        field = dict(property_)  # its null option dropped:
        field.update(next(option for option in field.pop("anyOf", [{}]) if option.get("type") != "null"))
        if field.get("default", ...) is None:  # no value to state (FastAPI's document drops a null anyway)
            del field["default"]
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        parameter["description"] = field.get("description", "")
        if field.get("type") == "object":
            parameter["content"] = {"application/json": {"schema": field}}
        else:
            parameter["schema"] = field
        parameters.append(parameter)
    return parameters


def file_part(name: str) -> dict[str, Any]:
    """The multipart encoding of a file field: an image, sent as a file part (a part with a filename).

    A part without a filename is a text field to the server (Starlette), never an upload.
    """
    disposition = f'form-data; name="{name}"; filename="image.png"'
    return {
        "contentType": IMAGE_MEDIA_TYPES,
        "headers": {"Content-Disposition": {"required": True, "schema": {"type": "string"}, "example": disposition}},
    }


def _fill_settings(node: Any, settings: Any) -> None:
    if isinstance(node, dict):
        for key, name in node.pop(FROM_SETTINGS, {}).items():
            node[key] = getattr(settings, name)
        for value in node.values():
            _fill_settings(value, settings)
    elif isinstance(node, list):
        for value in node:
            _fill_settings(value, settings)


Rewrite = Callable[[int, bytes], bytes]


async def rewrite_body(
    app: Any, scope: Any, receive: Any, send: Any, when: Callable[[int], bool], rewrite: Rewrite
) -> None:
    """Run ``app``, replacing the body of an answer whose status passes ``when`` by ``rewrite(status, body)`` (JSON)."""
    start: dict[str, Any] | None = None
    chunks: list[bytes] = []

    async def capture(message: dict[str, Any]) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and when(message["status"]):
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = rewrite(start["status"], b"".join(chunks))
        dropped = (b"content-length", b"content-type")
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in dropped]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    await app(scope, receive, capture)


class OpenAPIContract:
    """ASGI middleware: /docs.json as ``contract_document`` makes it, with the running service's Settings."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Pass a request through; complete the OpenAPI document on its way out."""
        if scope["type"] != "http" or scope.get("method") != "GET" or scope.get("path") != "/docs.json":
            await self.app(scope, receive, send)
            return

        def complete(status: int, body: bytes) -> bytes:
            settings = bentoml.get_current_service().settings
            return json.dumps(contract_document(json.loads(body), settings)).encode()

        await rewrite_body(self.app, scope, receive, send, lambda status: status == 200, complete)


class ErrorShape:
    """ASGI middleware: every error answer of the API as ``ErrorBody`` JSON, ``{"error": ..., "status": ...}``.

    BentoML answers validation errors ``{"error": "1 validation error for SearchInput", "detail": [...]}``,
    FastAPI ``{"detail": ...}``, Starlette's router a text/plain "Not Found" (e.g. a path with a
    newline): each becomes one message naming the wrong fields, or the original text. The UI
    (Gradio, not part of this API) keeps its own answers.
    """

    def __init__(self, app: Any, exempt: tuple[str, ...] = ("/ui",)) -> None:
        self.app = app
        self.exempt = exempt

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Pass a request through, rewriting the body of a 4xx/5xx answer into the API's error shape."""
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") == "HEAD" or path.startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        await rewrite_body(self.app, scope, receive, send, lambda status: status >= 400, error_body)


def error_body(status: int, body: bytes) -> bytes:
    """Any error answer's body as ``{"error": message, "status": status}`` (unchanged if already so)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = body.decode(errors="replace").strip()
    if isinstance(data, dict) and isinstance(data.get("error"), str) and data.get("status") == status:
        return body
    detail = data.get("detail", data.get("error")) if isinstance(data, dict) else data
    if isinstance(detail, list):  # pydantic errors: say which field is wrong and why
        parts = []
        for item in detail:
            where = ".".join(str(part) for part in item.get("loc", ())) if isinstance(item, dict) else ""
            message = item.get("msg", "invalid") if isinstance(item, dict) else str(item)
            parts.append(f"{where or 'body'}: {message}")
        detail = "; ".join(parts)
    if not detail or not isinstance(detail, str):
        detail = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
    if status == 404 and detail == "Not Found":
        detail = "no such resource; see /docs for the API"
    return json.dumps({"error": detail, "status": status}).encode()
