"""Guards around a diffusers call: NaN/black output and out-of-memory, with messages for the admin.

fp16 overflows in the VAE (notably SDXL's original VAE) turn whole images into NaN, which PIL
renders as black. The engine checks the decoded tensor itself, retries the VAE in float32, and
only then gives up with :class:`~pipeline.errors.BlackImageError` carrying what to try next.
"""

from __future__ import annotations

import logging

import torch

from pipeline.engine.results import BLACK_LEVEL

log = logging.getLogger(__name__)


FP16_FIX_VAE = "madebyollin/sdxl-vae-fp16-fix"


def bad_image_indices(images: torch.Tensor, *, black_level: float = BLACK_LEVEL) -> list[int]:
    """Indices of decoded images (``B×C×H×W`` in [-1, 1]) that hold NaN/inf or are entirely black."""
    if images.ndim != 4:
        raise ValueError(f"images: shape {tuple(images.shape)} (allowed: B×C×H×W)")
    flat = images.detach().float().flatten(1)
    non_finite = ~torch.isfinite(flat).all(dim=1)
    brightest = (flat.nan_to_num(nan=-1.0) / 2 + 0.5).clamp(0, 1).amax(dim=1)
    bad = non_finite | (brightest <= black_level)
    return [int(i) for i in torch.nonzero(bad).flatten().tolist()]


def non_finite_mask(latents: torch.Tensor) -> torch.Tensor:
    """Which latents (``B×…``) hold NaN or inf, the UNet itself having overflowed: a boolean
    tensor on their device (reading it makes the host wait for the GPU; read it when it is done)."""
    return ~torch.isfinite(latents.detach().flatten(1)).all(dim=1)


def black_image_message(*, architecture: str, dtype: torch.dtype, unet_overflow: bool) -> str:
    """What the admin should try when the images stay NaN/black."""
    dtype_text = str(dtype).removeprefix("torch.")
    if unet_overflow:
        head = f"The model produced NaN values while denoising in {dtype_text}, so the image would be black."
        tips = ["set NANKE_DTYPE=fp32 (or NANKE_DTYPE=bf16 on a GPU that supports it)"]
    else:
        head = f"The VAE decoded NaN/black images in {dtype_text}, and again after a retry in float32."
        tips = []
        if architecture == "sdxl":
            tips.append(f"use an fp16-safe VAE such as {FP16_FIX_VAE}")
        tips.append("set NANKE_DTYPE=fp32 (or bf16 on a GPU that supports it)")
        tips.append("check that the checkpoint (and its baked-in VAE) is not corrupt")
    return f"{head} Try: {'; '.join(tips)}."


def out_of_memory_message(*, device: torch.device, width: int, height: int, images: int) -> str:
    """What the admin or member should try when a single image still does not fit."""
    return (
        f"The {device.type} device ran out of memory generating {images} image(s) at {width}x{height}, "
        "even with attention slicing, VAE tiling and one image at a time. Try a smaller size, "
        "fewer images, lower NANKE_MAX_PIXELS / NANKE_MAX_BATCH, enable model CPU offload in the "
        "engine options, or stop other programs using the GPU."
    )
