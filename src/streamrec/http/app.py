"""The Starlette application: routes to :class:`~streamrec.http.service.ReadService` and
:class:`~streamrec.http.intake.EventIntake`, and the process edge that turns errors into
JSON replies.

Read endpoints are plain functions (Starlette runs them in its thread pool: redis-py blocks,
and a slow Redis must not stall the event loop); only ``POST /events`` awaits its body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamrec.errors import DeliveryError, NotFoundError, RedisUnavailableError
from streamrec.http.intake import MAX_BODY_BYTES, EventIntake
from streamrec.http.metrics import exposition
from streamrec.http.problems import RequestError
from streamrec.http.service import ReadService
from streamrec.settings import Settings

logger = logging.getLogger(__name__)

JSON = "application/json"


def create_app(settings: Settings, connection: redis.Redis) -> Starlette:
    """The HTTP API over the state behind ``connection``.

    Args:
        settings: validation rules, ``top_k``, where the models are.
        connection: a redis-py client (thread-safe; shared by every request).
    """
    reads = ReadService(settings, connection)
    intake = EventIntake(settings, connection)

    def recommendations(request: Request) -> Response:
        params = request.query_params
        body = reads.recommendations(
            request.path_params["user"], params.get("model"), params.get("k")
        )
        return Response(body, media_type=JSON)

    def similar(request: Request) -> Response:
        params = request.query_params
        found = reads.similar(request.path_params["item"], params.get("model"), params.get("k"))
        return reply(200, found)

    async def events(request: Request) -> Response:
        body = await _body(request)
        status, found = await run_in_threadpool(intake.submit, body)
        return reply(status, found)

    def healthz(request: Request) -> Response:
        return reply(200, reads.health())

    def metrics(request: Request) -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(intake.close)

    return Starlette(
        routes=[
            Route("/users/{user:path}/recommendations", recommendations, methods=["GET"]),
            Route("/items/{item:path}/similar", similar, methods=["GET"]),
            Route("/events", events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={
            RequestError: _request_error,
            NotFoundError: _not_found,
            RedisUnavailableError: _unavailable,
            DeliveryError: _unavailable,
            redis.RedisError: _unavailable,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )


async def _body(request: Request) -> bytes:
    """The request's body, refused (413) as soon as it grows past ``MAX_BODY_BYTES``."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestError(
                413,
                "body",
                f"over {MAX_BODY_BYTES} bytes",
                f"must be at most {MAX_BODY_BYTES} bytes",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def reply(status: int, payload: Any) -> Response:
    """A JSON reply (strict JSON: no NaN)."""
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode()
    return Response(body, status_code=status, media_type=JSON)


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return reply(exc.status, exc.to_dict())


async def _not_found(request: Request, exc: Exception) -> Response:
    return reply(404, {"error": str(exc)})


async def _unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("http %s %s: %s", request.method, request.url.path, exc)
    return reply(503, {"error": f"Redis is unavailable: {exc}"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return reply(exc.status_code, {"error": exc.detail})


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.error("http %s %s failed", request.method, request.url.path, exc_info=exc)
    return reply(500, {"error": f"internal error ({type(exc).__name__}); see the server log"})
