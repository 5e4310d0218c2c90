"""What the worker records: a job started, finished with its images, failed or cancelled, and
the recovery of jobs a crash left running. State changes are written before they are announced.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.queue.executor import ImageFile
from pipeline.queue.jobs.moderation import audit
from pipeline.queue.jobs.snapshots import JobSnapshot
from pipeline.queue.jobs.store import JobStore
from storage import (
    InvalidTransition,
    NewImage,
    StaleDispatch,
    dispatched_jobs,
    fail_job,
    finish_job,
    get_job,
    is_cancel_requested,
    mark_cancelled,
    requeue_dispatched_jobs,
    requeue_interrupted_jobs,
    start_job,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
"""A job interrupted this many times while it ran is failed at the next start, not run again."""
MAX_REMOTE_ATTEMPTS = 3
"""A job whose remote worker was lost (or timed out) this many times is failed, not sent again."""
POISON_ERROR = (
    "This job stopped the bot twice while it was being made, so it was not tried again; "
    "the admin can find the details in the log."
)
REMOTE_POISON_ERROR = (
    "This job stopped the GPU workers that ran it several times, so it was not tried again; "
    "the admin can find the details in the log."
)


@dataclass(frozen=True)
class Dispatch:
    """A batch running on a remote GPU worker: its id, the worker, and its jobs."""

    dispatch_id: str
    worker: str | None
    jobs: tuple[JobSnapshot, ...]


class Runs:
    """The worker's side of the job life cycle."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def start(
        self, job_id: int, *, dispatch_id: str | None = None, worker: str | None = None
    ) -> JobSnapshot | None:
        """Queued → running; ``None`` when the job was cancelled, deleted or taken meanwhile.

        ``dispatch_id`` and ``worker`` record the remote batch it is sent in.
        """
        started = self.start_all([job_id], dispatch_id=dispatch_id, worker=worker)
        return started[0] if started else None

    def start_all(
        self, job_ids: Sequence[int], *, dispatch_id: str | None = None, worker: str | None = None
    ) -> list[JobSnapshot]:
        """:meth:`start` for a batch, in one transaction (one commit, not one per job); the jobs
        that could start, in order."""
        started = []
        with self._store.session() as session:
            for job_id in job_ids:
                try:
                    job = start_job(session, job_id=job_id, dispatch_id=dispatch_id, worker=worker)
                except InvalidTransition as error:
                    log.info("job %d not started: %s", job_id, error)
                    continue
                if job is not None:
                    session.flush()
                    started.append(JobSnapshot.of(job))
        return started

    def finish(
        self,
        job_id: int,
        *,
        images: Sequence[ImageFile],
        model_name: str | None,
        model_hash: str | None,
        environment_json: str | None,
        dispatch_id: str | None = None,
        grid: bytes | None = None,
    ) -> bool:
        """Store the image files (and ``grid``, the PNG of their grid), then mark the job done
        with them (images the safety check flagged are logged for the guild's admins).

        With ``dispatch_id`` (a remote worker's result) the result is stored only while the job
        still runs in that dispatch; ``False`` when it was discarded as a late duplicate.
        """
        if dispatch_id is not None and not self.runs_in(job_id, dispatch_id):
            log.info("job %d: a late result of dispatch %s discarded", job_id, dispatch_id)
            return False
        stored = []
        for image in images:
            file = self._store.put(image.data, suffix=image.suffix)
            stored.append(
                NewImage(
                    index=image.index,
                    seed=image.seed,
                    width=image.width,
                    height=image.height,
                    sha256=file.sha256,
                    path=file.path,
                    size_bytes=file.size_bytes,
                    flagged=image.flagged,
                )
            )
        grid_file = self._store.put(grid, suffix=".png") if grid is not None else None
        try:
            with self._store.session() as session:
                job = finish_job(
                    session,
                    job_id=job_id,
                    images=stored,
                    model_name=model_name,
                    model_hash=model_hash,
                    environment_json=environment_json,
                    dispatch_id=dispatch_id,
                    grid_path=grid_file.path if grid_file is not None else None,
                )
                flagged = [image.index + 1 for image in images if image.flagged]
                if flagged:
                    audit(
                        session, job.guild_id, "image_flagged", target=job.owner.discord_id, job_id=job_id,
                        images=flagged,
                    )  # fmt: skip
        except StaleDispatch:
            log.info("job %d: a late result of dispatch %s discarded", job_id, dispatch_id)
            return False
        if flagged:
            log.info("job %d: the safety check flagged image(s) %s", job_id, flagged)
        return True

    def fail(self, job_id: int, *, error: str, dispatch_id: str | None = None) -> bool:
        """Queued or running → failed, with the message to show; ``False`` when ``dispatch_id``
        is no longer the job's (the failure of a stale dispatch is ignored)."""
        try:
            with self._store.session() as session:
                fail_job(session, job_id=job_id, error=error, dispatch_id=dispatch_id)
        except StaleDispatch:
            log.info("job %d: a late failure of dispatch %s ignored", job_id, dispatch_id)
            return False
        return True

    def cancelled(self, job_id: int, *, dispatch_id: str | None = None) -> bool:
        """The worker stopped the job (or never started it): → cancelled (``dispatch_id``: as for
        :meth:`fail`)."""
        try:
            with self._store.session() as session:
                mark_cancelled(session, job_id=job_id, dispatch_id=dispatch_id)
        except StaleDispatch:
            log.info("job %d: a late cancellation of dispatch %s ignored", job_id, dispatch_id)
            return False
        return True

    def runs_in(self, job_id: int, dispatch_id: str) -> bool:
        """Whether the job is running in the dispatch ``dispatch_id``."""
        with self._store.session() as session:
            job = get_job(session, job_id=job_id)
            return job.status == "running" and job.dispatch_id == dispatch_id

    def is_running(self, job_id: int) -> bool:
        with self._store.session() as session:
            return get_job(session, job_id=job_id).status == "running"

    def cancel_requested(self, job_id: int) -> bool:
        """Whether someone asked to stop the job (cheap: for polling during generation)."""
        with self._store.session() as session:
            return is_cancel_requested(session, job_id=job_id)

    def requeue_interrupted(self, *, keep_dispatched: bool = False) -> list[int]:
        """After a crash: running jobs go back to the queue (or to cancelled, if that was asked);
        one that was interrupted :data:`MAX_ATTEMPTS` times fails instead (a poison job).

        ``keep_dispatched`` leaves the jobs running on remote workers as they are (see
        :meth:`dispatched`).
        """
        with self._store.session() as session:
            requeued = requeue_interrupted_jobs(
                session, max_attempts=MAX_ATTEMPTS, poison_error=POISON_ERROR, keep_dispatched=keep_dispatched
            )
        if requeued:
            log.info("requeued %d interrupted job(s): %s", len(requeued), requeued)
        return requeued

    def dispatched(self) -> list[Dispatch]:
        """The batches running on remote workers, as the database knows them."""
        with self._store.session() as session:
            jobs = [JobSnapshot.of(job) for job in dispatched_jobs(session)]
        batches: dict[str, list[JobSnapshot]] = {}
        for job in jobs:
            batches.setdefault(job.dispatch_id or "", []).append(job)
        return [
            Dispatch(dispatch_id, members[0].worker, tuple(members))
            for dispatch_id, members in batches.items()
        ]

    def requeue_dispatch(self, dispatch_id: str, *, counted: bool) -> list[int]:
        """The jobs still running in ``dispatch_id`` go back to the queue (see
        :func:`storage.requeue_dispatched_jobs`); a job whose worker was lost
        :data:`MAX_REMOTE_ATTEMPTS` times fails instead."""
        with self._store.session() as session:
            requeued = requeue_dispatched_jobs(
                session,
                dispatch_id=dispatch_id,
                counted=counted,
                max_attempts=MAX_REMOTE_ATTEMPTS,
                poison_error=REMOTE_POISON_ERROR,
            )
        if requeued:
            log.info("dispatch %s: requeued job(s) %s", dispatch_id, requeued)
        return requeued
