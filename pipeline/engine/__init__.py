"""The diffusers engine: runs batches of compatible requests on a loaded Stable Diffusion pipeline.

Usage::

    device = pick_device(settings.device)
    engine = Engine(loaded_model, device=device, dtype=pick_dtype(device, settings.dtype))
    results = engine.generate([request.with_seed()], on_step=report)
"""

from __future__ import annotations

from pipeline.engine.core import BATCH_FIELDS, Engine
from pipeline.engine.preview import LATENT_RGB_FACTORS, latents_to_previews
from pipeline.engine.results import (
    ARCHITECTURES,
    EngineOptions,
    GeneratedImage,
    GenerationResult,
    ModelLike,
    StepProgress,
)

__all__ = [
    "ARCHITECTURES",
    "BATCH_FIELDS",
    "LATENT_RGB_FACTORS",
    "Engine",
    "EngineOptions",
    "GeneratedImage",
    "GenerationResult",
    "ModelLike",
    "StepProgress",
    "latents_to_previews",
]
