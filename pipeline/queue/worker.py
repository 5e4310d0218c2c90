"""Running stored jobs: the job runner and the embedded GPU worker thread.

The worker keeps the GPU busy: it takes the next fair batch of compatible jobs, has an
:class:`~pipeline.queue.executor.Executor` generate it, and hands the results to a saver thread
(PNG encoding and the job interface's writes) so the next batch starts at once. State changes
are written before they are announced to listeners.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from PIL import Image

from pipeline.domain.grid import Picture
from pipeline.domain.metadata import format_infotext, write_png
from pipeline.domain.text import one_line
from pipeline.engine.results import GeneratedImage, GenerationResult, StepProgress
from pipeline.errors import ModelError, PipelineError
from pipeline.queue.doorbell import Doorbell
from pipeline.queue.executor import Encoded, Executor, Failed, Generated, Returned, Stopped, Task
from pipeline.queue.jobs import ImageFile, JobService, JobSnapshot
from pipeline.queue.scheduler import FairScheduler, QueuedJob

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.5
ENCODERS = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="nanke-png")
"""The threads that encode finished images as PNG, shared by every runner."""
INTERNAL_ERROR = "Something went wrong while generating; the admin can find the details in the log."
MODEL_UNAVAILABLE = "This model cannot be used right now; the admin can find why in the log."
TIME_LIMIT_ERROR = (
    "This job ran longer than this server's limit of {limit_s:g} s and was stopped; "
    "try fewer images, fewer steps or a smaller size."
)
"""The failure of a job stopped by NANKE_JOB_TIMEOUT (a front door may translate these reasons)."""


class WorkerEvents:
    """What the worker tells the outside world; called from worker threads. Override what you need."""

    def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
        """A denoising step of ``job_id`` finished."""

    def preview(self, job_id: int, images: Sequence[Image.Image]) -> None:
        """Small approximate images of ``job_id`` as it denoises (one per image, in order); every
        few steps. Called on the GPU's thread: hand them over, do not encode them here."""

    def finished(self, job_id: int) -> None:
        """``job_id`` is done, failed or cancelled, and its row says so."""


class EventFanout(WorkerEvents):
    """Tells every listener (the bot's delivery, the HTTP API) what the worker says; one that
    fails is logged and does not keep the news from the others."""

    def __init__(self, *listeners: WorkerEvents) -> None:
        self.listeners = listeners

    def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
        for listener in self.listeners:
            try:
                listener.progress(job_id, step, total, elapsed_s)
            except Exception:
                log.exception("a listener failed on the progress of job %d", job_id)

    def preview(self, job_id: int, images: Sequence[Image.Image]) -> None:
        for listener in self.listeners:
            try:
                listener.preview(job_id, images)
            except Exception:
                log.exception("a listener failed on a preview of job %d", job_id)

    def finished(self, job_id: int) -> None:
        for listener in self.listeners:
            try:
                listener.finished(job_id)
            except Exception:
                log.exception("a listener failed on the end of job %d", job_id)


Finished = Generated | Encoded
"""A started job's images, made (by this process's engines) or made and encoded (by a remote worker)."""


class JobRunner:
    """Runs one batch of stored jobs through an executor and records the results.

    A group of jobs still generating after ``time_limit_s`` seconds is stopped and failed (``None``:
    no limit). A runner of a remote batch (see :meth:`bound`) records only while the jobs still
    run in its ``dispatch_id``: what a stale dispatch reports is ignored.
    """

    def __init__(
        self,
        *,
        jobs: JobService,
        executor: Executor,
        time_limit_s: float | None = None,
        dispatch_id: str | None = None,
    ) -> None:
        self.jobs = jobs
        self.executor = executor
        self.time_limit_s = time_limit_s
        self.dispatch_id = dispatch_id

    def bound(self, *, executor: Executor, dispatch_id: str) -> JobRunner:
        """This runner for one remote batch: its executor and its dispatch."""
        return JobRunner(
            jobs=self.jobs, executor=executor, time_limit_s=self.time_limit_s, dispatch_id=dispatch_id
        )

    def start(self, job_ids: Sequence[int], *, worker: str | None = None) -> list[JobSnapshot]:
        """Queued → running for each of ``job_ids`` (in this runner's dispatch, sent to ``worker``);
        a job cancelled, deleted or taken by another worker meanwhile is skipped. One transaction."""
        return self.jobs.runs.start_all(job_ids, dispatch_id=self.dispatch_id, worker=worker)

    def prepare(self, queued: Sequence[QueuedJob]) -> None:
        """Let the executor prepare ``queued``, the batch after the current one, while the current
        one runs. A failure here costs only the head start."""
        try:
            self.executor.prepare([Task(job.job_id, job.request) for job in queued])
        except Exception:
            log.warning("preparing the next batch ahead failed; it is prepared when it runs", exc_info=True)

    def run(self, job_ids: Sequence[int], *, events: WorkerEvents | None = None) -> list[Finished]:
        """Generate ``job_ids`` (compatible, queued jobs); return each started job's result, unsaved.

        Jobs that fail or are cancelled are recorded here; save the rest with :meth:`save`.
        """
        return self.run_started(self.start(job_ids), events=events)

    def run_started(
        self, started: Sequence[JobSnapshot], *, events: WorkerEvents | None = None
    ) -> list[Finished]:
        """:meth:`run` for jobs already started (by :meth:`start`)."""
        events = events or WorkerEvents()
        if not started:
            return []
        finished: list[Finished] = []
        try:
            # 1. The source images of img2img and upscale jobs; a job whose source is gone fails alone
            tasks, sources = self._with_sources(started, events)

            def on_step(ids: Sequence[int], progress: StepProgress) -> None:
                for position, job_id in enumerate(ids):
                    events.progress(job_id, progress.step, progress.total_steps, progress.elapsed_s)
                    if progress.previews:
                        own = sorted(
                            (index, image)
                            for (at, index), image in progress.previews.items()
                            if at == position
                        )
                        if own:
                            events.preview(job_id, [image for _, image in own])

            # 2. Generate, recording each failure or cancellation as it comes
            poll = _CancelPoll(self.jobs, time_limit_s=self.time_limit_s)
            outcomes = self.executor.run(tasks, sources=sources, on_step=on_step, should_cancel=poll)
            for outcome in outcomes:
                if isinstance(outcome, Generated | Encoded):
                    finished.append(outcome)
                elif isinstance(outcome, Stopped) and poll.timed_out(outcome.job_ids):
                    self._record_each(outcome.job_ids, error=_too_long(self.time_limit_s), events=events)
                elif isinstance(outcome, Stopped):
                    self._record_each(outcome.job_ids, cancelled=True, events=events)
                elif isinstance(outcome, Failed):
                    self._fail_all(outcome.job_ids, outcome.error, events)
                elif isinstance(outcome, Returned):
                    self._requeue(outcome)
        except Exception:
            # No started job may stay running: the ones neither generated nor recorded fail
            log.exception("the batch of jobs %s stopped unexpectedly", [job.id for job in started])
            generated = {item.job_id for item in finished}
            self._fail_unrecorded([job.id for job in started if job.id not in generated], events)
        return finished

    def _requeue(self, returned: Returned) -> None:
        """A remote batch that did not run to an outcome goes back to the queue."""
        if self.dispatch_id is None:
            raise RuntimeError("only a remote batch's jobs can be returned to the queue")
        log.warning("jobs %s go back to the queue: %s", list(returned.job_ids), returned.reason)
        self.jobs.runs.requeue_dispatch(self.dispatch_id, counted=returned.counted)

    def _with_sources(
        self, jobs: Sequence[JobSnapshot], events: WorkerEvents
    ) -> tuple[list[Task], dict[str, Image.Image]]:
        """The jobs whose source image (if any) could be read, and those images by sha256."""
        ready: list[Task] = []
        images: dict[str, Image.Image] = {}
        for job in jobs:
            source = job.request.init_image
            if source is not None and source not in images:
                try:
                    images.update(self.jobs.images.sources([job.request]))
                except Exception as error:
                    self._fail_all([job.id], error, events)
                    continue
            ready.append(Task(job.id, job.request))
        return ready, images

    def _fail_all(self, job_ids: Sequence[int], error: Exception, events: WorkerEvents) -> None:
        """Record ``error`` on every job: its own words for known errors, a pointer to the log otherwise.

        A model that cannot be loaded is the admin's business: its details (paths, causes) go to
        the log, and the job says only that the model is unavailable.
        """
        if isinstance(error, ModelError):
            log.warning("jobs %s: %s", list(job_ids), one_line(str(error)))
            self._record_each(job_ids, error=MODEL_UNAVAILABLE, events=events)
        elif isinstance(error, PipelineError):
            self._record_each(job_ids, error=str(error), events=events)
        else:
            log.error("jobs %s failed unexpectedly", list(job_ids), exc_info=error)
            self._record_each(job_ids, error=INTERNAL_ERROR, events=events)

    def _fail_unrecorded(self, job_ids: Sequence[int], events: WorkerEvents) -> None:
        """Fail those of ``job_ids`` still ``running`` (the rest were recorded already)."""
        for job_id in job_ids:
            try:
                if self.jobs.runs.is_running(job_id):
                    self._record_each([job_id], error=INTERNAL_ERROR, events=events)
            except Exception:
                log.exception("job %d could not be recorded as failed", job_id)

    def save(self, finished: Sequence[Finished], *, events: WorkerEvents | None = None) -> None:
        """Encode every image (PNG with A1111 parameters) and each job's grid, store them, then
        mark the jobs done.

        The PNGs of the whole batch are encoded side by side (zlib lets go of the interpreter
        lock), each job's results written as soon as its own images are ready. A remote worker's
        images and grids come encoded already.
        """
        events = events or WorkerEvents()
        pending = [encode_later(item) for item in finished]
        for item, encoded in zip(finished, pending, strict=True):
            job_id = item.job_id
            try:
                if self.jobs.runs.cancel_requested(job_id):
                    self._record_each([job_id], cancelled=True, events=events)
                    continue
                made = encoded()
                stored = self.jobs.runs.finish(
                    job_id,
                    images=made.images,
                    model_name=made.model_name,
                    model_hash=made.model_hash,
                    environment_json=made.environment_json,
                    dispatch_id=self.dispatch_id,
                    grid=made.grid,
                )
            except Exception:
                log.exception("saving the images of job %d failed", job_id)
                try:
                    self._record_each([job_id], error=INTERNAL_ERROR, events=events)
                except Exception:
                    log.exception("job %d could not be recorded as failed", job_id)
                continue
            if stored:
                _announce(events, job_id)

    def run_and_save(self, job_ids: Sequence[int], *, events: WorkerEvents | None = None) -> None:
        """Run and save in the calling thread (the command line does this)."""
        self.save(self.run(job_ids, events=events), events=events)

    def _record_each(
        self,
        job_ids: Sequence[int],
        *,
        cancelled: bool = False,
        error: str | None = None,
        events: WorkerEvents,
    ) -> None:
        for job_id in job_ids:
            if cancelled:
                recorded = self.jobs.runs.cancelled(job_id, dispatch_id=self.dispatch_id)
            else:
                recorded = self.jobs.runs.fail(
                    job_id, error=error or INTERNAL_ERROR, dispatch_id=self.dispatch_id
                )
            if not recorded:
                continue
            log.info(
                "job %d %s%s", job_id, "cancelled" if cancelled else "failed", f": {error}" if error else ""
            )
            _announce(events, job_id)


def encode_later(item: Finished) -> Callable[[], Encoded]:
    """Start encoding ``item``'s PNGs (each image's and the grid's) side by side on the encoder
    threads; the function returned waits for them. A remote worker's come encoded already."""
    if isinstance(item, Encoded):
        return lambda: item
    result = item.result
    images = [ENCODERS.submit(_encode_image, result, image) for image in result.images]
    grid = ENCODERS.submit(_encode_grid, result)

    def encoded() -> Encoded:
        return Encoded(
            item.job_id,
            tuple(image.result() for image in images),
            result.model_name,
            result.model_hash,
            _environment_json(result),
            grid=grid.result(),
        )

    return encoded


def _parameters(result: GenerationResult, generated: GeneratedImage) -> str:
    """A1111's ``parameters`` text of one image of ``result``."""
    return format_infotext(
        result.request,
        seed=generated.seed,
        model_name=result.model_name,
        model_hash=result.model_hash,
        extra=result.resources,
    )


def _encode_image(result: GenerationResult, generated: GeneratedImage) -> ImageFile:
    """One finished image as the PNG that is stored: its pixels and A1111's ``parameters`` text."""
    image = generated.image
    return ImageFile(
        index=generated.index,
        seed=generated.seed,
        width=image.width,
        height=image.height,
        data=write_png(image, _parameters(result, generated)),
        flagged=generated.flagged,
    )


def _encode_grid(result: GenerationResult) -> bytes | None:
    """The PNG a delivery of all of ``result``'s images posts: their grid, with the first image's
    parameters (as the WebUI does); ``None`` for a single image, whose own PNG is posted."""
    if len(result.images) < 2:
        return None
    ordered = sorted(result.images, key=lambda generated: generated.index)
    picture = Picture.of([generated.image for generated in ordered], _parameters(result, ordered[0]))
    return write_png(picture.image, picture.parameters)


def _announce(events: WorkerEvents, job_id: int) -> None:
    """``events.finished``; a listener that fails (a closed event loop) does not undo the stored state."""
    try:
        events.finished(job_id)
    except Exception:
        log.exception("announcing that job %d finished failed", job_id)


class _CancelPoll:
    """``should_cancel`` for a batch: true for a group once every job in it asked to be cancelled,
    or once it has run longer than ``time_limit_s``.

    A group shared with other people's jobs keeps running when only some are cancelled; those
    are recorded as cancelled when the batch ends. The database is read at most every 0.5 s per group.
    """

    def __init__(self, jobs: JobService, *, time_limit_s: float | None = None) -> None:
        self.jobs = jobs
        self.time_limit_s = time_limit_s
        self._answers: dict[tuple[int, ...], tuple[float, bool]] = {}
        self._started: dict[tuple[int, ...], float] = {}
        self._timed_out: set[tuple[int, ...]] = set()

    def __call__(self, job_ids: Sequence[int]) -> bool:
        key = tuple(job_ids)
        now = time.monotonic()
        started = self._started.setdefault(key, now)
        if self.time_limit_s is not None and now - started > self.time_limit_s:
            self._timed_out.add(key)
            return True
        checked, answer = self._answers.get(key, (float("-inf"), False))
        if now - checked >= CANCEL_POLL_S:
            answer = all(self.jobs.runs.cancel_requested(job_id) for job_id in key)
            self._answers[key] = (now, answer)
        return answer

    def timed_out(self, job_ids: Sequence[int]) -> bool:
        """Whether the group ``job_ids`` was stopped for running too long (not cancelled)."""
        return tuple(job_ids) in self._timed_out


def _too_long(limit_s: float | None) -> str:
    return TIME_LIMIT_ERROR.format(limit_s=limit_s)


class Worker:
    """The embedded GPU worker: a thread that runs fair batches until stopped.

    It looks at the queue when ``doorbell`` rings (the job interface rings it on every submit)
    and every ``poll_interval`` seconds otherwise.
    """

    def __init__(
        self,
        runner: JobRunner,
        scheduler: FairScheduler,
        *,
        doorbell: Doorbell | None = None,
        events: WorkerEvents | None = None,
        poll_interval: float = 2.0,
        batch_pixels: int | None = None,
    ) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self.batch_pixels = batch_pixels
        """The most pixels one batch may hold (what the GPU's memory allows); ``None``: no limit."""
        self.events = events or WorkerEvents()
        self.poll_interval = poll_interval
        self._wake = doorbell if doorbell is not None else Doorbell()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saver: ThreadPoolExecutor | None = None
        self._saver_lock = threading.Lock()
        self._planner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nanke-planner")
        self._planned: Future[list[QueuedJob]] | None = None

    def recover(self) -> list[int]:
        """Put jobs left ``running`` by a crash back in the queue (call before :meth:`start`)."""
        return self.runner.jobs.runs.requeue_interrupted()

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
        self._wake.ring()

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
        self._planned = None  # chosen for a batch that will not follow: chosen afresh at the next start

    def run_once(self) -> bool:
        """Run the next batch if there is one; ``True`` when something ran.

        The batch after it is chosen while its last denoising step and its decoding run (reading
        and parsing the queue, the scheduler's choice, then the executor's preparation: its
        prompts' text embeddings), so the GPU does not wait for the database or the text encoders
        between batches; jobs queued after that moment wait for the batch after.
        """
        batch = self._take_planned() or self._choose()
        if not batch:
            return False
        self.scheduler.served(batch)
        job_ids = [job.job_id for job in batch]
        finished = self.runner.run(job_ids, events=_PlanningAhead(self.events, self._plan))
        if finished:
            self._save_later(finished)
        return True

    def _choose(self) -> list[QueuedJob]:
        return self.scheduler.next_batch(self.runner.jobs.runnable(), max_pixels=self.batch_pixels)

    def _plan(self) -> None:
        """Choose and prepare the next batch in the planner thread (once per batch)."""
        if self._planned is None and not self._stop.is_set():
            self._planned = self._planner.submit(self._choose_ahead)

    def _choose_ahead(self) -> list[QueuedJob]:
        batch = self._choose()
        if batch and not self._stop.is_set():
            self.runner.prepare(batch)
        return batch

    def _take_planned(self) -> list[QueuedJob]:
        planned, self._planned = self._planned, None
        if planned is None:
            return []
        try:
            return planned.result()
        except Exception:
            log.exception("choosing the next batch ahead failed; choosing it now")
            return []

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


class _PlanningAhead(WorkerEvents):
    """Passes the batch's events on, and has the next batch chosen once a group reaches its last
    denoising step (its decoding, the safety check and the batch's other groups still to come)."""

    def __init__(self, events: WorkerEvents, plan: Callable[[], None]) -> None:
        self.events = events
        self.plan = plan

    def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
        self.events.progress(job_id, step, total, elapsed_s)
        if step >= total:
            self.plan()

    def preview(self, job_id: int, images: Sequence[Image.Image]) -> None:
        self.events.preview(job_id, images)

    def finished(self, job_id: int) -> None:
        self.events.finished(job_id)


def _log_save_failure(future: Future[None]) -> None:
    error = None if future.cancelled() else future.exception()
    if error is not None:
        log.error("saving a batch failed", exc_info=error)


def _environment_json(result: GenerationResult) -> str:
    """What the job's row records of how it was made: the engine's environment, whether the
    float32 VAE retry ran, and the LoRA, embedding and VAE files used."""
    return json.dumps(
        {**result.environment, "nan_retry": result.nan_retry, "resources": result.resources}, sort_keys=True
    )
