"""Everything the application runs on, built once from the settings and passed down.

The command line and the bot share this wiring; it imports no discord.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from bot.settings import Settings
from pipeline.engine import EngineOptions
from pipeline.jobs import JobService
from pipeline.models import ModelCatalog
from pipeline.pool import EnginePool
from pipeline.scheduler import FairScheduler
from pipeline.worker import JobRunner, Worker
from storage import Database, ImageStore

log = logging.getLogger(__name__)


def engine_options(settings: Settings) -> EngineOptions:
    """Memory options: the defaults suit a GPU with room to spare; NANKE_LOW_VRAM saves memory."""
    if not settings.low_vram:
        return EngineOptions()
    return EngineOptions(attention_slicing=True, vae_slicing=True, vae_tiling=True, cpu_offload=True)


@dataclass
class Services:
    """The database, image store, model catalog, engines, job service and GPU worker."""

    settings: Settings
    database: Database
    store: ImageStore
    catalog: ModelCatalog
    scheduler: FairScheduler
    jobs: JobService
    engines: EnginePool
    runner: JobRunner
    worker: Worker
    _worker_started: bool = field(default=False, init=False)

    @classmethod
    def build(cls, settings: Settings, *, migrate: bool = True) -> Services:
        """Open (and, by default, upgrade) the database and set everything up; loads no model yet."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(settings.database_url)
        if migrate:
            database.upgrade()
        store = ImageStore(settings.image_dir)
        catalog = ModelCatalog(default=settings.model, models_dir=settings.models_dir)
        scheduler = FairScheduler(max_images=settings.max_batch)
        jobs = JobService(
            database=database,
            store=store,
            scheduler=scheduler,
            max_pixels=settings.max_pixels,
            max_queued_per_user=settings.max_queued_per_user,
        )
        engines = EnginePool(
            catalog=catalog,
            device=settings.device,
            dtype=settings.dtype,
            cache_dir=settings.cache_dir,
            options=engine_options(settings),
            upscaler=settings.upscaler_model,
        )
        runner = JobRunner(jobs=jobs, engines=engines)
        worker = Worker(runner, scheduler)
        jobs.on_submit = worker.wake
        return cls(settings, database, store, catalog, scheduler, jobs, engines, runner, worker)

    def start_worker(self) -> None:
        """Requeue jobs a crash left running, then start the GPU worker thread."""
        self.worker.recover()
        self.worker.start()
        self._worker_started = True

    def stop_worker(self) -> None:
        if self._worker_started:
            self.worker.stop()
            self._worker_started = False
