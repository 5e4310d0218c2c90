"""The bot's side of remote GPU workers: one scheduler dispatching fair batches to many workers.

:class:`Dispatcher` takes the place of the embedded worker thread. Whenever a worker is free it
takes the next fair batch, picks the worker (one holding the batch's model loaded, else one that
can load it), starts the jobs with the batch's dispatch id in the same transaction, and hands
the batch to a :class:`RemoteExecutor`, which sends it as a Celery task to that worker's queue
and waits for its outcome. The database stays the source of truth: whatever happens to Redis or
a worker, a job is recorded once, from its current dispatch, and a late duplicate is discarded.

What can go wrong, and what happens:

- the worker dies or stops answering (its announcement lapses for NANKE_WORKER_TIMEOUT s, or it
  comes back as another process): the jobs go back to the queue and run on another worker;
- the batch runs longer than the longest batch allowed: the jobs go back to the queue, and the
  worker gets no new batch while it still runs that one;
- Redis is down: nothing is dispatched (jobs wait in the database), running batches are waited
  for; a batch the broker lost (sent, but its worker stayed idle) or whose result was lost goes
  back to the queue without counting as an attempt;
- the bot restarts: batches still running are picked up again from the database and their
  results stored as they arrive.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from PIL import Image

from pipeline.queue.doorbell import Doorbell
from pipeline.queue.executor import Failed, OnStep, Outcome, Returned, ShouldCancel, Task
from pipeline.queue.jobs import JobSnapshot
from pipeline.queue.remote import wire
from pipeline.queue.remote.celery_app import TASK_NAME, queue_for
from pipeline.queue.remote.fleet import Fleet
from pipeline.queue.scheduler import FairScheduler
from pipeline.queue.worker import JobRunner, Worker, WorkerEvents
from pipeline.queue.worker_status import WorkerStatus

log = logging.getLogger(__name__)

POLL_S = 0.25
"""How often a waiting batch's state is read from Redis."""
LOST_GRACE_S = 5.0
"""How long a worker may stay idle after a batch was sent to it before the batch counts as lost."""
COOLING_S = 60.0
"""A worker that never took a batch sent to it gets no other for this long (it may consume the
wrong queue, or run another version of nanke)."""
OUTAGE_LOG_S = 30.0
"""While Redis cannot be reached, the log says so at most this often."""
MAX_BATCHES_IN_FLIGHT = 64


class _Outage:
    """Logs "Redis cannot be reached" once per outage (and again every :data:`OUTAGE_LOG_S`)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._since: float | None = None
        self._said = 0.0

    def failed(self, error: BaseException) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if now - self._said >= OUTAGE_LOG_S:
            self._said = now
            log.warning("%s: the broker (Redis) cannot be reached (%s); retrying", self.what, error)

    def ok(self) -> None:
        if self._since is not None:
            log.info("%s: the broker (Redis) is back after %.0f s", self.what, time.monotonic() - self._since)
        self._since = None
        self._said = 0.0


class RemoteExecutor:
    """Runs one batch on the GPU worker ``worker`` through Celery, as the dispatch ``dispatch_id``.

    With ``resume``, the batch was sent before (by an earlier run of the bot): it is only waited for.
    ``detach`` set (the bot stopping) ends the wait early; the jobs stay running, and the next
    start picks them up.
    """

    def __init__(
        self,
        *,
        celery: Celery,
        fleet: Fleet,
        worker: str,
        dispatch_id: str,
        worker_timeout_s: float,
        batch_timeout_s: float,
        detach: threading.Event,
        previews: bool = True,
        resume: bool = False,
    ) -> None:
        self.celery = celery
        self.fleet = fleet
        self.worker = worker
        self.dispatch_id = dispatch_id
        self.worker_timeout_s = worker_timeout_s
        self.batch_timeout_s = batch_timeout_s
        self.detach = detach
        self.previews = previews
        self.resume = resume
        self.timed_out = False
        """Whether the batch was given up for running too long (its worker still holds it)."""
        self.never_taken = False
        """Whether the worker stayed idle and never took the batch."""

    def prepare(self, tasks: Sequence[Task]) -> None:
        """Nothing: the GPU worker that runs a batch prepares it (the bot holds no model)."""

    def run(
        self,
        tasks: Sequence[Task],
        *,
        sources: Mapping[str, Image.Image],
        on_step: OnStep,
        should_cancel: ShouldCancel,
    ) -> Iterator[Outcome]:
        ids = tuple(task.job_id for task in tasks)
        if not tasks:
            return
        # 1. Send the batch to the worker's own queue (unless it was sent before a restart)
        if not self.resume:
            try:
                self.celery.send_task(
                    TASK_NAME,
                    args=[wire.batch_message(tasks, sources)],
                    task_id=self.dispatch_id,
                    queue=queue_for(self.worker),
                    expires=self.batch_timeout_s,
                )
            except Exception as error:
                yield Returned(ids, f"the broker could not take the batch ({error})", counted=False)
                return
            log.info("dispatch %s: jobs %s sent to worker %s", self.dispatch_id, list(ids), self.worker)
        # 2. Wait for its outcomes, passing progress on and cancellations down
        yield from self._wait(ids, on_step, should_cancel)

    def _wait(self, ids: tuple[int, ...], on_step: OnStep, should_cancel: ShouldCancel) -> Iterator[Outcome]:
        result = AsyncResult(self.dispatch_id, app=self.celery)
        started = time.monotonic()
        seen_worker = started
        instance: str | None = None
        idle_since: float | None = None
        last_step: tuple[int, int] | None = None
        last_preview = -1
        cancel_sent = False
        outage = _Outage(f"dispatch {self.dispatch_id}")
        while not self.detach.is_set():
            now = time.monotonic()
            if now - started > self.batch_timeout_s:
                self.timed_out = True
                yield Returned(
                    ids, f"worker {self.worker} did not finish within {self.batch_timeout_s:.0f} s"
                )
                return
            try:
                state = result.state
                info: Any = result.info if state in ("PROGRESS", "SUCCESS", "FAILURE") else None
                status = self.fleet.get(self.worker)
                if not cancel_sent and should_cancel(ids):
                    self.fleet.request_cancel(self.dispatch_id)
                    cancel_sent = True
                outage.ok()
            except Exception as error:
                outage.failed(error)
                self.detach.wait(1.0)
                # Silence while Redis is down says nothing of the worker: its time starts again
                seen_worker = time.monotonic()
                continue
            # The outcome
            if state == "SUCCESS":
                try:
                    outcomes = wire.read_outcomes(info)
                except wire.WireError as error:
                    yield Failed(ids, wire.WorkerFailure(f"worker {self.worker}: {error}"))
                    return
                yield from outcomes
                _forget(result)
                return
            if state == "FAILURE":
                yield Failed(ids, wire.WorkerFailure(f"worker {self.worker}: {info!r}"))
                _forget(result)
                return
            if state == "REVOKED":
                yield Returned(ids, "the batch expired before a worker took it", counted=False)
                return
            if state == "PROGRESS" and isinstance(info, dict):
                last_step, last_preview = self._progress(info, on_step, last_step, last_preview)
            # The worker: gone, restarted, or idle with the batch nowhere
            if status is not None and (instance is None or status.instance == instance):
                instance = status.instance
                seen_worker = now
            if status is not None and status.instance != instance:
                yield Returned(ids, f"worker {self.worker} restarted while it ran the batch")
                return
            if now - seen_worker > self.worker_timeout_s:
                yield Returned(
                    ids, f"worker {self.worker} stopped answering (no news for {self.worker_timeout_s:g} s)"
                )
                return
            if status is not None and state == "PENDING":
                if self.dispatch_id in status.recent:
                    yield Returned(ids, "the broker lost the batch's result", counted=False)
                    return
                idle_since = (idle_since or now) if status.task is None else None
                if idle_since is not None and now - idle_since > LOST_GRACE_S:
                    yield Returned(ids, self._lost_reason(), counted=False)
                    return
            self.detach.wait(POLL_S)
        log.info(
            "dispatch %s: no longer waited for (stopping); picked up at the next start", self.dispatch_id
        )

    def _lost_reason(self) -> str:
        """Why an idle worker never took the batch: it does not consume its queue (the batch is
        still there: it gets no other batch for a while), or the broker lost the batch."""
        try:
            self.never_taken = bool(self.fleet.client.llen(queue_for(self.worker)))
        except Exception:
            self.never_taken = False
        if self.never_taken:
            return f"worker {self.worker} announces itself idle but never took the batch from its queue"
        return "the broker lost the batch before the worker took it (was Redis restarted?)"

    def _progress(
        self, info: dict[str, Any], on_step: OnStep, last_step: tuple[int, int] | None, last_preview: int
    ) -> tuple[tuple[int, int] | None, int]:
        try:
            fresh_preview = self.previews and int(info.get("preview_step", -1)) != last_preview
            job_ids, progress = wire.read_progress(info, with_previews=fresh_preview)
        except (KeyError, TypeError, ValueError):
            log.debug("dispatch %s: unreadable progress skipped", self.dispatch_id)
            return last_step, last_preview
        step = (progress.part, progress.step)
        if step != last_step or progress.previews:
            on_step(job_ids, progress)
        return step, int(info.get("preview_step", -1)) if fresh_preview else last_preview


def _forget(result: AsyncResult) -> None:
    """Free the result's memory in Redis (it is stored in the database now)."""
    try:
        result.forget()
    except Exception:
        log.debug("a stored result could not be removed from Redis", exc_info=True)


def pick_worker(
    free: Sequence[WorkerStatus], everyone: Sequence[WorkerStatus], model: str | None
) -> WorkerStatus | None:
    """The free worker for a batch of ``model``: one holding it loaded, else one that can load it
    (most free GPU memory first). ``None`` to wait: no free worker can, but a busy one can."""

    def room(worker: WorkerStatus) -> int:
        return worker.free_vram_mb or 0

    loaded = [worker for worker in free if worker.runs(model)]
    if loaded:
        return max(loaded, key=room)
    capable = [worker for worker in free if worker.can_run(model)]
    if capable:
        return max(capable, key=room)
    if any(worker.can_run(model) for worker in everyone):
        return None
    # No worker knows the model: one of them says so (the job fails with "model unavailable")
    return max(free, key=room) if free else None


class Dispatcher(Worker):
    """The scheduler's loop with remote GPU workers: a batch for every free worker, each waited
    for in its own thread (see the module's docstring)."""

    def __init__(
        self,
        runner: JobRunner,
        scheduler: FairScheduler,
        *,
        celery: Celery,
        fleet: Fleet,
        worker_timeout_s: float,
        batch_timeout_s: float,
        doorbell: Doorbell | None = None,
        events: WorkerEvents | None = None,
        poll_interval: float = 2.0,
        worker_budgets: bool = True,
        previews: bool = True,
    ) -> None:
        super().__init__(runner, scheduler, doorbell=doorbell, events=events, poll_interval=poll_interval)
        self.worker_budgets = worker_budgets
        """Whether a batch holds at most what the free workers' GPUs allow (NANKE_MAX_BATCH=auto)."""
        self.celery = celery
        self.fleet = fleet
        self.worker_timeout_s = worker_timeout_s
        self.batch_timeout_s = batch_timeout_s
        self.previews = previews
        self._busy: dict[str, str] = {}
        """Worker name → the dispatch it runs for us."""
        self._held: dict[str, str] = {}
        """Worker name → a dispatch given up for running too long, which it may still run."""
        self._cooling: dict[str, float] = {}
        """Worker name → until when (monotonic) it gets no batch: it never took the last one."""
        self._adopt: list[tuple[str, str | None, tuple[JobSnapshot, ...]]] = []
        self._lock = threading.Lock()
        self._detach = threading.Event()
        self._batches: ThreadPoolExecutor | None = None
        self._outage = _Outage("dispatching")

    def recover(self) -> list[int]:
        """Requeue the jobs a crash left running here; keep those running on remote workers,
        which are waited for again once started."""
        requeued = self.runner.jobs.runs.requeue_interrupted(keep_dispatched=True)
        dispatches = self.runner.jobs.runs.dispatched()
        with self._lock:
            self._adopt = [(d.dispatch_id, d.worker, d.jobs) for d in dispatches]
        if dispatches:
            log.info("waiting again for %d batch(es) running on GPU workers", len(dispatches))
        return requeued

    def start(self) -> None:
        self._detach.clear()
        super().start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop dispatching; batches still running on workers stay running (and recorded as
        such), to be waited for again at the next start."""
        self._detach.set()
        super().stop(timeout)
        batches, self._batches = self._batches, None
        if batches is not None:
            batches.shutdown(wait=True)

    def run_once(self) -> bool:
        """Dispatch the next batch to a free worker; ``True`` when one was sent."""
        # 1. Batches that were running when the bot stopped
        with self._lock:
            adopt, self._adopt = self._adopt, []
        for dispatch_id, worker, jobs in adopt:
            self._launch(dispatch_id, worker or "", [job.id for job in jobs], started=jobs)
        # 2. The free workers (none while Redis is down: the jobs wait in the database)
        try:
            everyone = self.fleet.workers()
            self._outage.ok()
        except Exception as error:
            self._outage.failed(error)
            return bool(adopt)
        free = self._free(everyone)
        if not free:
            return bool(adopt)
        # 3. The next fair batch, for the worker that suits it
        budget = min(worker.batch_pixels for worker in free) if self.worker_budgets else None
        batch = self.scheduler.next_batch(self.runner.jobs.runnable(), max_pixels=budget)
        if not batch:
            return bool(adopt)
        worker = pick_worker(free, everyone, batch[0].request.model)
        if worker is None:
            return bool(adopt)
        self.scheduler.served(batch)
        self._launch(uuid.uuid4().hex, worker.name, [job.job_id for job in batch])
        return True

    def _free(self, workers: Sequence[WorkerStatus]) -> list[WorkerStatus]:
        now = time.monotonic()
        with self._lock:
            for name, dispatch_id in list(self._held.items()):
                status = next((worker for worker in workers if worker.name == name), None)
                if status is None or status.task != dispatch_id:
                    del self._held[name]
            for name, until in list(self._cooling.items()):
                if until <= now:
                    del self._cooling[name]
            unavailable = self._busy.keys() | self._held.keys() | self._cooling.keys()
            return [worker for worker in workers if not worker.busy and worker.name not in unavailable]

    def _launch(
        self, dispatch_id: str, worker: str, job_ids: Sequence[int], *, started: Sequence[JobSnapshot] = ()
    ) -> None:
        """Start ``job_ids`` in the dispatch ``dispatch_id`` on ``worker`` and wait for it in a
        thread; with ``started``, the jobs of a dispatch sent before (by an earlier run of the bot)."""
        executor = RemoteExecutor(
            celery=self.celery,
            fleet=self.fleet,
            worker=worker,
            dispatch_id=dispatch_id,
            worker_timeout_s=self.worker_timeout_s,
            batch_timeout_s=self.batch_timeout_s,
            detach=self._detach,
            previews=self.previews,
            resume=bool(started),
        )
        runner = self.runner.bound(executor=executor, dispatch_id=dispatch_id)
        jobs = list(started) or runner.start(job_ids, worker=worker)
        if not jobs:
            return
        with self._lock:
            self._busy[worker] = dispatch_id
        if self._batches is None:  # the threads that wait for batches, made on first use
            self._batches = ThreadPoolExecutor(
                max_workers=MAX_BATCHES_IN_FLIGHT, thread_name_prefix="nanke-batch"
            )
        self._batches.submit(self._run, runner, executor, jobs)

    def _run(self, runner: JobRunner, executor: RemoteExecutor, jobs: list[JobSnapshot]) -> None:
        try:
            finished = runner.run_started(jobs, events=self.events)
            if finished:
                runner.save(finished, events=self.events)
        except Exception:
            log.exception("dispatch %s failed unexpectedly", executor.dispatch_id)
        finally:
            with self._lock:
                if self._busy.get(executor.worker) == executor.dispatch_id:
                    del self._busy[executor.worker]
                if executor.timed_out:
                    self._held[executor.worker] = executor.dispatch_id
                if executor.never_taken:
                    log.warning(
                        "worker %s never took the batch sent to it; it gets none for %g s",
                        executor.worker,
                        COOLING_S,
                    )
                    self._cooling[executor.worker] = time.monotonic() + COOLING_S
            self.wake()
