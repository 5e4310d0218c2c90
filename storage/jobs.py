"""Jobs: creating them, moving them through their life cycle, and finding them.

Every status change goes through :func:`storage.transitions.move`. The functions only change
the session; the caller's ``Database.session()`` commits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload, selectinload

from storage.errors import InvalidTransition, JobNotFound, StaleDispatch
from storage.models import JOB_KINDS, UNFINISHED_STATUSES, Image, Job, Upload, User
from storage.timestamps import utcnow
from storage.transitions import move

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewImage:
    """An image of a finished job, already in the image store."""

    index: int
    seed: int
    width: int
    height: int
    sha256: str
    path: str
    size_bytes: int
    flagged: bool = False


def create_job(
    session: Session,
    *,
    kind: str,
    owner: User,
    request_json: str,
    prompt: str,
    parent_id: int | None = None,
    parent_image_index: int | None = None,
    guild_id: int | None = None,
    channel_id: int | None = None,
    priority: int = 0,
    model_name: str | None = None,
    private: bool = False,
    flagged: bool = False,
) -> Job:
    """Add a queued job; it has its id on return."""
    if kind not in JOB_KINDS:
        raise ValueError(f"kind: {kind!r} (allowed: {', '.join(JOB_KINDS)})")
    job = Job(
        kind=kind,
        owner=owner,
        request_json=request_json,
        prompt=prompt,
        parent_id=parent_id,
        parent_image_index=parent_image_index,
        guild_id=guild_id,
        channel_id=channel_id,
        priority=priority,
        model_name=model_name,
        private=private,
        flagged=flagged,
        status="queued",
        attempts=0,
        cancel_requested=False,
        created_at=utcnow(),
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, *, job_id: int) -> Job:
    """The job with its owner and images; raises :class:`JobNotFound`."""
    job = session.get(Job, job_id, options=[joinedload(Job.owner), selectinload(Job.images)])
    if job is None:
        raise JobNotFound(job_id)
    return job


def start_job(
    session: Session, *, job_id: int, dispatch_id: str | None = None, worker: str | None = None
) -> Job | None:
    """Queued → running. ``None`` when the job was cancelled or deleted while it waited.

    A job sent to a remote GPU worker records the batch's ``dispatch_id`` and the ``worker`` in
    the same transaction, so a crash never leaves it running without them.
    """
    try:
        job = _locked(session, job_id)
    except JobNotFound:
        log.info("job %d was deleted before it started", job_id)
        return None
    if job.status == "cancelled":
        log.info("job %d was cancelled before it started", job_id)
        return None
    move(job, "running")
    job.dispatch_id = dispatch_id
    job.worker = worker
    return job


def finish_job(
    session: Session,
    *,
    job_id: int,
    images: Sequence[NewImage],
    model_name: str | None,
    model_hash: str | None,
    environment_json: str | None,
    dispatch_id: str | None = None,
    grid_path: str | None = None,
) -> Job:
    """Running → done, with the images, their grid (``grid_path``, in the image store) and what
    is needed to reproduce them.

    With ``dispatch_id`` (a remote worker's result), the job must still run in that dispatch:
    else :class:`StaleDispatch`, and nothing changes.
    """
    job = _current(session, job_id, dispatch_id)
    move(job, "done")
    job.grid_path = grid_path
    job.model_name = model_name
    job.model_hash = model_hash
    job.environment_json = environment_json
    job.error = None
    # Every image of an adult job (an NSFW prompt) is adult content, whatever the safety check said
    adult = job.flagged
    job.images.extend(
        Image(**{**asdict(image), "flagged": image.flagged or adult}, created_at=job.finished_at)
        for image in images
    )
    job.flagged = adult or any(image.flagged for image in images)
    session.flush()
    return job


def fail_job(session: Session, *, job_id: int, error: str, dispatch_id: str | None = None) -> Job:
    """Queued or running → failed, with the message to show (``dispatch_id``: as for :func:`finish_job`)."""
    job = _current(session, job_id, dispatch_id)
    move(job, "failed")
    job.error = error
    return job


def cancel_job(session: Session, *, job_id: int) -> Job:
    """Cancel at once if queued; if running, ask the worker to stop (it calls :func:`mark_cancelled`).

    Asking twice is harmless; a finished job raises :class:`InvalidTransition`.
    """
    job = _locked(session, job_id)
    if job.status == "running":
        log.info("job %d: cancel requested", job_id)
    else:
        move(job, "cancelled")
    job.cancel_requested = True
    return job


def mark_cancelled(session: Session, *, job_id: int, dispatch_id: str | None = None) -> Job:
    """The worker stopped the job (or never started it): → cancelled (``dispatch_id``: as for
    :func:`finish_job`)."""
    job = _current(session, job_id, dispatch_id)
    move(job, "cancelled")
    job.cancel_requested = True
    return job


def is_cancel_requested(session: Session, *, job_id: int) -> bool:
    """Whether someone asked to stop the job (cheap: for polling during generation)."""
    row = session.execute(select(Job.cancel_requested, Job.status).where(Job.id == job_id)).first()
    if row is None:
        raise JobNotFound(job_id)
    return bool(row.cancel_requested) or row.status == "cancelled"


def queued_jobs(session: Session, *, limit: int | None = None) -> list[Job]:
    """Queued jobs, highest priority first, then oldest first."""
    query = (
        select(Job)
        .where(Job.status == "queued")
        .order_by(Job.priority.desc(), Job.created_at, Job.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def count_unfinished_jobs(session: Session, *, owner_id: int) -> int:
    """How many of the user's jobs are queued or running."""
    query = select(func.count()).where(Job.owner_id == owner_id, Job.status.in_(UNFINISHED_STATUSES))
    return session.scalar(query) or 0


def requeue_interrupted_jobs(
    session: Session,
    *,
    max_attempts: int | None = None,
    poison_error: str = "",
    keep_dispatched: bool = False,
) -> list[int]:
    """After a crash: running jobs go back to the queue (or to cancelled, if that was asked).

    A job already started ``max_attempts`` times is failed with ``poison_error`` instead: it is
    likely what stopped the process, and running it again would stop it again. With
    ``keep_dispatched``, jobs running on remote workers (they have a ``dispatch_id``) are left
    running: their results are still to come.
    """
    query = select(Job).where(Job.status == "running")
    if keep_dispatched:
        query = query.where(Job.dispatch_id.is_(None))
    running = session.scalars(query.order_by(Job.id).with_for_update())
    return [
        job.id for job in running.all() if _requeue(job, max_attempts=max_attempts, poison_error=poison_error)
    ]


def requeue_dispatched_jobs(
    session: Session,
    *,
    dispatch_id: str,
    counted: bool,
    max_attempts: int | None = None,
    poison_error: str = "",
) -> list[int]:
    """The jobs still running in ``dispatch_id`` go back to the queue (its worker was lost, it
    timed out, or the broker lost it); the ids of those requeued.

    ``counted=False`` (the batch never ran: the message was lost) gives the attempt back; a
    counted one may fail the job as a poison job (see :func:`requeue_interrupted_jobs`).
    """
    running = session.scalars(
        select(Job)
        .where(Job.status == "running", Job.dispatch_id == dispatch_id)
        .order_by(Job.id)
        .with_for_update()
    )
    requeued = []
    for job in running.all():
        if not counted:
            job.attempts = max(0, job.attempts - 1)
        if _requeue(job, max_attempts=max_attempts if counted else None, poison_error=poison_error):
            requeued.append(job.id)
    return requeued


def dispatched_jobs(session: Session) -> list[Job]:
    """The jobs running on remote workers, by dispatch then id."""
    query = select(Job).where(Job.status == "running", Job.dispatch_id.is_not(None))
    return list(session.scalars(query.order_by(Job.dispatch_id, Job.id)))


def _requeue(job: Job, *, max_attempts: int | None, poison_error: str) -> bool:
    """A running ``job`` back to queued (``True``), or to cancelled or failed (``False``)."""
    job.dispatch_id = None
    job.worker = None
    if job.cancel_requested:
        move(job, "cancelled")
        log.info("job %d was being cancelled when it was interrupted; now cancelled", job.id)
        return False
    if max_attempts is not None and job.attempts >= max_attempts:
        move(job, "failed")
        job.error = poison_error
        log.warning("job %d was interrupted %d times while it ran; failed, not retried", job.id, job.attempts)
        return False
    move(job, "queued")
    return True


def running_jobs(session: Session) -> list[Job]:
    """The jobs being generated now, oldest start first."""
    return list(session.scalars(select(Job).where(Job.status == "running").order_by(Job.started_at, Job.id)))


def recent_runs(session: Session, *, limit: int = 50) -> list[tuple[datetime, datetime, int]]:
    """(started, finished, image count) of the newest done jobs: how fast the GPU has been going."""
    images = select(func.count()).where(Image.job_id == Job.id).correlate(Job).scalar_subquery()
    query = (
        select(Job.started_at, Job.finished_at, images)
        .where(Job.status == "done", Job.started_at.is_not(None), Job.finished_at.is_not(None))
        .order_by(Job.finished_at.desc())
        .limit(limit)
    )
    return [(started, finished, count) for started, finished, count in session.execute(query)]


def children_of(session: Session, *, job_id: int) -> list[Job]:
    """The jobs made from this one (rerolls, upscales, variations), oldest first."""
    return list(session.scalars(select(Job).where(Job.parent_id == job_id).order_by(Job.id)))


def find_image_path(session: Session, *, sha256: str) -> str | None:
    """The store path of an image or upload with this content hash (the source of an img2img or
    upscale)."""
    found = session.scalars(select(Image.path).where(Image.sha256 == sha256).limit(1)).first()
    if found is None:
        upload = session.get(Upload, sha256)
        found = upload.path if upload is not None else None
    return found


def record_upload(
    session: Session,
    *,
    sha256: str,
    path: str,
    width: int,
    height: int,
    size_bytes: int,
    owner_id: int | None,
) -> Upload:
    """Remember an uploaded source image (once per content: the first uploader is its owner)."""
    upload = session.get(Upload, sha256)
    if upload is None:
        upload = Upload(
            sha256=sha256, path=path, width=width, height=height, size_bytes=size_bytes, owner_id=owner_id,
            created_at=utcnow(),
        )  # fmt: skip
        session.add(upload)
        session.flush()
    return upload


def delete_job(session: Session, *, job_id: int) -> list[str]:
    """Delete a job that is not running, with its images and delivery; its children stay, parentless.

    Returns the image-store paths no other image uses: the caller deletes those files once the
    transaction has committed.
    """
    job = _locked(session, job_id)
    if job.status == "running":
        raise InvalidTransition(job_id, job.status, "deleted")
    paths = {image.path for image in job.images} | ({job.grid_path} if job.grid_path else set())
    session.delete(job)
    session.flush()
    if not paths:
        return []
    still_used = set(session.scalars(select(Image.path).where(Image.path.in_(paths))))
    still_used |= set(session.scalars(select(Upload.path).where(Upload.path.in_(paths))))
    still_used |= set(session.scalars(select(Job.grid_path).where(Job.grid_path.in_(paths))))
    return sorted(paths - still_used)


def _current(session: Session, job_id: int, dispatch_id: str | None) -> Job:
    """The locked job; with ``dispatch_id``, only while it still runs in that dispatch."""
    job = _locked(session, job_id)
    if dispatch_id is not None and (job.status != "running" or job.dispatch_id != dispatch_id):
        raise StaleDispatch(job_id, dispatch_id)
    return job


def _locked(session: Session, job_id: int) -> Job:
    """The job, locked until the transaction ends (``SELECT ... FOR UPDATE``), as it is now.

    ``populate_existing``: the session may hold the job as it read it before the lock was granted
    (``get_job`` first, then a change). On PostgreSQL another transaction may have changed it in
    between; without a refresh the change would act on the old status, overwriting the other's.
    """
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None:
        raise JobNotFound(job_id)
    return job
