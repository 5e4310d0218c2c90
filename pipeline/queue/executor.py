"""The executor seam: "run this batch", between the worker (the queue side) and the engines.

The worker decides what runs (the scheduler's fair batch), starts the jobs and records their
outcomes; an :class:`Executor` only turns a batch of requests into images. The default,
:class:`~pipeline.queue.local_executor.LocalExecutor`, runs them in this process on the engines;
:class:`~pipeline.queue.remote.dispatch.RemoteExecutor` sends them to a GPU worker on another
machine through Celery, without either side changing.
This module holds only the seam and its values, so it imports no torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from pipeline.domain.request import GenerationRequest
from pipeline.engine.results import GenerationResult, StepProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageFile:
    """One finished image, encoded (a PNG with its A1111 parameters), to be stored with its job."""

    index: int
    seed: int
    width: int
    height: int
    data: bytes
    suffix: str = ".png"
    flagged: bool = False
    """The image safety check flagged it."""


@dataclass(frozen=True)
class Task:
    """One started job of a batch: its id and the request to generate."""

    job_id: int
    request: GenerationRequest


@dataclass(frozen=True)
class Generated:
    """A job's images, made but not saved yet."""

    job_id: int
    result: GenerationResult


@dataclass(frozen=True)
class Encoded:
    """A job's images, made and encoded elsewhere (a remote GPU worker): PNGs ready to store."""

    job_id: int
    images: tuple[ImageFile, ...]
    model_name: str | None
    model_hash: str | None
    environment_json: str | None
    grid: bytes | None = None
    """The PNG of the images' grid, as posted (``None`` for a single image)."""


@dataclass(frozen=True)
class Returned:
    """These jobs did not run to an outcome here and go back to the queue: their worker was lost,
    they timed out, or the broker lost them. ``counted`` is false when they never started (the
    attempt is given back)."""

    job_ids: tuple[int, ...]
    reason: str
    counted: bool = True


@dataclass(frozen=True)
class Failed:
    """These jobs could not be generated, for this reason."""

    job_ids: tuple[int, ...]
    error: Exception


@dataclass(frozen=True)
class Stopped:
    """These jobs were cancelled while they ran."""

    job_ids: tuple[int, ...]


Outcome = Generated | Encoded | Failed | Stopped | Returned
OnStep = Callable[[Sequence[int], StepProgress], None]
"""Called after every denoising step with the ids of the jobs that share it."""
ShouldCancel = Callable[[Sequence[int]], bool]
"""Polled after every step with the ids of the jobs that share it: stop when it says so."""


class Executor(Protocol):
    """Runs batches of compatible requests (the scheduler's batches) on some GPU."""

    def run(
        self,
        tasks: Sequence[Task],
        *,
        sources: Mapping[str, Image.Image],
        on_step: OnStep,
        should_cancel: ShouldCancel,
    ) -> Iterator[Outcome]:
        """Generate ``tasks``, yielding each task's outcome as soon as it is known.

        ``sources`` holds the images img2img and upscale requests start from, by sha256. Every
        task gets exactly one outcome, unless the iterator itself raises (the caller then fails
        the tasks that have none) or it ends early because its process is stopping (a remote
        batch: the tasks with no outcome stay running, and the next start picks them up again).
        """
        ...

    def prepare(self, tasks: Sequence[Task]) -> None:
        """``tasks`` are the batch that runs next: prepare what can be prepared for it while the
        current batch runs (called from another thread than :meth:`run`). Only a head start:
        :meth:`run` must give the same outcomes with or without it."""
        ...
