"""The job interface: how requests become stored jobs, and how jobs are read, cancelled, deleted.

This is the one place where ``pipeline`` talks to ``storage``. It hands out frozen snapshots
(:class:`JobSnapshot`), never live ORM objects, so the bot's event loop and the GPU worker
thread can share them safely.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pipeline import derive
from pipeline.errors import PipelineError
from pipeline.request import GenerationRequest
from pipeline.scheduler import FairScheduler, QueuedJob
from storage import (
    Database,
    ImageStore,
    Job,
    cancel_job,
    count_unfinished_jobs,
    create_delivery,
    create_job,
    delete_job,
    get_job,
    get_or_create_user,
    queued_jobs,
)

log = logging.getLogger(__name__)

KINDS = ("imagine", "reroll", "upscale", "variation", "remix")


class QueueFull(PipelineError):
    """The member already has as many unfinished jobs as allowed."""


class NotCancellable(PipelineError):
    """The job has already finished."""


@dataclass(frozen=True)
class Requester:
    """Who asks: a Discord member (``discord_id``) or the local command line (``None``)."""

    name: str
    discord_id: int | None = None


@dataclass(frozen=True)
class Destination:
    """Where the result goes in Discord, and the interaction that may still answer there."""

    channel_id: int
    guild_id: int | None = None
    application_id: int | None = None
    interaction_token: str | None = None
    token_expires_at: datetime | None = None
    upload_limit: int | None = None


@dataclass(frozen=True)
class ImageSnapshot:
    index: int
    seed: int
    width: int
    height: int
    sha256: str
    path: str


@dataclass(frozen=True)
class JobSnapshot:
    """A read-only copy of a job row and its images."""

    id: int
    kind: str
    status: str
    request: GenerationRequest
    owner_name: str
    owner_discord_id: int | None
    parent_id: int | None
    parent_image_index: int | None
    guild_id: int | None
    channel_id: int | None
    model_name: str | None
    model_hash: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    images: tuple[ImageSnapshot, ...] = field(default_factory=tuple)
    environment_json: str | None = None
    """How a finished job was made (device, dtype, library versions, its batch): see the worker."""
    private: bool = False
    """Kept out of listings, search and the showcase."""
    parent_owner_name: str | None = None
    """Who made the parent job (a remix credits them)."""

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    @classmethod
    def of(cls, job: Job) -> JobSnapshot:
        return cls(
            id=job.id,
            kind=job.kind,
            status=job.status,
            request=GenerationRequest.from_json(job.request_json),
            owner_name=job.owner.name,
            owner_discord_id=job.owner.discord_id,
            parent_id=job.parent_id,
            parent_image_index=job.parent_image_index,
            guild_id=job.guild_id,
            channel_id=job.channel_id,
            model_name=job.model_name,
            model_hash=job.model_hash,
            error=job.error,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            images=tuple(
                ImageSnapshot(i.index, i.seed, i.width, i.height, i.sha256, i.path) for i in job.images
            ),
            environment_json=job.environment_json,
            private=job.private,
            parent_owner_name=job.parent.owner.name if job.parent is not None else None,
        )


class JobService:
    """Submits, reads, cancels and deletes jobs. Thread-safe: every call opens its own session."""

    def __init__(
        self,
        *,
        database: Database,
        store: ImageStore,
        scheduler: FairScheduler,
        max_pixels: int,
        max_queued_per_user: int,
        on_submit: Callable[[int], None] | None = None,
    ) -> None:
        self.database = database
        self.store = store
        self.scheduler = scheduler
        self.max_pixels = max_pixels
        self.max_queued_per_user = max_queued_per_user
        self.on_submit = on_submit

    # -- submitting -----------------------------------------------------------------------------

    def submit(
        self,
        request: GenerationRequest,
        *,
        requester: Requester,
        kind: str = "imagine",
        destination: Destination | None = None,
        parent_id: int | None = None,
        parent_image_index: int | None = None,
        max_pixels: int | None = None,
        private: bool = False,
    ) -> JobSnapshot:
        """Validate ``request``, give it a seed and store it as a queued job (with its delivery).

        The job is written before anyone is told it is queued. Raises ``InvalidRequest`` for a bad
        request and :class:`QueueFull` when the requester has too many unfinished jobs.
        """
        if kind not in KINDS:
            raise ValueError(f"kind: {kind!r} (allowed: {', '.join(KINDS)})")
        request = request.validate(max_pixels=max_pixels or self.max_pixels).with_seed()
        with self.database.session() as session:
            owner = get_or_create_user(session, discord_id=requester.discord_id, name=requester.name)
            if requester.discord_id is not None:
                unfinished = count_unfinished_jobs(session, owner_id=owner.id)
                if unfinished >= self.max_queued_per_user:
                    raise QueueFull(
                        f"You already have {unfinished} images on the way (the limit is "
                        f"{self.max_queued_per_user}); wait for one to finish or cancel one with ❌."
                    )
            job = create_job(
                session,
                kind=kind,
                owner=owner,
                request_json=request.to_json(),
                prompt=request.prompt,
                parent_id=parent_id,
                parent_image_index=parent_image_index,
                guild_id=destination.guild_id if destination else None,
                channel_id=destination.channel_id if destination else None,
                model_name=request.model,
                private=private,
            )
            if destination is not None:
                create_delivery(
                    session,
                    job_id=job.id,
                    channel_id=destination.channel_id,
                    guild_id=destination.guild_id,
                    application_id=destination.application_id,
                    interaction_token=destination.interaction_token,
                    token_expires_at=destination.token_expires_at,
                    upload_limit=destination.upload_limit,
                )
            session.flush()
            snapshot = JobSnapshot.of(job)
        log.info("job %d queued (%s by %s): %s", snapshot.id, kind, requester.name, request.prompt[:80])
        if self.on_submit is not None:
            self.on_submit(snapshot.id)
        return snapshot

    def submit_child(
        self,
        parent_id: int,
        *,
        action: str,
        requester: Requester,
        index: int = 0,
        strength: str = "strong",
        destination: Destination | None = None,
    ) -> JobSnapshot:
        """Queue a reroll, upscale or variation of ``parent_id`` (image ``index``) for ``requester``."""
        parent = self.get(parent_id)
        if action == "reroll":
            # The parent's size was accepted once (an upscale may exceed max_pixels): accept it again
            request = derive.reroll(parent.request)
            return self.submit(
                request,
                requester=requester,
                kind="reroll",
                destination=destination,
                parent_id=parent_id,
                max_pixels=max(self.max_pixels, request.width * request.height),
                private=parent.private,
            )
        if parent.status != "done" or not 0 <= index < len(parent.images):
            raise PipelineError(f"Job {parent_id} has no image {index + 1} to work from.")
        image = parent.images[index]
        if action == "upscale":
            request = derive.upscale(
                parent.request,
                image_sha256=image.sha256,
                width=image.width,
                height=image.height,
                max_pixels=derive.MAX_PIXELS,
            )
            max_pixels = self.max_pixels * derive.UPSCALE_FACTOR**2
        elif action == "variation":
            request = derive.variation(
                parent.request,
                image_sha256=image.sha256,
                width=image.width,
                height=image.height,
                strength=strength,  # type: ignore[arg-type]
            )
            max_pixels = max(self.max_pixels, image.width * image.height)
        else:
            raise ValueError(f"action: {action!r} (allowed: reroll, upscale, variation)")
        return self.submit(
            request,
            requester=requester,
            kind=action,
            destination=destination,
            parent_id=parent_id,
            parent_image_index=index,
            max_pixels=max_pixels,
            private=parent.private,
        )

    # -- reading --------------------------------------------------------------------------------

    def get(self, job_id: int) -> JobSnapshot:
        with self.database.session() as session:
            return JobSnapshot.of(get_job(session, job_id=job_id))

    def queued(self) -> list[QueuedJob]:
        """The queued jobs, as the scheduler sees them."""
        with self.database.session() as session:
            return [
                QueuedJob(
                    job_id=job.id,
                    owner_id=job.owner_id,
                    request=GenerationRequest.from_json(job.request_json),
                    created_at=job.created_at,
                    priority=job.priority,
                )
                for job in queued_jobs(session, limit=None)
            ]

    def position(self, job_id: int) -> int | None:
        """1-based place in the queue, ``None`` when the job is no longer queued."""
        return self.scheduler.position(job_id, self.queued())

    def image_bytes(self, image: ImageSnapshot) -> bytes:
        return self.store.read(image.path)

    # -- cancelling and deleting ----------------------------------------------------------------

    def cancel(self, job_id: int) -> JobSnapshot:
        """Cancel a queued job at once, or ask the worker to stop a running one."""
        with self.database.session() as session:
            job = get_job(session, job_id=job_id)
            if job.status in ("done", "failed", "cancelled"):
                raise NotCancellable(f"Job {job_id} has already {_finished_word(job.status)}.")
            cancel_job(session, job_id=job_id)
            session.flush()
            return JobSnapshot.of(job)

    def delete(self, job_id: int) -> JobSnapshot:
        """Delete a job, its images and the files no other image uses."""
        with self.database.session() as session:
            job = get_job(session, job_id=job_id)
            snapshot = JobSnapshot.of(job)
            orphaned = delete_job(session, job_id=job_id)
        for path in orphaned:
            self.store.delete(path)
        log.info("job %d deleted with %d files", job_id, len(orphaned))
        return snapshot


def _finished_word(status: str) -> str:
    return {"done": "finished", "failed": "failed", "cancelled": "been cancelled"}[status]
