"""The WebUI's requests as nanke requests, and nanke's jobs as the WebUI's answers.

A field nanke honours becomes part of the :class:`~pipeline.domain.request.GenerationRequest`;
one it cannot honour, set to anything but its "off" value, is listed with its value under
``nanke_not_honoured`` in the answer's ``info`` JSON (and in the log), never dropped in silence.
Errors of the request name the WebUI's field (``batch_size``, not nanke's ``count``).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, PngImagePlugin

from pipeline.api.webui_schemas import Img2ImgRequest, Txt2ImgRequest
from pipeline.domain.metadata import parse_infotext
from pipeline.domain.models.resources import vae_name
from pipeline.domain.prompt.styles import StyleBook
from pipeline.domain.request import (
    DEFAULT_HIRES_DENOISE,
    DEFAULT_HIRES_UPSCALER,
    GenerationRequest,
    hires_upscaler_named,
)
from pipeline.domain.samplers import (
    DEFAULT_SAMPLER,
    SAMPLER_NAMES,
    automatic_sampler,
    canonical_sampler,
    split_sampler,
)
from pipeline.errors import InvalidRequest
from pipeline.queue.jobs import JobSnapshot

log = logging.getLogger(__name__)

VERSION = "nanke"
FIELD_NAMES = {
    "count": "batch_size",
    "sampler": "sampler_name",
    "size": "width",
    "strength": "denoising_strength",
    "clip_skip": "override_settings.CLIP_stop_at_last_layers",
    "model": "override_settings.sd_model_checkpoint",
    "init_image": "init_images",
    "vae": "override_settings.sd_vae",
    "tile": "tiling",
    "hires_scale": "hr_scale",
    "hires_steps": "hr_second_pass_steps",
    "hires_denoise": "denoising_strength",
    "hires_upscaler": "hr_upscaler",
    "--style": "styles",
    "styles": "styles",
}
"""nanke's field names (in its errors) → the WebUI's."""
AUTOMATIC = ("automatic", "")
KARRAS = "karras"
SCHEDULERS = (
    {
        "name": "automatic",
        "label": "Automatic",
        "aliases": None,
        "default_rho": -1,
        "need_inner_model": False,
    },
    {"name": "uniform", "label": "Uniform", "aliases": None, "default_rho": -1, "need_inner_model": True},
    {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0, "need_inner_model": False},
    {
        "name": "exponential",
        "label": "Exponential",
        "aliases": None,
        "default_rho": -1,
        "need_inner_model": False,
    },
)
"""The schedule types nanke runs (A1111 names); any other is reported and run as ``automatic``."""
VAE_OPTION = "sd_vae"
HONOURED_OPTIONS = ("sd_model_checkpoint", "CLIP_stop_at_last_layers", VAE_OPTION)
"""``override_settings`` keys nanke honours."""
_DATA_URL = "base64,"


@dataclass
class Translated:
    """A WebUI request as nanke runs it, and what of it nanke cannot honour."""

    request: GenerationRequest
    not_honoured: dict[str, Any] = field(default_factory=dict)


def webui_field(name: str) -> str:
    """The WebUI's name for one of nanke's request fields."""
    return FIELD_NAMES.get(name, name)


def decode_image(data: str, *, field_name: str) -> bytes:
    """The bytes of a base64 image (a ``data:`` URL too); 422 naming ``field_name`` when it is not."""
    text = data.split(_DATA_URL, 1)[1] if data.startswith("data:") and _DATA_URL in data else data
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            field_name, f"{len(data)} characters", "a base64 PNG, JPEG or WebP image", reason="is not base64"
        ) from None


def sampler_of(name: str | None, scheduler: str | None) -> tuple[str | None, dict[str, Any]]:
    """The sampler to run for a WebUI sampler name and schedule type (``None``: nanke's default),
    and what of them nanke cannot honour.

    As in the WebUI 1.9+, no schedule type (or ``automatic``) is the sampler's own default
    schedule (:func:`automatic_sampler`: Karras for DPM++ 2M); a schedule type nanke lacks is
    reported and the sampler runs with that default.
    """
    schedule = (scheduler or "").strip()
    if name is None and not schedule:
        return None, {}
    base = canonical_sampler(name or DEFAULT_SAMPLER, field_name="sampler_name")
    try:
        sampler = canonical_sampler(base, schedule or None)
    except InvalidRequest:  # a schedule nanke lacks, or none of this sampler
        return (None if name is None else automatic_sampler(base)), {"scheduler": scheduler}
    if schedule.casefold() in AUTOMATIC:
        sampler = automatic_sampler(sampler)
    return sampler, {}


def _hires(body: Txt2ImgRequest, not_honoured: dict[str, Any]) -> dict[str, Any]:
    """The hires-fix fields of a request with ``enable_hr`` (the WebUI's defaults where unset)."""
    if not body.enable_hr or isinstance(body, Img2ImgRequest):
        return {}
    scale = body.hr_scale
    if body.hr_resize_x > 0 or body.hr_resize_y > 0:
        wide = body.hr_resize_x / body.width if body.hr_resize_x > 0 else 0
        tall = body.hr_resize_y / body.height if body.hr_resize_y > 0 else 0
        scale = max(wide, tall)
        if wide and tall and abs(wide - tall) > 0.01:
            not_honoured["hr_resize"] = f"{body.hr_resize_x}x{body.hr_resize_y} (scaled evenly by {scale:g})"
    upscaler = DEFAULT_HIRES_UPSCALER
    if body.hr_upscaler:
        named = hires_upscaler_named(body.hr_upscaler)
        if named is None:
            not_honoured["hr_upscaler"] = f"{body.hr_upscaler} (nanke resizes with Lanczos)"
        upscaler = named or "Lanczos"
    for name in ("hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt", "hr_negative_prompt"):
        value = getattr(body, name)
        if value and value not in ("Use same checkpoint", "Use same sampler", "Use same scheduler"):
            not_honoured[name] = value
    denoise = body.denoising_strength
    return {
        "hires_scale": scale,
        "hires_steps": body.hr_second_pass_steps,
        "hires_denoise": DEFAULT_HIRES_DENOISE if denoise is None else denoise,
        "hires_upscaler": upscaler,
    }


def translate(
    body: Txt2ImgRequest,
    *,
    model: str | None,
    init_image: str | None = None,
    styles: StyleBook | None = None,
) -> Translated:
    """``body`` as a nanke request (``model``: the checkpoint it runs on; ``init_image``: the
    stored source's sha256, for img2img; ``styles``: the styles ``body.styles`` names). The
    request is not validated yet."""
    sampler, not_honoured = sampler_of(body.sampler_name or body.sampler_index, body.scheduler)
    not_honoured.update(_not_honoured(body))
    clip_skip = 1
    options = body.override_settings or {}
    if "CLIP_stop_at_last_layers" in options:
        clip_skip = options["CLIP_stop_at_last_layers"]
    fields: dict[str, Any] = {
        "prompt": body.prompt,
        "negative_prompt": body.negative_prompt,
        "width": body.width,
        "height": body.height,
        "steps": body.steps,
        "cfg_scale": body.cfg_scale,
        "seed": None if body.seed < 0 else body.seed,
        "count": body.batch_size * body.n_iter,
        "model": model,
        "clip_skip": clip_skip,
        "tile": bool(body.tiling),
        "vae": vae_name(str(options.get(VAE_OPTION) or "")),
        **_hires(body, not_honoured),
    }
    if body.styles:
        book = styles if styles is not None else StyleBook.empty()
        fields["prompt"], fields["negative_prompt"], fields["styles"] = book.apply(
            body.prompt, body.negative_prompt, body.styles
        )
    if sampler is not None:
        fields["sampler"] = sampler
    if init_image is not None:
        fields.update(mode="img2img", init_image=init_image, strength=body.denoising_strength)
    if not_honoured:
        log.info("not honoured in a WebUI request: %s", ", ".join(sorted(not_honoured)))
    return Translated(GenerationRequest(**fields), not_honoured)


def _not_honoured(body: Txt2ImgRequest) -> dict[str, Any]:
    """The fields set to something nanke does not do (each at its "off" value is fine)."""
    found: dict[str, Any] = {}

    def unless(name: str, value: Any, *off: Any) -> None:
        if value is not None and value not in off and not (isinstance(value, float) and math.isinf(value)):
            found[name] = value

    unless("subseed_strength", body.subseed_strength, 0)
    unless("seed_resize_from_w", body.seed_resize_from_w if body.seed_resize_from_w > 0 else None)
    unless("seed_resize_from_h", body.seed_resize_from_h if body.seed_resize_from_h > 0 else None)
    unless("restore_faces", body.restore_faces, False)
    unless("eta", body.eta, 0, 1)
    unless("s_min_uncond", body.s_min_uncond, 0)
    unless("s_churn", body.s_churn, 0)
    unless("s_tmin", body.s_tmin, 0)
    unless("s_tmax", body.s_tmax, 0)
    unless("s_noise", body.s_noise, 1)
    unless("distilled_cfg_scale", body.distilled_cfg_scale)
    unless("refiner_checkpoint", body.refiner_checkpoint or None)
    unless("firstpass_image", body.firstpass_image)
    unless("script_name", body.script_name or None)
    unless("alwayson_scripts", sorted(body.alwayson_scripts) or None)
    unless("do_not_save_samples", body.do_not_save_samples, False)
    if body.enable_hr and isinstance(body, Img2ImgRequest):
        found["enable_hr"] = "img2img has no hires fix"
    options = sorted(set(body.override_settings or {}) - set(HONOURED_OPTIONS))
    unless("override_settings", options or None)
    if isinstance(body, Img2ImgRequest):
        unless("mask", "inpainting" if body.mask else None)
        unless("latent_mask", "inpainting" if body.latent_mask else None)
        unless("resize_mode", body.resize_mode, 0)
        unless("initial_noise_multiplier", body.initial_noise_multiplier, 1)
        unless("include_init_images", body.include_init_images, False)
        unless(
            "init_images",
            f"{len(body.init_images)} images (the first is used)"
            if len(body.init_images or ()) > 1
            else None,
        )
    return found


def parameters(body: Txt2ImgRequest) -> dict[str, Any]:
    """The request as understood, as the WebUI echoes it (without the source images; a value
    JSON cannot hold, such as an infinite ``s_tmax``, as ``None``)."""
    echoed = body.model_dump()
    for name in ("init_images", "mask"):
        if name in echoed:
            echoed[name] = None
    return {name: None if _not_finite(value) else value for name, value in echoed.items()}


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def info(job: JobSnapshot, infotexts: list[str], *, not_honoured: dict[str, Any]) -> str:
    """The WebUI's ``info`` JSON of a finished job."""
    request = job.request
    seeds = [image.seed for image in job.images] or request.seeds
    count = len(seeds)
    data: dict[str, Any] = {
        "prompt": request.prompt,
        "all_prompts": [request.prompt] * count,
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [request.negative_prompt] * count,
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": seeds[0],
        "all_subseeds": seeds,
        "subseed_strength": 0,
        "width": request.width,
        "height": request.height,
        "sampler_name": request.sampler,
        "cfg_scale": request.cfg_scale,
        "steps": request.steps,
        "batch_size": count,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": job.model_name,
        "sd_model_hash": job.model_hash,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": request.strength,
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": [],
        "job_timestamp": job.created_at.strftime("%Y%m%d%H%M%S"),
        "clip_skip": request.clip_skip,
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
        "nanke_job_id": job.id,
        "nanke_status": job.status,
        "nanke_not_honoured": not_honoured,
    }
    if job.status == "cancelled":
        data["interrupted"] = True
    return json.dumps(data, ensure_ascii=False)


def samplers() -> list[dict[str, Any]]:
    """The samplers as the WebUI lists them since 1.9: base names, the schedule apart."""
    return [
        {"name": name, "aliases": [_alias(name)], "options": {}}
        for name in SAMPLER_NAMES
        if split_sampler(name)[0] == name
    ]


def _alias(name: str) -> str:
    return "k_" + name.lower().replace("++", "pp").replace(" ", "_")


def png_info(data: bytes) -> dict[str, Any]:
    """``/sdapi/v1/png-info``: the infotext, the other text chunks, and the infotext's parameters."""
    from pipeline.domain.metadata import read_parameters

    text = read_parameters(data) or ""
    items: dict[str, Any] = {}
    try:
        with Image.open(io.BytesIO(data)) as image:
            if isinstance(image, PngImagePlugin.PngImageFile):
                items = {key: str(value) for key, value in image.text.items() if key != "parameters"}
    except Exception as error:
        log.debug("png-info: cannot read the image's chunks: %s", error)
    params: dict[str, Any] = {}
    if text:
        parsed = parse_infotext(text)
        params = {"Prompt": parsed.prompt, "Negative prompt": parsed.negative_prompt, **parsed.settings}
        width, _, height = parsed.settings.get("Size", "").partition("x")
        if width.strip().isdigit() and height.strip().isdigit():
            params["Size-1"], params["Size-2"] = width.strip(), height.strip()
    return {"info": text, "items": items, "parameters": params}
