"""``/api/v1``: nanke's own small JSON API beside the WebUI's.

- ``POST /api/v1/jobs`` queues a job and answers at once (202) with its id; the prompt may carry
  the same flags as ``/imagine`` (``a red fox --ar 3:2 --seed 7``), and the other fields win.
- ``GET /api/v1/jobs/{id}`` is the job now; ``GET /api/v1/jobs/{id}/events`` streams it as
  server-sent events (``progress`` at each step, then ``done``, ``failed`` or ``cancelled``);
  ``GET /api/v1/jobs/{id}/images/{index}`` is one image (a PNG with its parameters).
- ``POST /api/v1/jobs/{id}/cancel`` and ``DELETE /api/v1/jobs/{id}`` for the key's own jobs.
- ``GET /api/v1/history`` lists the key's jobs; ``GET /api/v1/prompts`` the shared prompts of
  the Discord server the key belongs to (``api-key create NAME --guild ID``).

A key sees its own jobs and the public jobs of its server; any other job is "not found".
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from pipeline.api.auth import Key
from pipeline.api.server import ApiContext
from pipeline.domain.prompt.flags import parse_prompt
from pipeline.queue.jobs import ApiKeySnapshot, JobSnapshot, ListedJob

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["nanke"])
HEARTBEAT_S = 15.0
"""An event stream says something at least this often (a comment), so proxies keep it open."""
PAGE_MAX = 100


class JobRequest(BaseModel):
    """A job to queue: a prompt (with ``/imagine`` flags, if you like) and any field to set."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., description="What to draw; flags such as --ar 3:2 --seed 7 --n 4 work too")
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = Field(None, description="An A1111 sampler name, e.g. 'DPM++ 2M Karras'")
    seed: int | None = None
    count: int | None = None
    model: str | None = None
    private: bool | None = Field(None, description="Keep the job out of every listing and search")


def context_of(request: Request) -> ApiContext:
    return request.app.state.nanke  # type: ignore[no-any-return]


def job_view(job: JobSnapshot, *, position: int | None = None, step: Any = None) -> dict[str, Any]:
    """A job as the API shows it."""
    request = job.request
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "position": position,
        "progress": {"step": step.step, "steps": step.total} if step is not None else None,
        "request": {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "width": request.width,
            "height": request.height,
            "steps": request.steps,
            "cfg_scale": request.cfg_scale,
            "sampler": request.sampler,
            "seed": request.seed,
            "count": request.count,
            "mode": request.mode,
            "strength": request.strength,
            "clip_skip": request.clip_skip,
        },
        "model": job.model_name or request.model,
        "model_hash": job.model_hash,
        "private": job.private,
        "error": job.error,
        "parameters": job.parameters_text() if job.status == "done" else None,
        "images": [
            {
                "index": image.index,
                "seed": image.seed,
                "width": image.width,
                "height": image.height,
                "sha256": image.sha256,
                "url": f"/api/v1/jobs/{job.id}/images/{image.index}",
            }
            for image in job.images
        ],
        "created_at": _time(job.created_at),
        "started_at": _time(job.started_at),
        "finished_at": _time(job.finished_at),
    }


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


async def _visible(context: ApiContext, key: ApiKeySnapshot, job_id: int) -> JobSnapshot:
    return await context.jobs.visible(job_id, key.viewer)


async def _view(context: ApiContext, job: JobSnapshot) -> dict[str, Any]:
    position = await context.jobs.position(job.id) if job.status == "queued" else None
    return job_view(job, position=position, step=context.hub.step_of(job.id))


@router.post("/jobs", status_code=202, summary="Queue a job; answers at once with its id")
async def submit(body: JobRequest, request: Request, key: Key) -> dict[str, Any]:
    context = context_of(request)
    parsed = parse_prompt(body.prompt, styles=context.styles.book())
    given = body.model_dump(exclude={"prompt", "private"}, exclude_none=True)
    wanted = replace(parsed.request, **given)
    if wanted.model is None and key.model is not None:
        wanted = replace(wanted, model=key.model)
    private = body.private if body.private is not None else parsed.private
    job = await context.jobs.submit(wanted, requester=key.requester, private=private)
    log.info("API key %s queued job %d", key.name, job.id)
    return await _view(context, job)


@router.get("/jobs/{job_id}", summary="A job, now")
async def get_job(job_id: int, request: Request, key: Key) -> dict[str, Any]:
    context = context_of(request)
    return await _view(context, await _visible(context, key, job_id))


@router.get("/jobs/{job_id}/events", summary="A job's changes as server-sent events, until it ends")
async def job_events(job_id: int, request: Request, key: Key) -> StreamingResponse:
    context = context_of(request)
    first = await _visible(context, key, job_id)
    return StreamingResponse(
        _events(context, request, first),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store"},
    )


async def _events(context: ApiContext, request: Request, job: JobSnapshot) -> AsyncIterator[str]:
    """``state`` once, ``progress`` at each step, and the job's last state as ``done``,
    ``failed`` or ``cancelled``; a comment now and then while nothing happens."""
    yield _event("state", await _view(context, job))
    quiet = 0.0
    while not job.finished:
        if await request.is_disconnected():
            return
        changed = await context.hub.wait_for_change(job.id, timeout=1.0)
        step = context.hub.step_of(job.id)
        if changed and step is not None:
            quiet = 0.0
            yield _event("progress", {"id": job.id, "step": step.step, "steps": step.total})
            continue
        job = await context.jobs.get(job.id)
        quiet += 0.0 if changed else 1.0
        if quiet >= HEARTBEAT_S:
            quiet = 0.0
            yield ": still there\n\n"
    yield _event(job.status, await _view(context, job))


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.get(
    "/jobs/{job_id}/images/{index}",
    summary="One image of a job: a PNG with its parameters",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def get_image(job_id: int, index: int, request: Request, key: Key) -> Response:
    context = context_of(request)
    job = await _visible(context, key, job_id)
    image = next((image for image in job.images if image.index == index), None)
    if image is None:
        raise HTTPException(404, f"job {job_id} has no image {index}")
    data = await context.jobs.images.read(image)
    return Response(
        data,
        media_type="image/png",
        headers={"Content-Disposition": f'inline; filename="nanke-{job_id}-{index}.png"'},
    )


@router.post("/jobs/{job_id}/cancel", summary="Cancel one of the key's jobs")
async def cancel(job_id: int, request: Request, key: Key) -> dict[str, Any]:
    context = context_of(request)
    return await _view(context, await context.jobs.cancel(job_id, viewer=key.viewer))


@router.delete("/jobs/{job_id}", status_code=204, summary="Delete one of the key's jobs and its images")
async def delete(job_id: int, request: Request, key: Key) -> Response:
    await context_of(request).jobs.delete(job_id, viewer=key.viewer)
    return Response(status_code=204)


@router.get("/history", summary="The key's own jobs, newest first")
async def history(
    request: Request,
    key: Key,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    listed = await context_of(request).jobs.community.listing(
        "owned", user_id=key.user_id, limit=limit, offset=offset
    )
    return {"jobs": [_listed(entry) for entry in listed]}


@router.get("/prompts", summary="Shared prompts of the key's Discord server")
async def prompts(
    request: Request,
    key: Key,
    q: Annotated[str | None, Query(max_length=200, description="Full-text search")] = None,
    sort: Literal["recent", "top"] = "recent",
    period: Literal["day", "week", "month", "all"] = "week",
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    if key.guild_id is None:
        raise HTTPException(
            403, f"the key {key.name!r} belongs to no Discord server (api-key create NAME --guild ID)"
        )
    community = context_of(request).jobs.community
    options: dict[str, Any] = {"guild_id": key.guild_id, "limit": limit, "offset": offset}
    if q:
        listed = await community.listing("search", text=q, **options)
    elif sort == "top":
        listed = await community.listing("top", period=period, **options)
    else:
        listed = await community.listing("recent", **options)
    return {"jobs": [_listed(entry) for entry in listed]}


def _listed(entry: ListedJob) -> dict[str, Any]:
    fields = {name: getattr(entry, name) for name in entry.__dataclass_fields__ if name != "image_path"}
    return {name: _time(value) if isinstance(value, datetime) else value for name, value in fields.items()}
