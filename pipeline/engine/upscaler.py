"""A dedicated upscaler model (``NANKE_UPSCALER``) in place of the resize + img2img detail pass.

Two diffusers families are supported: Stability's x4 upscaler (``StableDiffusionUpscalePipeline``,
e.g. ``stabilityai/stable-diffusion-x4-upscaler``) and the x2 latent upscaler
(``StableDiffusionLatentUpscalePipeline``, e.g. ``stabilityai/sd-x2-latent-upscaler``). It offers
the engine's ``generate`` call, so the worker and ``reproduce`` treat it like any engine; the
output is resized (Lanczos) to the request's size when the model's factor differs from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pipeline.domain.models import model_hash
from pipeline.domain.prompt.emphasis import is_break, parse_emphasis
from pipeline.domain.request import GenerationRequest
from pipeline.engine.devices import describe_environment
from pipeline.engine.results import GeneratedImage, GenerationResult, StepProgress
from pipeline.errors import Cancelled, ModelLoadError

log = logging.getLogger(__name__)

SUPPORTED = {"StableDiffusionUpscalePipeline": 4, "StableDiffusionLatentUpscalePipeline": 2}
NOISE_LEVEL = 20
"""The x4 upscaler's noise augmentation (diffusers' default): low keeps the source's look."""


class _Stop(Exception):
    """Raised from the step callback to stop the denoising loop (these pipelines have no interrupt)."""


@dataclass(frozen=True)
class UpscalerModel:
    """What the worker needs of the upscaler: its name and hash for the records, its pipe."""

    pipe: Any
    name: str
    hash: str | None
    factor: int


class UpscalerEngine:
    """Runs ``upscale`` requests through a dedicated upscaler model, one image at a time."""

    def __init__(self, model: UpscalerModel, *, device: torch.device, dtype: torch.dtype) -> None:
        self.model = model
        self.pipe = model.pipe
        self.device = device
        self.dtype = dtype
        self.environment = describe_environment(device, dtype)
        self._lock = threading.Lock()
        self.pipe.to(device=device, dtype=dtype)
        self.pipe.set_progress_bar_config(disable=True)

    @classmethod
    def load(
        cls, source: str, *, device: torch.device, dtype: torch.dtype, cache_dir: Path | None = None
    ) -> UpscalerEngine:
        """Load the upscaler at ``source`` (a diffusers folder, or a Hub id with internet)."""
        from diffusers import DiffusionPipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(source, torch_dtype=dtype)
        except (OSError, ValueError) as error:
            raise ModelLoadError(
                f"NANKE_UPSCALER: {source!r} could not be loaded ({error}). Point it at a diffusers "
                "folder of stabilityai/stable-diffusion-x4-upscaler or stabilityai/sd-x2-latent-upscaler."
            ) from error
        kind = type(pipe).__name__
        if kind not in SUPPORTED:
            raise ModelLoadError(
                f"NANKE_UPSCALER: {source!r} holds a {kind}, not an upscaler "
                f"(supported: {', '.join(SUPPORTED)})"
            )
        folder = Path(source)
        weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
        digest = model_hash(weights, cache_dir) if weights.is_file() else None
        name = folder.name if folder.exists() else source
        log.info("upscaler %s loaded (%s, x%d)", name, kind, SUPPORTED[kind])
        return cls(UpscalerModel(pipe, name, digest, SUPPORTED[kind]), device=device, dtype=dtype)

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        init_images: Mapping[str, Image.Image] | None = None,
        on_step: Callable[[StepProgress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        preview_every: int | None = None,
    ) -> list[GenerationResult]:
        """Upscale the source image of every request; one :class:`GenerationResult` each."""
        # 1. Check inputs
        for index, request in enumerate(requests):
            if request.mode != "upscale":
                raise ValueError(f"requests[{index}].mode: {request.mode!r} (allowed: upscale)")
            if request.seed is None:
                raise ValueError(f"requests[{index}].seed: None (allowed: a seed; call with_seed())")
            if init_images is None or request.init_image not in init_images:
                raise ValueError(
                    f"requests[{index}].init_image: {request.init_image!r} is not in init_images"
                )
        started = time.monotonic()
        results = []
        with self._lock:
            for request in requests:
                # 2. One image through the upscaler, reporting steps and polling for cancellation
                source = init_images[request.init_image]  # type: ignore[index]
                image = self._upscale(request, source, started, on_step, should_cancel)
                # 3. The request's exact size
                if image.size != (request.width, request.height):
                    image = image.resize((request.width, request.height), Image.Resampling.LANCZOS)
                results.append(
                    GenerationResult(
                        request=request,
                        images=[GeneratedImage(0, request.seed, image)],  # type: ignore[arg-type]
                        model_name=self.model.name,
                        model_hash=self.model.hash,
                        elapsed_s=time.monotonic() - started,
                        environment={**self.environment, "upscaler": type(self.pipe).__name__},
                    )
                )
        return results

    def _upscale(
        self,
        request: GenerationRequest,
        source: Image.Image,
        started: float,
        on_step: Callable[[StepProgress], None] | None,
        should_cancel: Callable[[], bool] | None,
    ) -> Image.Image:
        size = (request.width // self.model.factor, request.height // self.model.factor)
        low_res = source.convert("RGB").resize(size, Image.Resampling.LANCZOS)

        def callback(step: int, timestep: Any, latents: torch.Tensor) -> None:
            if on_step is not None:
                on_step(StepProgress(step + 1, request.steps, time.monotonic() - started))
            if should_cancel is not None and should_cancel():
                raise _Stop

        options: dict[str, Any] = {"noise_level": NOISE_LEVEL} if self.model.factor == 4 else {}
        try:
            output = self.pipe(
                prompt=_plain(request.prompt),
                negative_prompt=_plain(request.negative_prompt) or None,
                image=low_res,
                num_inference_steps=request.steps,
                guidance_scale=request.cfg_scale,
                generator=torch.Generator("cpu").manual_seed(request.seed or 0),
                callback=callback,
                callback_steps=1,
                **options,
            )
        except _Stop:
            raise Cancelled("cancelled") from None
        return output.images[0]


def _plain(text: str) -> str:
    """The prompt without A1111 emphasis markup (these pipelines take plain text)."""
    return "".join(run for run, weight in parse_emphasis(text) if not is_break((run, weight))).strip()
