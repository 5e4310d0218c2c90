"""Running stored jobs: the job runner and the embedded GPU worker thread.

The worker keeps the GPU busy: it takes the next fair batch of compatible jobs, runs it, and
hands the results to a saver thread (PNG encoding, the image store and database writes) so the
next batch starts at once. State changes are written before they are announced to listeners.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from PIL import Image

from pipeline.engine import GenerationResult, StepProgress
from pipeline.errors import Cancelled, PipelineError
from pipeline.jobs import JobService, JobSnapshot
from pipeline.metadata import format_infotext, write_png
from pipeline.pool import EnginePool, Runner
from pipeline.prompt.embeddings import chunk_count
from pipeline.request import GenerationRequest
from pipeline.scheduler import FairScheduler
from storage import (
    InvalidTransition,
    NewImage,
    fail_job,
    find_image_path,
    finish_job,
    get_job,
    is_cancel_requested,
    mark_cancelled,
    requeue_interrupted_jobs,
    start_job,
)

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.5
INTERNAL_ERROR = "Something went wrong while generating; the admin can find the details in the log."


class WorkerEvents:
    """What the worker tells the outside world; called from worker threads. Override what you need."""

    def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
        """A denoising step of ``job_id`` finished."""

    def finished(self, job_id: int) -> None:
        """``job_id`` is done, failed or cancelled, and its row says so."""


Finished = tuple[int, GenerationResult]
"""A started job's id and what the engine made for it."""


class JobRunner:
    """Runs one batch of stored jobs through the engine and records the results."""

    def __init__(self, *, jobs: JobService, engines: EnginePool) -> None:
        self.jobs = jobs
        self.engines = engines

    def run(self, job_ids: Sequence[int], *, events: WorkerEvents | None = None) -> list[Finished]:
        """Generate ``job_ids`` (compatible, queued jobs); return each started job's result, unsaved.

        Jobs that fail or are cancelled are recorded here; save the rest with :meth:`save`.
        """
        events = events or WorkerEvents()
        # 1. Start the jobs (a job cancelled, deleted or taken by another worker meanwhile is skipped)
        started: list[JobSnapshot] = []
        for job_id in job_ids:
            job = self._start(job_id)
            if job is not None:
                started.append(job)
        if not started:
            return []
        finished: list[Finished] = []
        try:
            # 2. The model; one diffusers call per group of equal prompt length (see _by_chunk_count)
            try:
                engine = self.engines.for_request(started[0].request)
                groups = _by_chunk_count(engine, started)
            except Exception as error:
                self._fail_all([job.id for job in started], error, events)
                return []
            for group in groups:
                finished.extend(self._generate(engine, group, events))
        except Exception:
            # No started job may stay running: the ones neither generated nor recorded fail
            log.exception("the batch of jobs %s stopped unexpectedly", [job.id for job in started])
            generated = {job_id for job_id, _ in finished}
            self._fail_unrecorded([job.id for job in started if job.id not in generated], events)
        return finished

    def _start(self, job_id: int) -> JobSnapshot | None:
        with self.jobs.database.session() as session:
            try:
                job = start_job(session, job_id=job_id)
            except InvalidTransition as error:
                log.info("job %d not started: %s", job_id, error)
                return None
            if job is None:
                return None
            session.flush()
            return JobSnapshot.of(job)

    def _generate(self, engine: Runner, jobs: Sequence[JobSnapshot], events: WorkerEvents) -> list[Finished]:
        # 3. The source images of img2img and upscale jobs; a job whose source is gone fails alone
        jobs, init_images = self._with_sources(jobs, events)
        if not jobs:
            return []
        ids = [job.id for job in jobs]

        def on_step(progress: StepProgress) -> None:
            for job_id in ids:
                events.progress(job_id, progress.step, progress.total_steps, progress.elapsed_s)

        try:
            # 4. Generate, reporting progress and polling for cancellation
            requests = [replace(job.request, model=engine.model.name) for job in jobs]
            results = engine.generate(
                requests, init_images=init_images, on_step=on_step, should_cancel=_CancelPoll(self, ids)
            )
            if len(requests) > 1:
                results = [_with_batch(result, requests, position) for position, result in enumerate(results)]
            return list(zip(ids, results, strict=True))
        except Cancelled:
            self._record_each(ids, cancelled=True, events=events)
            return []
        except Exception as error:
            self._fail_all(ids, error, events)
            return []

    def _with_sources(
        self, jobs: Sequence[JobSnapshot], events: WorkerEvents
    ) -> tuple[list[JobSnapshot], dict[str, Image.Image]]:
        """The jobs whose source image (if any) could be read, and those images by sha256."""
        ready: list[JobSnapshot] = []
        images: dict[str, Image.Image] = {}
        for job in jobs:
            source = job.request.init_image
            if source is not None and source not in images:
                try:
                    images.update(self.init_images([job.request]))
                except Exception as error:
                    self._fail_all([job.id], error, events)
                    continue
            ready.append(job)
        return ready, images

    def _fail_all(self, job_ids: Sequence[int], error: Exception, events: WorkerEvents) -> None:
        """Record ``error`` on every job: its own words for known errors, a pointer to the log otherwise."""
        if isinstance(error, PipelineError):
            self._record_each(job_ids, error=str(error), events=events)
        else:
            log.error("jobs %s failed unexpectedly", job_ids, exc_info=error)
            self._record_each(job_ids, error=INTERNAL_ERROR, events=events)

    def _fail_unrecorded(self, job_ids: Sequence[int], events: WorkerEvents) -> None:
        """Fail those of ``job_ids`` still ``running`` (the rest were recorded already)."""
        for job_id in job_ids:
            try:
                with self.jobs.database.session() as session:
                    if get_job(session, job_id=job_id).status != "running":
                        continue
                self._record_each([job_id], error=INTERNAL_ERROR, events=events)
            except Exception:
                log.exception("job %d could not be recorded as failed", job_id)

    def save(self, finished: Sequence[Finished], *, events: WorkerEvents | None = None) -> None:
        """Write every image (PNG with A1111 parameters) to the store, then mark the jobs done."""
        events = events or WorkerEvents()
        for job_id, result in finished:
            try:
                if self._cancel_requested(job_id):
                    self._record_each([job_id], cancelled=True, events=events)
                    continue
                images = [
                    self._store_image(result, image.index, image.seed, image.image) for image in result.images
                ]
                with self.jobs.database.session() as session:
                    finish_job(
                        session,
                        job_id=job_id,
                        images=images,
                        model_name=result.model_name,
                        model_hash=result.model_hash,
                        environment_json=_environment_json(result),
                    )
            except Exception:
                log.exception("saving the images of job %d failed", job_id)
                try:
                    self._record_each([job_id], error=INTERNAL_ERROR, events=events)
                except Exception:
                    log.exception("job %d could not be recorded as failed", job_id)
                continue
            _announce(events, job_id)

    def run_and_save(self, job_ids: Sequence[int], *, events: WorkerEvents | None = None) -> None:
        """Run and save in the calling thread (the command line does this)."""
        self.save(self.run(job_ids, events=events), events=events)

    # -- helpers ------------------------------------------------------------------------------

    def init_images(self, requests: Sequence[GenerationRequest]) -> dict[str, Image.Image]:
        """The stored images that img2img and upscale requests start from, by sha256."""
        images: dict[str, Image.Image] = {}
        for request in requests:
            if request.init_image and request.init_image not in images:
                with self.jobs.database.session() as session:
                    path = find_image_path(session, sha256=request.init_image)
                if path is None:
                    raise PipelineError(f"The source image {request.init_image[:12]}… no longer exists.")
                try:
                    data = self.jobs.store.read(path)
                    images[request.init_image] = Image.open(io.BytesIO(data)).convert("RGB")
                except OSError as error:
                    log.warning("source image %s unreadable: %s", path, error)
                    raise PipelineError(
                        f"The source image {request.init_image[:12]}… could not be read."
                    ) from error
        return images

    def _store_image(self, result: GenerationResult, index: int, seed: int, image: Image.Image) -> NewImage:
        parameters = format_infotext(
            result.request, seed=seed, model_name=result.model_name, model_hash=result.model_hash
        )
        stored = self.jobs.store.put(write_png(image, parameters), suffix=".png")
        return NewImage(
            index=index,
            seed=seed,
            width=image.width,
            height=image.height,
            sha256=stored.sha256,
            path=stored.path,
            size_bytes=stored.size_bytes,
        )

    def _cancel_requested(self, job_id: int) -> bool:
        with self.jobs.database.session() as session:
            return is_cancel_requested(session, job_id=job_id)

    def _record_each(
        self,
        job_ids: Sequence[int],
        *,
        cancelled: bool = False,
        error: str | None = None,
        events: WorkerEvents,
    ) -> None:
        for job_id in job_ids:
            with self.jobs.database.session() as session:
                if cancelled:
                    mark_cancelled(session, job_id=job_id)
                else:
                    fail_job(session, job_id=job_id, error=error or INTERNAL_ERROR)
            log.info(
                "job %d %s%s", job_id, "cancelled" if cancelled else "failed", f": {error}" if error else ""
            )
            _announce(events, job_id)


def _announce(events: WorkerEvents, job_id: int) -> None:
    """``events.finished``; a listener that fails (a closed event loop) does not undo the stored state."""
    try:
        events.finished(job_id)
    except Exception:
        log.exception("announcing that job %d finished failed", job_id)


class _CancelPoll:
    """``should_cancel`` for a batch: true once every job in it asked to be cancelled.

    A batch shared with other people's jobs keeps running when only some are cancelled; those
    are recorded as cancelled when the batch ends. The database is read at most every 0.5 s.
    """

    def __init__(self, runner: JobRunner, job_ids: Sequence[int]) -> None:
        self.runner = runner
        self.job_ids = list(job_ids)
        self._checked = float("-inf")
        self._answer = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= CANCEL_POLL_S:
            self._checked = now
            self._answer = all(self.runner._cancel_requested(job_id) for job_id in self.job_ids)
        return self._answer


class Worker:
    """The embedded GPU worker: a thread that runs fair batches until stopped."""

    def __init__(
        self,
        runner: JobRunner,
        scheduler: FairScheduler,
        *,
        events: WorkerEvents | None = None,
        poll_interval: float = 2.0,
    ) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self.events = events or WorkerEvents()
        self.poll_interval = poll_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saver: ThreadPoolExecutor | None = None
        self._saver_lock = threading.Lock()

    def recover(self) -> list[int]:
        """Put jobs left ``running`` by a crash back in the queue (call before :meth:`start`)."""
        with self.runner.jobs.database.session() as session:
            requeued = requeue_interrupted_jobs(session)
        if requeued:
            log.info("requeued %d interrupted job(s): %s", len(requeued), requeued)
        return requeued

    def start(self) -> None:
        if self._thread is not None:
            if self._thread.is_alive():
                if self._stop.is_set():
                    log.warning("the worker thread is still finishing its batch after a stop; not started")
                return
            self._thread = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="nanke-worker", daemon=True)
        self._thread.start()

    def wake(self, _job_id: int | None = None) -> None:
        """A job was queued: look at the queue now instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop after the current batch; pending saves finish first."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                # Kept, so start() does not run a second worker beside it; it saves inline now
                log.warning("the worker thread did not stop within %s s; it finishes its batch", timeout)
            else:
                self._thread = None
        with self._saver_lock:
            saver, self._saver = self._saver, None
        if saver is not None:
            saver.shutdown(wait=True)

    def run_once(self) -> bool:
        """Run the next batch if there is one; ``True`` when something ran."""
        queued = self.runner.jobs.queued()
        batch = self.scheduler.next_batch(queued)
        if not batch:
            return False
        self.scheduler.served(batch)
        job_ids = [job.job_id for job in batch]
        finished = self.runner.run(job_ids, events=self.events)
        if finished:
            self._save_later(finished)
        return True

    def _save_later(self, finished: list[Finished]) -> None:
        """Hand ``finished`` to the saver thread (started on first use, and again after a restart).

        Once stopping, save here instead: :meth:`stop` may already have shut the saver down.
        """
        with self._saver_lock:
            if not self._stop.is_set():
                if self._saver is None:
                    self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nanke-saver")
                future = self._saver.submit(self.runner.save, finished, events=self.events)
                future.add_done_callback(_log_save_failure)
                return
        self.runner.save(finished, events=self.events)

    def _loop(self) -> None:
        log.info("worker started")
        while not self._stop.is_set():
            # Cleared before looking at the queue, so a job queued meanwhile is not missed
            self._wake.clear()
            try:
                ran = self.run_once()
            except Exception:
                log.exception("worker loop error; retrying in %g s", self.poll_interval)
                ran = False
            if not ran and not self._stop.is_set():
                self._wake.wait(self.poll_interval)
        log.info("worker stopped")


def _log_save_failure(future: Future[None]) -> None:
    error = None if future.cancelled() else future.exception()
    if error is not None:
        log.error("saving a batch failed", exc_info=error)


def _by_chunk_count(engine: Runner, jobs: Sequence[JobSnapshot]) -> list[list[JobSnapshot]]:
    """Split ``jobs`` by how many 75-token chunks their prompts need.

    A batch pads every prompt to the longest one's chunk count, and the padding changes what the
    UNet attends to; grouping keeps each image identical to a run of its request alone, so it
    reproduces from its row.
    """
    groups: dict[int, list[JobSnapshot]] = {}
    for job in jobs:
        chunks = chunk_count(engine.pipe, job.request.prompt, job.request.negative_prompt)
        groups.setdefault(chunks, []).append(job)
    return list(groups.values())


def _with_batch(
    result: GenerationResult, requests: Sequence[GenerationRequest], position: int
) -> GenerationResult:
    """``result`` with the engine call it shared recorded in its environment.

    Numerical kernels round differently for different batch sizes (a CPU or GPU matrix product
    with 4 rows may differ in the last bit from one with 6), so a batched image can differ from
    its request run alone by a level or two. With the batch recorded, :mod:`pipeline.reproduce`
    replays the same call and the image reproduces exactly from its row.
    """
    batch = {"batch": [json.loads(request.to_json()) for request in requests], "batch_position": position}
    return replace(result, environment={**result.environment, **batch})


def _environment_json(result: GenerationResult) -> str:
    return json.dumps({**result.environment, "nan_retry": result.nan_retry}, sort_keys=True)
