"""The engine's typed inputs and outputs: options, per-step progress and per-request results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from pipeline.domain.request import GenerationRequest

ARCHITECTURES: tuple[str, ...] = ("sd1", "sd2", "sdxl")
BLACK_LEVEL = 4 / 255
"""An image whose brightest channel value (0..1) is at most this is treated as black."""


class ModelLike(Protocol):
    """What the engine needs of a loaded model (``pipeline.domain.models.LoadedModel`` fits)."""

    @property
    def pipe(self) -> Any:
        """A diffusers text-to-image pipeline (StableDiffusionPipeline or StableDiffusionXLPipeline)."""

    @property
    def name(self) -> str: ...

    @property
    def hash(self) -> str | None:
        """A1111's AutoV2 hash (first 10 hex digits of the weights' sha256), when known."""

    @property
    def architecture(self) -> str:
        """``sd1``, ``sd2`` or ``sdxl``."""


@dataclass(frozen=True)
class EngineOptions:
    """Memory and quality settings of an :class:`~pipeline.engine.Engine`.

    ``tile_vae_above_pixels``: outputs with more pixels than this are decoded (and, for img2img,
    encoded) with a tiled VAE; ``None`` never tiles unless ``vae_tiling`` is set.
    ``cpu_offload`` uses diffusers' model CPU offload (CUDA only; ignored with a warning elsewhere).
    ``black_level``: decoded images no brighter than this (0..1) count as black.
    """

    attention_slicing: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    tile_vae_above_pixels: int | None = 1024 * 1024
    cpu_offload: bool = False
    black_level: float = BLACK_LEVEL
    tuning: tuple[str, ...] = ()
    """GPU speed-ups to turn on (see :mod:`pipeline.engine.tuning`)."""
    noise_ahead: bool | None = None
    """Draw ancestral samplers' per-step noise one step ahead in a thread (see
    :mod:`pipeline.engine.noise`; the images are the same either way); ``None``: on CUDA only."""
    encode_ahead: bool | None = None
    """Let :meth:`~pipeline.engine.Engine.encode_ahead` encode the next batch's prompts while the
    current batch runs (see :mod:`pipeline.engine.text_ahead`; the images are the same either
    way); ``None``: on CUDA only (on the CPU it would take cores from the batch that runs)."""
    allow_half_on_cpu: bool = False
    """For tests only: run float16/bfloat16 on the CPU (slow, and some kernels are missing), so the
    half-precision code paths are covered on machines without a GPU."""

    def __post_init__(self) -> None:
        if self.tile_vae_above_pixels is not None and self.tile_vae_above_pixels < 1:
            raise ValueError(
                f"tile_vae_above_pixels: {self.tile_vae_above_pixels} (allowed: 1 or more, or None)"
            )
        if not 0 <= self.black_level < 1:
            raise ValueError(f"black_level: {self.black_level} (allowed: 0 to below 1)")


@dataclass(frozen=True)
class StepProgress:
    """One denoising step done.

    ``step`` counts from 1 to ``total_steps`` within the current diffusers call (``part`` of
    ``parts``: a batch split after an out-of-memory error runs in several parts). ``total_steps``
    is the number of model evaluations of the call: ``steps`` for most samplers, fewer for img2img
    (``steps × strength``), about twice ``steps`` for Heun/DPM2. ``previews`` maps
    ``(request position in the batch, image index)`` to a small approximate image, when asked for.
    """

    step: int
    total_steps: int
    elapsed_s: float
    part: int = 1
    parts: int = 1
    previews: Mapping[tuple[int, int], Image.Image] | None = None

    @property
    def fraction(self) -> float:
        """Progress of the whole batch, 0..1."""
        within = self.step / self.total_steps if self.total_steps else 1.0
        return min(1.0, ((self.part - 1) + within) / max(self.parts, 1))

    @property
    def preview(self) -> Image.Image | None:
        """The first preview image, if any."""
        if not self.previews:
            return None
        return self.previews[min(self.previews)]


@dataclass(frozen=True)
class GeneratedImage:
    """One output image: its index within the request and the seed that made it."""

    index: int
    seed: int
    image: Image.Image
    flagged: bool = False
    """The image safety check (``NANKE_SAFETY_CHECKER``) found adult content in it."""


@dataclass(frozen=True)
class GenerationResult:
    """Everything one request produced, and what is needed to reproduce it.

    ``elapsed_s`` is the wall time of the batch the request ran in. ``nan_retry`` tells whether
    any of its images needed the float32 VAE retry.
    """

    request: GenerationRequest
    images: list[GeneratedImage]
    model_name: str
    model_hash: str | None
    elapsed_s: float
    environment: dict[str, str] = field(default_factory=dict)
    nan_retry: bool = False
    resources: dict[str, str] = field(default_factory=dict)
    """Infotext pairs naming the LoRA, embedding and VAE files used, by the WebUI's hashes
    (``Lora hashes``, ``TI hashes``, ``VAE hash``, ``VAE``)."""

    @property
    def seeds(self) -> list[int]:
        return [image.seed for image in self.images]
