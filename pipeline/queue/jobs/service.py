"""``JobService``: submitting, reading, cancelling and deleting jobs, and its four sections.

The job interface is the one door to storage. Everything that changes a job (submit, start,
finish with images, fail, cancel, requeue after a crash, mark delivered) and every read or
write of an image file goes through a :class:`JobService`: this module for what people ask
for, and its sections for the rest (``runs``: what the worker records, ``images``: the image
files, ``deliveries``: getting results to Discord, ``community``: likes, the showcase, listings
and member settings). It takes plain values and returns frozen snapshots.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pipeline.domain.request import GenerationRequest
from pipeline.errors import NotCancellable, PipelineError, QueueFull
from pipeline.queue import derive
from pipeline.queue.jobs.community import Community
from pipeline.queue.jobs.deliveries import Deliveries
from pipeline.queue.jobs.images import Images
from pipeline.queue.jobs.runs import Runs
from pipeline.queue.jobs.snapshots import FINISHED_STATUSES, Destination, JobSnapshot, Requester
from pipeline.queue.jobs.store import JobStore
from pipeline.queue.scheduler import FairScheduler, QueuedJob
from storage import (
    cancel_job,
    count_unfinished_jobs,
    create_delivery,
    create_job,
    delete_job,
    fail_job,
    get_job,
    get_or_create_user,
    queued_jobs,
)

log = logging.getLogger(__name__)

FINISHED_WORDS = {"done": "finished", "failed": "failed", "cancelled": "been cancelled"}


class JobService:
    """The job interface. Thread-safe: every call is one unit of work of its own."""

    def __init__(
        self,
        *,
        store: JobStore,
        scheduler: FairScheduler,
        max_pixels: int,
        max_queued_per_user: int,
        on_submit: Callable[[int], None] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.max_pixels = max_pixels
        self.max_queued_per_user = max_queued_per_user
        self.on_submit = on_submit
        self.runs = Runs(store)
        self.images = Images(store)
        self.deliveries = Deliveries(store)
        self.community = Community(store)
        self._store = store

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
        request and :class:`~pipeline.errors.QueueFull` when the requester has too many unfinished
        jobs.
        """
        request = request.validate(max_pixels=max_pixels or self.max_pixels).with_seed()
        with self._store.session() as session:
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
        """The job; raises :class:`~pipeline.errors.JobNotFound`."""
        with self._store.session() as session:
            return JobSnapshot.of(get_job(session, job_id=job_id))

    def queued(self) -> list[QueuedJob]:
        """The queued jobs, as the scheduler sees them."""
        with self._store.session() as session:
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

    # -- cancelling, abandoning and deleting ----------------------------------------------------

    def cancel(self, job_id: int) -> JobSnapshot:
        """Cancel a queued job at once, or ask the worker to stop a running one."""
        with self._store.session() as session:
            job = get_job(session, job_id=job_id)
            if job.status in FINISHED_STATUSES:
                raise NotCancellable(f"Job {job_id} has already {FINISHED_WORDS[job.status]}.")
            cancel_job(session, job_id=job_id)
            session.flush()
            return JobSnapshot.of(job)

    def abandon(self, job_id: int, *, reason: str | None) -> None:
        """Whoever ran ``job_id`` gave up on it: cancel it (``reason=None``: interrupted) or fail it
        with ``reason``, so it is not left for the bot to run with nowhere to send it."""
        if reason is None:
            self.cancel(job_id)
            return
        with self._store.session() as session:
            if not get_job(session, job_id=job_id).finished:
                fail_job(session, job_id=job_id, error=reason)

    def delete(self, job_id: int) -> JobSnapshot:
        """Delete a job, its images and the files no other image uses."""
        with self._store.session() as session:
            snapshot = JobSnapshot.of(get_job(session, job_id=job_id))
            orphaned = delete_job(session, job_id=job_id)
        for path in orphaned:
            self._store.delete(path)
        log.info("job %d deleted with %d files", job_id, len(orphaned))
        return snapshot
