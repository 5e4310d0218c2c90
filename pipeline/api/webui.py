"""``/sdapi/v1``: the AUTOMATIC1111 WebUI's HTTP API, so that its clients use nanke unchanged.

Differences a client may notice, all of them on purpose:

- Each key is one user of nanke's fair queue: ``txt2img`` and ``img2img`` wait for the job's turn
  and answer when it is done, like the WebUI but behind other people's jobs; ``progress``,
  ``interrupt`` and ``skip`` are about the calling key's own jobs, not the whole server's.
- ``options`` are the key's own: ``sd_model_checkpoint`` chooses the model its requests use
  when they name none; other options are accepted and left as they are (named in the
  ``X-Nanke-Ignored`` header).
- A field nanke cannot honour is listed in ``info["nanke_not_honoured"]`` instead of being run
  differently in silence (see :mod:`pipeline.api.webui_translate`). Every image is kept, so a
  job can be found and reproduced later (``nanke_job_id``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, Response

from pipeline.api.auth import Key
from pipeline.api.server import ApiContext
from pipeline.api.webui_schemas import (
    ImagesResponse,
    Img2ImgRequest,
    PngInfoRequest,
    PngInfoResponse,
    ProgressResponse,
    ProgressState,
    SamplerItem,
    SchedulerItem,
    SDModelItem,
    Txt2ImgRequest,
)
from pipeline.api.webui_translate import (
    SCHEDULERS,
    Translated,
    decode_image,
    info,
    parameters,
    png_info,
    samplers,
    translate,
)
from pipeline.domain.grid import preview_jpeg
from pipeline.domain.models.hashing import AUTOV2_LENGTH, cached_sha256
from pipeline.errors import InvalidRequest, ModelNotFound, NotCancellable
from pipeline.queue.jobs import ApiKeySnapshot, JobSnapshot

log = logging.getLogger(__name__)

router = APIRouter(prefix="/sdapi/v1", tags=["WebUI"])
WAIT_TIMEOUT_S = 1.0
"""How often a waiting request reads its job again (and notices a client that went away)."""
TITLE_HASH = " ["
CHECKPOINT_OPTION = "sd_model_checkpoint"


def context_of(request: Request) -> ApiContext:
    return request.app.state.nanke  # type: ignore[no-any-return]


# -- generating -----------------------------------------------------------------------------------


@router.post("/txt2img", response_model=ImagesResponse, summary="Generate images from a prompt")
async def txt2img(body: Txt2ImgRequest, request: Request, key: Key) -> ImagesResponse:
    context = context_of(request)
    model = await _model(context, body, key)
    translated = translate(body, model=model, styles=context.styles.book())
    return await _generate(context, request, key, body, translated)


@router.post("/img2img", response_model=ImagesResponse, summary="Generate images from an image and a prompt")
async def img2img(body: Img2ImgRequest, request: Request, key: Key) -> ImagesResponse:
    context = context_of(request)
    if not body.init_images:
        raise InvalidRequest("init_images", body.init_images, "one base64 image", reason="is empty")
    data = decode_image(body.init_images[0], field_name="init_images")
    source = await context.jobs.images.upload(data, owner_id=key.user_id, max_pixels=4 * context.max_pixels)
    model = await _model(context, body, key)
    return await _generate(
        context,
        request,
        key,
        body,
        translate(body, model=model, init_image=source.sha256, styles=context.styles.book()),
    )


async def _model(context: ApiContext, body: Txt2ImgRequest, key: ApiKeySnapshot) -> str | None:
    """The model of a request: its ``override_settings``, else the key's option, else the default."""
    wanted = (body.override_settings or {}).get(CHECKPOINT_OPTION)
    if wanted is None:
        return key.model
    return checkpoint(context, wanted, field=f"override_settings.{CHECKPOINT_OPTION}")


def checkpoint(context: ApiContext, title: Any, *, field: str) -> str:
    """The model name of a WebUI checkpoint title (``name`` or ``name [hash]``); 422 if unknown."""
    if not isinstance(title, str) or not title.strip():
        raise InvalidRequest(field, title, "a title from /sdapi/v1/sd-models")
    name = title.split(TITLE_HASH, 1)[0].strip() if title.rstrip().endswith("]") else title.strip()
    try:
        return context.catalog.resolve(name, allow_paths=False).name
    except ModelNotFound:
        raise InvalidRequest(
            field, title, ", ".join(context.catalog.names()) or "a configured model"
        ) from None


async def _generate(
    context: ApiContext, request: Request, key: ApiKeySnapshot, body: Txt2ImgRequest, translated: Translated
) -> ImagesResponse:
    """Queue the request as the key's job, wait for it, and answer with its images."""
    job = await context.jobs.submit(translated.request, requester=key.requester)
    log.info("API key %s queued job %d", key.name, job.id)
    done = await wait_until_finished(context, request, job.id, key)
    if done.status == "failed":
        raise HTTPException(500, f"job {done.id} failed: {done.error}")
    infotexts = [done.parameters_text(image.seed) for image in done.images]
    images = []
    if body.send_images:
        for image in done.images:
            images.append(base64.b64encode(await context.jobs.images.read(image)).decode("ascii"))
    return ImagesResponse(
        images=images,
        parameters=parameters(body),
        info=info(done, infotexts, not_honoured=translated.not_honoured),
    )


async def wait_until_finished(
    context: ApiContext, request: Request, job_id: int, key: ApiKeySnapshot
) -> JobSnapshot:
    """The job once it is done, failed or cancelled; a client that goes away cancels it."""
    while True:
        job = await context.jobs.get(job_id)
        if job.finished:
            return job
        changed = await context.hub.wait_for_change(job_id, timeout=WAIT_TIMEOUT_S)
        # While it reports steps there is nothing to read; it ended (or is quiet) otherwise
        while not await _gone(context, request, job_id, key) and changed and context.hub.step_of(job_id):
            changed = await context.hub.wait_for_change(job_id, timeout=WAIT_TIMEOUT_S)


async def _gone(context: ApiContext, request: Request, job_id: int, key: ApiKeySnapshot) -> bool:
    """Cancel the job and stop waiting (with 499) when the client closed the connection."""
    if not await request.is_disconnected():
        return False
    log.info("the client of job %d went away: cancelling it", job_id)
    with contextlib.suppress(NotCancellable):
        await context.jobs.cancel(job_id, viewer=key.viewer)
    raise HTTPException(499, "the client closed the request")


# -- the key's jobs -------------------------------------------------------------------------------


@router.get("/progress", response_model=ProgressResponse, summary="Progress of the key's jobs")
async def progress(request: Request, key: Key, skip_current_image: bool = False) -> ProgressResponse:
    context = context_of(request)
    overview = await context.jobs.overview()
    mine = [entry for entry in overview.entries if entry.owner_id == key.user_id]
    if not mine:
        return ProgressResponse(progress=0.0, eta_relative=0.0, state=ProgressState())
    current = mine[0]
    step = context.hub.step_of(current.job_id)
    job = await context.jobs.get(current.job_id)
    fraction = step.fraction if step is not None and current.status == "running" else 0.0
    if step is not None:
        eta = step.eta_s + sum(entry.images for entry in mine[1:]) * (overview.seconds_per_image or 0)
    else:
        eta = max((entry.eta_s or 0.0) for entry in mine)
    textinfo = None if current.status == "running" else f"queued: place {current.position} in nanke's queue"
    previews = None if skip_current_image else context.hub.preview_of(current.job_id)
    image = None
    if previews:
        image = base64.b64encode(await asyncio.to_thread(preview_jpeg, previews)).decode("ascii")
    return ProgressResponse(
        progress=round(fraction, 4),
        eta_relative=round(eta, 2),
        state=ProgressState(
            job=f"job {current.job_id}",
            job_count=len(mine),
            job_timestamp=job.created_at.strftime("%Y%m%d%H%M%S"),
            sampling_step=step.step if step is not None else 0,
            sampling_steps=step.total if step is not None else job.request.steps,
        ),
        textinfo=textinfo,
        current_image=image,
        current_task=f"nanke-{current.job_id}",
    )


@router.post("/interrupt", summary="Stop the key's running and queued jobs")
async def interrupt(request: Request, key: Key) -> dict[str, Any]:
    context = context_of(request)
    overview = await context.jobs.overview()
    for entry in overview.entries:
        if entry.owner_id == key.user_id:
            with contextlib.suppress(NotCancellable):  # it ended meanwhile
                await context.jobs.cancel(entry.job_id, viewer=key.viewer)
    return {}


@router.post("/skip", summary="Stop the key's running and queued jobs (nanke has no batches to skip to)")
async def skip(request: Request, key: Key) -> dict[str, Any]:
    return await interrupt(request, key)


# -- what nanke offers ----------------------------------------------------------------------------


@router.get("/samplers", response_model=list[SamplerItem], summary="The samplers nanke runs")
async def list_samplers(key: Key) -> list[dict[str, Any]]:
    return samplers()


@router.get("/schedulers", response_model=list[SchedulerItem], summary="The schedule types nanke runs")
async def list_schedulers(key: Key) -> list[dict[str, Any]]:
    return list(SCHEDULERS)


@router.get("/sd-models", response_model=list[SDModelItem], summary="The models (checkpoints) nanke has")
async def sd_models(request: Request, key: Key) -> list[SDModelItem]:
    context = context_of(request)
    return [_model_item(context, name) for name in context.catalog.names()]


def _model_item(context: ApiContext, name: str) -> SDModelItem:
    spec = context.catalog.resolve(name)
    source = Path(spec.source)
    digest = cached_sha256(source, context.cache_dir) if source.exists() else None
    short = digest[:AUTOV2_LENGTH] if digest else None
    return SDModelItem(
        title=f"{spec.name} [{short}]" if short else spec.name,
        model_name=spec.name,
        hash=short,
        sha256=digest,
        filename=source.name if source.exists() else spec.source,
    )


@router.get("/loras", summary="The LoRAs of the loras folder, as <lora:name:weight> takes them")
async def loras(request: Request, key: Key) -> list[dict[str, Any]]:
    folder = context_of(request).resources.loras
    found = await asyncio.to_thread(folder.all)
    # the WebUI gives the full path; the name relative to the folder says enough to a client
    return [{"name": lora.name, "alias": lora.name, "path": lora.path.name, "metadata": {}} for lora in found]


@router.get("/scripts", summary="Scripts (nanke runs none)")
async def scripts(key: Key) -> dict[str, list[str]]:
    return {"txt2img": [], "img2img": []}


@router.get("/options", summary="The key's options")
async def get_options(request: Request, key: Key) -> dict[str, Any]:
    context = context_of(request)
    current = _model_item(context, key.model or context.catalog.resolve(None).name)
    return {
        CHECKPOINT_OPTION: current.title,
        "sd_checkpoint_hash": current.sha256,
        "sd_vae": "Automatic",
        "CLIP_stop_at_last_layers": 1,
        "samples_format": "png",
        "return_grid": False,
        "enable_pnginfo": True,
        "eta_noise_seed_delta": 0,
    }


@router.post("/options", summary="Set the key's options (sd_model_checkpoint)")
async def set_options(
    request: Request,
    response: Response,
    options: Annotated[dict[str, Any], Body()],
    key: Key,
) -> None:
    context = context_of(request)
    if CHECKPOINT_OPTION in options:
        model = checkpoint(context, options[CHECKPOINT_OPTION], field=CHECKPOINT_OPTION)
        await context.jobs.keys.set_model(key.id, model)
        log.info("API key %s now uses the model %s", key.name, model)
    ignored = sorted(set(options) - {CHECKPOINT_OPTION})
    if ignored:
        response.headers["X-Nanke-Ignored"] = ", ".join(ignored)[:1000]


@router.post("/png-info", response_model=PngInfoResponse, summary="Read the parameters inside an image")
async def read_png_info(body: PngInfoRequest, key: Key) -> dict[str, Any]:
    return png_info(decode_image(body.image, field_name="image"))
