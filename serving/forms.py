"""Request parsing the service adds to BentoML's: multipart forms that never answer 500, and raw bodies.

BentoML reads a multipart body with Starlette's parser and converts its parts itself. Three of its
habits would break the contract (``serving.service``): a malformed body or a part without a
filename answers 500 or refuses an image, a text value in a file field is fetched as a URL, and
every text part is read as JSON (so a caption ``8`` arrives as a number). ``GuardedInput``, the
base of every BentoML input model, parses the form here instead and hands BentoML the values.
A query string (``/search_raw``'s options) is read by the same rules (``query_values``).
"""

import contextlib
import json
import types
import typing
from typing import Any, get_args, get_origin

import bentoml
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import QueryParams, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from visearch.errors import ImageTooLargeError
from visearch.settings import MAX_FORM_FILES

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
    """The fields of a multipart form, as the input model takes them (``field_values``); files stay uploads."""
    data: dict[str, Any] = {}
    texts: dict[str, list[str]] = {}
    for name in dict.fromkeys(form.keys()):
        values = form.getlist(name)
        if name in cls.multipart_fields:
            data[name] = values if get_origin(cls.model_fields[name].annotation) is list else values[0]
            continue
        texts[name] = [
            (await value.read()).decode("utf-8", "replace") if isinstance(value, UploadFile) else value
            for value in values
        ]
    return {**data, **field_values(cls, texts)}


def query_values(model: type[BaseModel], params: QueryParams) -> dict[str, Any]:
    """The parameters of a query string, as ``model`` takes them (``field_values``)."""
    return field_values(model, {name: params.getlist(name) for name in dict.fromkeys(params.keys())})


def field_values(model: type[BaseModel], texts: dict[str, list[str]]) -> dict[str, Any]:
    """Named text values (form parts, query parameters) as ``model``'s fields take them.

    BentoML reads every non-file part as JSON, falling back to the raw text, so a text field
    holding ``8`` or ``true`` arrived as a number or a boolean and was refused. Here a text field
    keeps its text, a list of texts is its repeated values (or one value holding a JSON array),
    and every other field (numbers, booleans, the filter object) is JSON.
    """
    data: dict[str, Any] = {}
    for name, values in texts.items():
        field = model.model_fields.get(name)
        kind = text_kind(field.annotation) if field else None
        if kind == "str":
            data[name] = values[-1]
        elif kind == "list":
            data[name] = values
            if len(values) == 1:
                with contextlib.suppress(ValueError):
                    parsed = json.loads(values[0])
                    if isinstance(parsed, list):
                        data[name] = parsed
        else:
            try:
                data[name] = json.loads(values[-1])
            except ValueError:
                data[name] = values[-1]
    return data


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
