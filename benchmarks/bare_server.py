"""The latency baseline: the library query behind a minimal Starlette app on uvicorn.

What a user would write instead of the BentoML service: POST /search with the image as the body
and the options in the query string, the library call in a worker thread (so a slow query does not
block the event loop), the results as JSON. No validation beyond the library's, no middleware.

    uvicorn --factory bare_server:make_app --app-dir benchmarks --port 8000 [--workers 2]
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from visearch.runtime import error_payload, open_engine
from visearch.settings import Settings


def make_app() -> Starlette:
    """The app, with its search engine opened (read-only index, as the service opens it)."""
    engine = open_engine(Settings())

    async def search(request: Request) -> JSONResponse:
        data = await request.body()
        query = request.query_params
        category = query["category"]

        def run() -> list[dict[str, object]]:
            found = engine.search(category, data, k=int(query.get("k", 10))).results
            return [
                {"id": r.id, "score": r.score, "class": r.cls, "file": r.file, "captions": r.captions} for r in found
            ]

        try:
            return JSONResponse({"category": category, "results": await run_in_threadpool(run)})
        except Exception as exc:  # noqa: BLE001 - a benchmark baseline: any failure as JSON
            status, body = error_payload(exc)
            return JSONResponse(body, status_code=status)

    async def ready(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    routes = [Route("/search", search, methods=["POST"]), Route("/readyz", ready)]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        engine.close()

    return Starlette(routes=routes, lifespan=lifespan)
