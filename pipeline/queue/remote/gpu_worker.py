"""``python main.py worker``: a Celery worker for one GPU, running the batches the bot sends it.

It loads its default model once at start, announces itself every few seconds (its models, free
GPU memory, whether it is busy and its speed: see :mod:`pipeline.queue.remote.fleet`), and runs
each batch on this machine's engines exactly as the embedded worker would, encoding the PNGs
here so the bot only stores them. It needs Redis and the models, not the database. Progress
goes back through the task's state (Celery's own), cancellation comes through Redis.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.exceptions import CPendingDeprecationWarning

from pipeline.engine.results import StepProgress
from pipeline.queue.executor import Encoded, Failed, Generated, Stopped
from pipeline.queue.local_executor import LocalExecutor
from pipeline.queue.remote import wire
from pipeline.queue.remote.celery_app import TASK_NAME, queue_for
from pipeline.queue.remote.fleet import Fleet
from pipeline.queue.worker import encode_later
from pipeline.queue.worker_status import WorkerStatus

if TYPE_CHECKING:
    from pipeline.engine.pool import EnginePool
    from pipeline.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.2
CANCEL_POLL_S = 0.5
RECENT = 32
"""How many finished batches a worker's announcement lists."""
SPEED_WINDOW = 20
"""The batches the images-per-second figure is measured over."""


class NameTaken(Exception):
    """Another running worker announces itself under this name."""


class GpuWorker:
    """This machine's GPU, as a worker of the bot: runs batches and announces itself."""

    def __init__(self, *, name: str, engines: EnginePool, fleet: Fleet, previews: bool = True) -> None:
        self.name = name
        self.engines = engines
        self.fleet = fleet
        self.executor = LocalExecutor(engines, previews=previews)
        self.default_model = engines.catalog.resolve(None).name
        """The model a request that names none gets (NANKE_MODEL: it does not change while running)."""
        self.instance = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.started_at = time.time()
        self._task: str | None = None
        self._recent: deque[str] = deque(maxlen=RECENT)
        self._speed: deque[tuple[int, float]] = deque(maxlen=SPEED_WINDOW)
        self._made = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._announcer: threading.Thread | None = None

    # -- announcing ---------------------------------------------------------------------------

    def claim_name(self) -> None:
        """Refuse to start beside a live worker of the same name (a stale announcement of a
        dead process on this host does not count)."""
        current = self.fleet.get(self.name)
        if current is None or current.instance == self.instance:
            return
        if current.host == self.host and not _alive(current.pid):
            return
        raise NameTaken(
            f"NANKE_WORKER_NAME: a worker named {self.name!r} is already running on {current.host}; "
            "give each worker its own name"
        )

    def status(self) -> WorkerStatus:
        from pipeline.engine.devices import device_name

        free, total = _vram_mb(self.engines.device)
        with self._lock:
            task, recent = self._task, tuple(self._recent)
            images = sum(count for count, _ in self._speed)
            seconds = sum(spent for _, spent in self._speed)
            made = self._made
        return WorkerStatus(
            name=self.name,
            host=self.host,
            instance=self.instance,
            pid=os.getpid(),
            gpu=device_name(self.engines.device),
            device=str(self.engines.device),
            default_model=self.default_model,
            models=tuple(self.engines.loaded()),
            available=tuple(self.engines.catalog.names()),
            batch_pixels=self.engines.batch_pixels(),
            free_vram_mb=free,
            total_vram_mb=total,
            task=task,
            recent=recent,
            images_per_s=round(images / seconds, 3) if seconds > 0 else None,
            images_made=made,
            started_at=self.started_at,
        )

    def announce_forever(self, interval_s: float) -> None:
        """Announce now and then every ``interval_s`` in a thread, until :meth:`stop`."""
        self._announce()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self._announce()

        self._announcer = threading.Thread(target=loop, name="nanke-announce", daemon=True)
        self._announcer.start()

    def _announce(self) -> None:
        try:
            self.fleet.announce(self.status())
        except Exception as error:
            log.warning("worker %s: cannot announce itself to Redis (%s); retrying", self.name, error)

    def stop(self) -> None:
        self._stop.set()
        try:
            self.fleet.withdraw(self.name, self.instance)
        except Exception:
            log.debug("the announcement could not be withdrawn", exc_info=True)

    # -- running a batch ----------------------------------------------------------------------

    def run_batch(
        self, dispatch_id: str, message: Mapping[str, Any], report: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Generate the batch ``message`` (see :func:`wire.batch_message`); its outcomes, encoded."""
        tasks, sources = wire.read_batch(message)
        with self._lock:
            self._task = dispatch_id
        self._announce()
        began = time.monotonic()
        made = 0
        log.info("dispatch %s: generating jobs %s", dispatch_id, [task.job_id for task in tasks])
        try:
            progress = _Reporter(report)
            cancel = _CancelCheck(self.fleet, dispatch_id)
            outcomes = self.executor.run(tasks, sources=sources, on_step=progress, should_cancel=cancel)
            # Each group's PNGs are encoded on the encoder threads while the next group generates
            pending = [self._encoding(outcome) for outcome in outcomes]
            encoded = [later() for later in pending]
            made = sum(len(item.images) for item in encoded if isinstance(item, Encoded))
            return wire.outcomes_message(encoded)
        finally:
            with self._lock:
                self._task = None
                self._recent.append(dispatch_id)
                if made:
                    self._made += made
                    self._speed.append((made, time.monotonic() - began))
            self._announce()

    def _encoding(self, outcome: Generated | Failed | Stopped) -> Callable[[], Encoded | Failed | Stopped]:
        """``outcome`` ready to send: a job's images, their PNGs being encoded (its environment
        names this worker); any other outcome as it is."""
        if not isinstance(outcome, Generated):
            return lambda: outcome
        result = outcome.result
        signed = replace(result, environment={**result.environment, "worker": self.name})
        return encode_later(Generated(outcome.job_id, signed))


class _Reporter:
    """``on_step`` on the worker: the task's progress state, at most every :data:`PROGRESS_EVERY_S`
    (a step with previews always), keeping the latest previews until newer ones come."""

    def __init__(self, report: Callable[[dict[str, Any]], None]) -> None:
        self.report = report
        self._said = 0.0
        self._previews: dict[str, str] = {}
        self._preview_step = 0

    def __call__(self, job_ids: Sequence[int], progress: StepProgress) -> None:
        now = time.monotonic()
        if progress.previews:
            self._previews = wire.preview_payload(progress.previews)
            self._preview_step += 1
        elif now - self._said < PROGRESS_EVERY_S and progress.step != progress.total_steps:
            return
        self._said = now
        try:
            self.report(
                wire.progress_meta(
                    job_ids, progress, previews=self._previews, preview_step=self._preview_step
                )
            )
        except Exception as error:
            log.debug("progress not reported (%s)", error)


class _CancelCheck:
    """``should_cancel`` on the worker: whether the bot asked, read from Redis every 0.5 s."""

    def __init__(self, fleet: Fleet, dispatch_id: str) -> None:
        self.fleet = fleet
        self.dispatch_id = dispatch_id
        self._checked = float("-inf")
        self._answer = False

    def __call__(self, _job_ids: Sequence[int]) -> bool:
        now = time.monotonic()
        if not self._answer and now - self._checked >= CANCEL_POLL_S:
            self._checked = now
            try:
                self._answer = self.fleet.cancel_requested(self.dispatch_id)
            except Exception:
                log.debug("cancellation not checked (Redis unreachable)", exc_info=True)
        return self._answer


def register(celery: Celery, worker: GpuWorker) -> None:
    """The generate task, run by ``worker``."""

    @celery.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
    def generate(task: Any, message: dict[str, Any]) -> dict[str, Any]:
        def report(meta: dict[str, Any]) -> None:
            task.update_state(state="PROGRESS", meta=meta)

        return worker.run_batch(task.request.id, message, report)


def serve(celery: Celery, worker: GpuWorker, *, loglevel: str) -> None:
    """Consume this worker's queue until stopped (Ctrl+C or SIGTERM: the batch running finishes first)."""
    # Celery warns on every lost connection that version 6 will cancel the running task then;
    # this worker sets that behaviour explicitly (it lets the batch finish), so the warning is noise
    warnings.filterwarnings("ignore", category=CPendingDeprecationWarning)
    register(celery, worker)
    argv = [
        "worker",
        "--pool=solo",
        "--concurrency=1",
        "--prefetch-multiplier=1",
        f"--queues={queue_for(worker.name)}",
        f"--hostname={worker.name}@{worker.host}",
        "--without-gossip",
        "--without-mingle",
        "--task-events",
        f"--loglevel={loglevel}",
    ]
    celery.worker_main(argv=argv)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _vram_mb(device: Any) -> tuple[int | None, int | None]:
    """Free and total GPU memory in MiB (``None`` off CUDA)."""
    import torch

    if getattr(device, "type", None) != "cuda" or not torch.cuda.is_available():
        return None, None
    free, total = torch.cuda.mem_get_info(device)
    return free // 2**20, total // 2**20


def run_worker(settings: Settings) -> int:
    """``main.py worker``: load the default model, then serve batches until stopped; the exit status."""
    from pipeline.app import App
    from pipeline.startup import StartupFailure, failing_in_one_line, held_back_info, load_default_model

    if not settings.broker_url:
        log.error("NANKE_BROKER_URL: not set (the worker gets its batches from Redis: redis://HOST:6379/0)")
        return 2
    app = App(settings)
    try:
        with held_back_info(), failing_in_one_line():
            load_default_model(app)
            app.engines.checker()
            worker = GpuWorker(
                name=settings.worker_name, engines=app.engines, fleet=app.fleet, previews=settings.previews
            )
            try:
                worker.claim_name()
            except NameTaken as error:
                raise StartupFailure(str(error)) from None
            except Exception as error:
                log.warning("Redis cannot be reached yet (%s); the worker waits for it", error)
    except StartupFailure as failure:
        log.error("%s", failure.line)
        return 2
    worker.announce_forever(min(2.0, settings.worker_timeout_s / 3))
    log.info("worker %s ready on %s; waiting for batches", worker.name, app.engines.device)
    try:
        serve(app.celery, worker, loglevel=settings.log_level)
    finally:
        worker.stop()
    return 0
