"""What the worker records: a job started, finished with its images, failed or cancelled, and
the recovery of jobs a crash left running. State changes are written before they are announced.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.queue.jobs.moderation import audit
from pipeline.queue.jobs.snapshots import JobSnapshot
from pipeline.queue.jobs.store import JobStore
from storage import (
    InvalidTransition,
    NewImage,
    fail_job,
    finish_job,
    get_job,
    is_cancel_requested,
    mark_cancelled,
    requeue_interrupted_jobs,
    start_job,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
"""A job interrupted this many times while it ran is failed at the next start, not run again."""
POISON_ERROR = (
    "This job stopped the bot twice while it was being made, so it was not tried again; "
    "the admin can find the details in the log."
)


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


class Runs:
    """The worker's side of the job life cycle."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def start(self, job_id: int) -> JobSnapshot | None:
        """Queued → running; ``None`` when the job was cancelled, deleted or taken meanwhile."""
        with self._store.session() as session:
            try:
                job = start_job(session, job_id=job_id)
            except InvalidTransition as error:
                log.info("job %d not started: %s", job_id, error)
                return None
            if job is None:
                return None
            session.flush()
            return JobSnapshot.of(job)

    def finish(
        self,
        job_id: int,
        *,
        images: Sequence[ImageFile],
        model_name: str | None,
        model_hash: str | None,
        environment_json: str | None,
    ) -> None:
        """Store the image files, then mark the job done with them (images the safety check
        flagged are logged for the guild's admins)."""
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
        with self._store.session() as session:
            job = finish_job(
                session,
                job_id=job_id,
                images=stored,
                model_name=model_name,
                model_hash=model_hash,
                environment_json=environment_json,
            )
            flagged = [image.index + 1 for image in images if image.flagged]
            if flagged:
                audit(
                    session, job.guild_id, "image_flagged", target=job.owner.discord_id, job_id=job_id,
                    images=flagged,
                )  # fmt: skip
        if flagged:
            log.info("job %d: the safety check flagged image(s) %s", job_id, flagged)

    def fail(self, job_id: int, *, error: str) -> None:
        """Queued or running → failed, with the message to show."""
        with self._store.session() as session:
            fail_job(session, job_id=job_id, error=error)

    def cancelled(self, job_id: int) -> None:
        """The worker stopped the job (or never started it): → cancelled."""
        with self._store.session() as session:
            mark_cancelled(session, job_id=job_id)

    def is_running(self, job_id: int) -> bool:
        with self._store.session() as session:
            return get_job(session, job_id=job_id).status == "running"

    def cancel_requested(self, job_id: int) -> bool:
        """Whether someone asked to stop the job (cheap: for polling during generation)."""
        with self._store.session() as session:
            return is_cancel_requested(session, job_id=job_id)

    def requeue_interrupted(self) -> list[int]:
        """After a crash: running jobs go back to the queue (or to cancelled, if that was asked);
        one that was interrupted :data:`MAX_ATTEMPTS` times fails instead (a poison job)."""
        with self._store.session() as session:
            requeued = requeue_interrupted_jobs(session, max_attempts=MAX_ATTEMPTS, poison_error=POISON_ERROR)
        if requeued:
            log.info("requeued %d interrupted job(s): %s", len(requeued), requeued)
        return requeued
