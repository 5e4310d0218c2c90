"""Child requests: what a reroll, an upscale or a variation of an existing job asks for.

Each returns a new, validated :class:`GenerationRequest` with a fresh seed; the caller records
the parent job and which of its images was used.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pipeline.domain.canvas import canvas_size, parse_canvas
from pipeline.domain.request import MAX_PIXELS, MAX_STEPS, GenerationRequest

Strength = Literal["strong", "subtle"]

UPSCALE_FACTOR = 2
UPSCALE_STRENGTH = 0.35
"""The img2img detail pass after the resize: enough to add detail, little enough to keep the image."""
VARIATION_STRENGTHS: dict[str, float] = {"strong": 0.6, "subtle": 0.3}


def reroll(parent: GenerationRequest, *, seed: int | None = None) -> GenerationRequest:
    """The same request with new seeds (``seed`` or a random one)."""
    return replace(parent, seed=None).with_seed(seed).validate(max_pixels=MAX_PIXELS)


def upscale(
    parent: GenerationRequest,
    *,
    image_sha256: str,
    width: int,
    height: int,
    factor: int = UPSCALE_FACTOR,
    seed: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> GenerationRequest:
    """Upscale one image (``width`` x ``height``) of ``parent`` by ``factor``: resize, then a detail pass."""
    target_w, target_h = _round8(width * factor), _round8(height * factor)
    child = replace(
        without_hires_fix(parent),
        mode="upscale",
        width=target_w,
        height=target_h,
        count=1,
        init_image=image_sha256,
        strength=UPSCALE_STRENGTH,
        seed=None,
    )
    return _with_denoising_step(child).with_seed(seed).validate(max_pixels=max_pixels)


def variation(
    parent: GenerationRequest,
    *,
    image_sha256: str,
    width: int,
    height: int,
    strength: Strength = "strong",
    seed: int | None = None,
) -> GenerationRequest:
    """A variation of one image of ``parent``: img2img at the strong (0.6) or subtle (0.3) strength."""
    if strength not in VARIATION_STRENGTHS:
        raise ValueError(f"strength: {strength!r} (allowed: {', '.join(VARIATION_STRENGTHS)})")
    child = replace(
        without_hires_fix(parent),
        mode="img2img",
        width=width,
        height=height,
        count=1,
        init_image=image_sha256,
        strength=VARIATION_STRENGTHS[strength],
        seed=None,
    )
    return _with_denoising_step(child).with_seed(seed).validate(max_pixels=MAX_PIXELS)


def on_canvas(
    parent: GenerationRequest,
    *,
    image_sha256: str,
    width: int,
    height: int,
    canvas: str,
    max_pixels: int,
    seed: int | None = None,
) -> GenerationRequest:
    """Zoom Out, Pan, Make Square or Vary (Region) of one image (``width`` x ``height``) of
    ``parent``: the image laid out on ``canvas`` (see :mod:`pipeline.domain.canvas`) and the rest
    painted with the parent's prompt; the canvas fits ``max_pixels``."""
    spec = parse_canvas(canvas)
    canvas_width, canvas_height = canvas_size(spec, width, height, max_pixels=max_pixels)
    child = replace(
        without_hires_fix(parent),
        mode="inpaint",
        canvas=spec.text(),
        width=canvas_width,
        height=canvas_height,
        count=1,
        init_image=image_sha256,
        strength=spec.strength,
        seed=None,
    )
    return _with_denoising_step(child).with_seed(seed).validate(max_pixels=max_pixels)


def without_hires_fix(request: GenerationRequest) -> GenerationRequest:
    """``request`` without its hires fix: a child that starts from an image is made at that
    image's size (its LoRAs, VAE and tiling stay, so it keeps the parent's look)."""
    defaults = GenerationRequest(prompt="")
    return replace(
        request,
        hires_scale=None,
        hires_steps=defaults.hires_steps,
        hires_denoise=defaults.hires_denoise,
        hires_upscaler=defaults.hires_upscaler,
    )


def _with_denoising_step(request: GenerationRequest) -> GenerationRequest:
    """``request`` with enough steps that img2img runs at least one (``int(steps * strength)``).

    A child of a few-step image (``--steps 2``) at strength 0.35 would otherwise denoise nothing
    and fail when it runs; the stored request holds the raised count, so it still reproduces.
    """
    strength = request.strength or 1.0
    steps = request.steps
    while int(steps * strength) < 1 and steps < MAX_STEPS:
        steps += 1
    return request if steps == request.steps else replace(request, steps=steps)


def _round8(value: int) -> int:
    return max(8, round(value / 8) * 8)
