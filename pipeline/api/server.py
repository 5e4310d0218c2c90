"""The HTTP API as one ASGI application: the WebUI's dialect under ``/sdapi/v1``, nanke's own JSON
API under ``/api/v1``, OpenAPI docs at ``/docs``.

Every route needs an API key (:mod:`pipeline.api.auth`). Errors are answered the way FastAPI
answers a bad field, whatever raised them: 422 with the field's name in ``detail[].loc`` for a
value nanke will not run (the WebUI's name under ``/sdapi``), 403 for a prompt the content rules
refuse, 404 for a job the key cannot see, 413 for a body over ``NANKE_API_MAX_BODY_MB``, 429 for
a full queue or the key's rate, and 500 with a short reason for a failure of nanke's own.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.api.auth import RateLimiter
from pipeline.api.progress import ProgressHub
from pipeline.api.webui_translate import webui_field
from pipeline.domain.models.catalog import ModelCatalog
from pipeline.domain.models.resources import Resources
from pipeline.domain.prompt.styles import StyleFile
from pipeline.errors import (
    Banned,
    ContentRefused,
    DailyLimitReached,
    InvalidRequest,
    JobNotFound,
    NotCancellable,
    NotPermitted,
    PipelineError,
    QueueFull,
)
from pipeline.queue.jobs.asynchronous import AsyncJobs

log = logging.getLogger(__name__)

STATUS_OF: tuple[tuple[type[PipelineError], int], ...] = (
    (JobNotFound, 404),
    (NotPermitted, 403),
    (Banned, 403),
    (ContentRefused, 403),
    (QueueFull, 429),
    (DailyLimitReached, 429),
    (NotCancellable, 409),
)
"""The HTTP status of each error a request can cause (in this order; others are 400)."""


@dataclass
class ApiContext:
    """What the routes work with, built once by :func:`build_api`."""

    jobs: AsyncJobs
    hub: ProgressHub
    catalog: ModelCatalog
    limiter: RateLimiter
    max_pixels: int
    cache_dir: Path | None
    styles: StyleFile = field(default_factory=lambda: StyleFile(None))
    resources: Resources = field(default_factory=Resources.none)
    """The LoRA, embedding and VAE folders (``/sdapi/v1/loras``)."""
    """The prompt styles of ``--style`` and the WebUI's ``styles`` field."""


def build_api(context: ApiContext, *, max_body_bytes: int) -> ASGIApp:
    """The API application (wrapped in the request-body limit)."""
    from pipeline.api.native import router as native
    from pipeline.api.webui import router as webui

    api = FastAPI(
        title="nanke",
        summary="nanke's queue, history and models over HTTP: the AUTOMATIC1111 WebUI's API and its own.",
        version="1",
    )
    api.state.nanke = context
    api.include_router(webui)
    api.include_router(native)
    api.add_exception_handler(PipelineError, _pipeline_error)  # type: ignore[arg-type]
    api.add_exception_handler(Exception, _unexpected)
    return BodyLimit(api, max_bytes=max_body_bytes)


async def _pipeline_error(request: Request, error: PipelineError) -> JSONResponse:
    if isinstance(error, InvalidRequest):
        name = webui_field(error.field) if request.url.path.startswith("/sdapi/") else error.field
        detail = [
            {
                "loc": ["body", *name.split(".")],
                "msg": str(error),
                "type": "value_error",
                "input": error.shown,
            }
        ]
        return JSONResponse({"detail": detail}, status_code=422)
    status = next((code for kind, code in STATUS_OF if isinstance(error, kind)), 400)
    return JSONResponse({"detail": str(error)}, status_code=status)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("the HTTP API failed on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse(
        {"detail": "nanke failed on this request; the server's log says why"}, status_code=500
    )


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413, before reading more of it than that."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"the request body is over {self.max_bytes // 2**20} MiB"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
