"""The default executor: batches run in this process, on the engines of an engine pool."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace

from PIL import Image

from pipeline.domain.prompt.embeddings import chunk_count
from pipeline.domain.request import GenerationRequest
from pipeline.engine.pool import EnginePool, Runner
from pipeline.engine.results import GenerationResult
from pipeline.errors import Cancelled
from pipeline.queue.executor import Failed, Generated, OnStep, Outcome, ShouldCancel, Stopped, Task

log = logging.getLogger(__name__)


PREVIEWS_PER_JOB = 5
"""About how many preview images a job's progress offers (a front door shows what it can)."""


def preview_interval(steps: int) -> int:
    """Steps between previews: about :data:`PREVIEWS_PER_JOB` of them over ``steps``."""
    return max(1, steps // PREVIEWS_PER_JOB)


class LocalExecutor:
    """Runs batches in this process, on the engines of ``engines``; with ``previews``, the
    progress carries small approximate images (decoded cheaply from the latents, see
    :mod:`pipeline.engine.preview`) a few times per job."""

    def __init__(self, engines: EnginePool, *, previews: bool = True) -> None:
        self.engines = engines
        self.previews = previews

    def run(
        self,
        tasks: Sequence[Task],
        *,
        sources: Mapping[str, Image.Image],
        on_step: OnStep,
        should_cancel: ShouldCancel,
    ) -> Iterator[Outcome]:
        if not tasks:
            return
        # 1. The model; one diffusers call per group of equal prompt length (see by_chunk_count)
        try:
            engine = self.engines.for_request(tasks[0].request)
            groups = by_chunk_count(engine, tasks)
        except Exception as error:
            yield Failed(tuple(task.job_id for task in tasks), error)
            return
        # 2. Generate each group, reporting progress and polling for cancellation
        for group in groups:
            yield from self._generate(engine, group, sources, on_step, should_cancel)

    def prepare(self, tasks: Sequence[Task]) -> None:
        """Encode the prompts of ``tasks`` on their model's engine if it is loaded (nothing is
        loaded here), one group per prompt length as :meth:`run` will (see
        :meth:`Engine.encode_ahead <pipeline.engine.core.Engine.encode_ahead>`)."""
        if not tasks:
            return
        engine = self.engines.loaded_for(tasks[0].request)
        if engine is None:
            return
        with engine.text_lock:
            groups = by_chunk_count(engine, tasks)
        for group in groups:
            engine.encode_ahead([replace(task.request, model=engine.model.name) for task in group])

    def _generate(
        self,
        engine: Runner,
        tasks: Sequence[Task],
        sources: Mapping[str, Image.Image],
        on_step: OnStep,
        should_cancel: ShouldCancel,
    ) -> Iterator[Outcome]:
        ids = tuple(task.job_id for task in tasks)
        requests = [replace(task.request, model=engine.model.name) for task in tasks]
        try:
            results = engine.generate(
                requests,
                init_images=sources,
                on_step=lambda progress: on_step(ids, progress),
                should_cancel=lambda: should_cancel(ids),
                preview_every=preview_interval(requests[0].steps) if self.previews else None,
            )
            # A safety check that cannot run fails the batch: nothing goes out unchecked
            results = self.engines.checked(results)
            if len(requests) > 1:
                results = [_with_batch(result, requests, position) for position, result in enumerate(results)]
            made = list(zip(ids, results, strict=True))
        except Cancelled:
            yield Stopped(ids)
            return
        except Exception as error:
            yield Failed(ids, error)
            return
        for job_id, result in made:
            yield Generated(job_id, result)


def by_chunk_count(engine: Runner, tasks: Sequence[Task]) -> list[list[Task]]:
    """Split ``tasks`` by how many 75-token chunks their prompts need.

    A batch pads every prompt to the longest one's chunk count, and the padding changes what the
    UNet attends to; grouping keeps each image identical to a run of its request alone, so it
    reproduces from its row.
    """
    groups: dict[int, list[Task]] = {}
    for task in tasks:
        chunks = chunk_count(engine.pipe, task.request.prompt, task.request.negative_prompt)
        groups.setdefault(chunks, []).append(task)
    return list(groups.values())


def _with_batch(
    result: GenerationResult, requests: Sequence[GenerationRequest], position: int
) -> GenerationResult:
    """``result`` with the engine call it shared recorded in its environment.

    Numerical kernels round differently for different batch sizes (a CPU or GPU matrix product
    with 4 rows may differ in the last bit from one with 6), so a batched image can differ from
    its request run alone by a level or two. With the batch recorded,
    :mod:`pipeline.queue.reproduce` replays the same call and the image reproduces exactly from
    its row.
    """
    batch = {"batch": [json.loads(request.to_json()) for request in requests], "batch_position": position}
    return replace(result, environment={**result.environment, **batch})
