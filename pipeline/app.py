"""The composition root: everything nanke runs on, built from the settings and wired by construction.

The command line and the bot share it, and it imports no discord.py. Each part is built on
first use, so a command that needs only the model catalog opens no database, one that only
reads jobs loads no torch, and every part is built once::

    app = App(load_settings())
    job = app.jobs.submit(request, requester=Requester(name="local"))
    app.runner.run_and_save([job.id])
"""

from __future__ import annotations

import logging
import tempfile
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.domain.models.catalog import ModelCatalog
from pipeline.domain.models.resources import Resources
from pipeline.domain.prompt.styles import StyleFile
from pipeline.engine.results import EngineOptions
from pipeline.errors import StoreError
from pipeline.queue.doorbell import Doorbell
from pipeline.queue.executor import Executor
from pipeline.queue.jobs import JobService, JobStore
from pipeline.queue.scheduler import FairScheduler
from pipeline.queue.worker import JobRunner, Worker, WorkerEvents
from pipeline.settings import Settings, SettingsError

if TYPE_CHECKING:
    from celery import Celery

    from pipeline.engine.pool import EnginePool
    from pipeline.queue.remote.fleet import Fleet
    from pipeline.queue.worker_status import WorkerStatus

log = logging.getLogger(__name__)

AUTO_MAX_IMAGES = 16
"""With NANKE_MAX_BATCH=auto: the most images in one batch, whatever the memory."""


def ensure_writable(folder: Path, *, setting: str) -> None:
    """Create ``folder`` if needed and check a file can be written there; else one line naming ``setting``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        why = error.strerror or type(error).__name__
        raise SettingsError([f"{setting}: {str(folder)!r} cannot be written to ({why})"]) from None


def engine_options(settings: Settings) -> EngineOptions:
    """Memory options (the defaults suit a GPU with room to spare; NANKE_LOW_VRAM saves memory)
    and the GPU speed-ups of NANKE_GPU_TUNING."""
    if not settings.low_vram:
        return EngineOptions(tuning=settings.gpu_tuning)
    return EngineOptions(
        attention_slicing=True,
        vae_slicing=True,
        vae_tiling=True,
        cpu_offload=True,
        tuning=settings.gpu_tuning,
    )


class App:
    """The database and image store, model catalog, engines, job interface, runner and workers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.doorbell = Doorbell()
        """Rung by the job interface on every submit; the worker waits on it."""

    @cached_property
    def store(self) -> JobStore:
        """The database and the image files, as they are (see :attr:`jobs` for the upgraded schema)."""
        ensure_writable(self.settings.data_dir, setting="NANKE_DATA_DIR")
        try:
            return JobStore.open(database_url=self.settings.database_url, image_dir=self.settings.image_dir)
        except StoreError as error:
            raise SettingsError([f"DATABASE_URL: {error}"]) from None

    @cached_property
    def catalog(self) -> ModelCatalog:
        return ModelCatalog(default=self.settings.model, models_dir=self.settings.models_dir)

    @cached_property
    def resources(self) -> Resources:
        """The LoRA, embedding and VAE folders."""
        settings = self.settings
        return Resources.of(
            lora_dir=settings.lora_dir,
            embeddings_dir=settings.embeddings_dir,
            vae_dir=settings.vae_dir,
            vae=settings.vae,
            cache_dir=settings.cache_dir,
        )

    @cached_property
    def styles(self) -> StyleFile:
        """The prompt styles of ``--style`` (re-read when the file changes)."""
        return StyleFile(self.settings.styles_file)

    @cached_property
    def scheduler(self) -> FairScheduler:
        return FairScheduler(max_images=self.settings.max_batch or AUTO_MAX_IMAGES)

    def largest_batch(self) -> int:
        """The most 512x512 images the embedded worker puts in one batch (NANKE_MAX_BATCH, or what
        the GPU's memory holds up to the scheduler's limit)."""
        if self.settings.max_batch is not None:
            return self.settings.max_batch
        from pipeline.engine.devices import batch_pixel_budget

        return max(1, min(AUTO_MAX_IMAGES, batch_pixel_budget(self.engines.device) // (512 * 512)))

    @cached_property
    def jobs(self) -> JobService:
        """The job interface, on a database upgraded to the code's schema."""
        self.store.upgrade()
        return JobService(
            store=self.store,
            scheduler=self.scheduler,
            max_pixels=self.settings.max_pixels,
            max_queued_per_user=self.settings.max_queued_per_user,
            on_submit=self.doorbell.ring,
            # With remote GPU workers the LoRA and VAE files are theirs: they refuse a missing one
            check=None if self.settings.broker_url else self.resources.check,
            workers=self.remote_workers if self.settings.broker_url else None,
        )

    @cached_property
    def engines(self) -> EnginePool:
        """The loaded models (none is loaded until a job needs it); picks the device now."""
        from pipeline.engine.pool import EnginePool

        return EnginePool(
            catalog=self.catalog,
            device=self.settings.device,
            dtype=self.settings.dtype,
            cache_dir=self.settings.cache_dir,
            options=engine_options(self.settings),
            upscaler=self.settings.upscaler_model,
            safety_checker=self.settings.safety_checker,
            resources=self.resources,
            describe_model=self.settings.describe_model,
        )

    @cached_property
    def executor(self) -> Executor:
        """This process's GPU (each remote batch gets its own executor: see :meth:`worker`)."""
        from pipeline.queue.local_executor import LocalExecutor

        return LocalExecutor(self.engines, previews=self.settings.previews)

    @cached_property
    def celery(self) -> Celery:
        """The Celery application on NANKE_BROKER_URL (remote GPU workers)."""
        from pipeline.queue.remote.celery_app import make_celery

        if not self.settings.broker_url:
            raise SettingsError(["NANKE_BROKER_URL: not set (remote GPU workers need a Redis URL)"])
        return make_celery(self.settings.broker_url, job_timeout_s=self.settings.job_timeout_s)

    @cached_property
    def fleet(self) -> Fleet:
        """The remote GPU workers' announcements, in the broker's Redis."""
        from pipeline.queue.remote.fleet import Fleet

        if not self.settings.broker_url:
            raise SettingsError(["NANKE_BROKER_URL: not set (remote GPU workers need a Redis URL)"])
        return Fleet(self.settings.broker_url, ttl_s=self.settings.worker_timeout_s)

    def remote_workers(self) -> list[WorkerStatus]:
        """The remote GPU workers that announced themselves lately (none while Redis is down)."""
        try:
            return self.fleet.workers()
        except Exception as error:
            log.debug("the GPU workers cannot be listed: %s", error)
            return []

    @cached_property
    def runner(self) -> JobRunner:
        return JobRunner(
            jobs=self.jobs, executor=self.executor, time_limit_s=self.settings.job_timeout_s or None
        )

    def worker(self, events: WorkerEvents | None = None, *, poll_interval: float = 2.0) -> Worker:
        """A new worker thread (not started) that tells ``events`` what happens; its caller
        starts and stops it. With NANKE_BROKER_URL it dispatches to remote GPU workers, else it
        runs batches on this process's GPU."""
        if self.settings.broker_url:
            return self._dispatcher(events, poll_interval=poll_interval)
        from pipeline.engine.devices import batch_pixel_budget

        budget = batch_pixel_budget(self.engines.device) if self.settings.max_batch is None else None
        return Worker(
            self.runner,
            self.scheduler,
            doorbell=self.doorbell,
            events=events,
            poll_interval=poll_interval,
            batch_pixels=budget,
        )

    def _dispatcher(self, events: WorkerEvents | None, *, poll_interval: float) -> Worker:
        from pipeline.queue.remote.celery_app import longest_batch_s
        from pipeline.queue.remote.dispatch import Dispatcher

        return Dispatcher(
            self.runner,
            self.scheduler,
            celery=self.celery,
            fleet=self.fleet,
            worker_timeout_s=self.settings.worker_timeout_s,
            batch_timeout_s=longest_batch_s(self.settings.job_timeout_s),
            doorbell=self.doorbell,
            events=events,
            poll_interval=poll_interval,
            worker_budgets=self.settings.max_batch is None,
            previews=self.settings.previews,
        )

    def open(self) -> App:
        """Build what a long-running process needs before it starts: the upgraded database, the
        device, the runner and the image safety check (a wrong setting fails here, not at the
        first job). With remote GPU workers, the GPU side is theirs: only the broker is checked."""
        _ = self.jobs
        if self.settings.broker_url:
            _ = self.celery, self.fleet
            return self
        _ = self.engines, self.runner
        self.engines.checker()
        return self

    def close(self) -> None:
        """Close the database's pooled connections (if the database was opened)."""
        if "store" in self.__dict__:
            self.store.dispose()
