"""Regenerating a stored job and checking that every image comes out pixel-identical."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from pipeline.domain.request import GenerationRequest
from pipeline.engine.pool import EnginePool
from pipeline.engine.results import StepProgress
from pipeline.errors import PipelineError
from pipeline.queue.jobs import JobService, JobSnapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageComparison:
    """One regenerated image against the stored one."""

    index: int
    seed: int
    identical: bool
    max_difference: int
    """The largest difference of any channel of any pixel, 0..255."""
    differing_pixels: int


@dataclass(frozen=True)
class Reproduction:
    job: JobSnapshot
    images: list[ImageComparison]

    @property
    def identical(self) -> bool:
        return bool(self.images) and all(image.identical for image in self.images)


def reproduce_job(
    jobs: JobService,
    engines: EnginePool,
    job_id: int,
    *,
    model: str | None = None,
    on_step: Callable[[StepProgress], None] | None = None,
) -> Reproduction:
    """Regenerate ``job_id`` from its stored request and compare with its stored images.

    ``model`` overrides the stored model name (when the model moved). Nothing is written.
    Identical results need the same device and library versions (see the job's environment).
    """
    # 1. The stored job and its images
    job = jobs.get(job_id)
    if job.status != "done" or not job.images:
        raise ValueError(f"job_id: {job_id} has no stored images to compare (status {job.status})")
    request = job.request if model is None else replace(job.request, model=model)

    # 2. Generate again, exactly as the worker did: in the same batch when it shared one
    engine = engines.for_request(request)
    batch, position = _batch_of(job, request)
    batch = [replace(member, model=engine.model.name) for member in batch]
    try:
        init_images = jobs.images.sources(batch)
    except PipelineError:
        if len(batch) == 1:
            raise
        log.warning("job %d: a source image of its batch is gone; regenerating it alone", job_id)
        batch, position = [batch[position]], 0
        init_images = jobs.images.sources(batch)
    result = engine.generate(batch, init_images=init_images, on_step=on_step)[position]

    # 3. Compare pixel for pixel
    comparisons = []
    for stored, made in zip(job.images, result.images, strict=True):
        original = np.asarray(Image.open(io.BytesIO(jobs.images.read(stored))).convert("RGB"))
        fresh = np.asarray(made.image.convert("RGB"))
        if original.shape != fresh.shape:
            comparisons.append(ImageComparison(stored.index, made.seed, False, 255, original.size // 3))
            continue
        difference = np.abs(original.astype(np.int16) - fresh.astype(np.int16))
        comparisons.append(
            ImageComparison(
                index=stored.index,
                seed=made.seed,
                identical=not difference.any(),
                max_difference=int(difference.max()),
                differing_pixels=int(difference.any(axis=-1).sum()),
            )
        )
    return Reproduction(job, comparisons)


def _batch_of(job: JobSnapshot, request: GenerationRequest) -> tuple[list[GenerationRequest], int]:
    """The requests of the engine call ``job`` ran in (``request`` in its place) and that place."""
    environment = json.loads(job.environment_json) if job.environment_json else {}
    recorded = environment.get("batch")
    position = environment.get("batch_position")
    if not isinstance(recorded, list) or not isinstance(position, int) or not 0 <= position < len(recorded):
        return [request], 0
    try:
        batch = [GenerationRequest.from_json(json.dumps(member)) for member in recorded]
    except (PipelineError, TypeError, ValueError):
        log.warning("job %d: its recorded batch is unreadable; regenerating it alone", job.id)
        return [request], 0
    batch[position] = request
    return batch, position
