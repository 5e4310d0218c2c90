"""``JobService``: submitting, reading, cancelling and deleting jobs, and its four sections.

The job interface is the one door to storage. Everything that changes a job (submit, start,
finish with images, fail, cancel, requeue after a crash, mark delivered) and every read or
write of an image file goes through a :class:`JobService`: this module for what people ask
for, and its sections for the rest (``runs``: what the worker records, ``images``: the image
files, ``deliveries``: getting results to Discord, ``community``: likes, the showcase, listings
and member settings, ``keys``: the HTTP API's keys, ``moderation``: content rules, bans, daily
limits, paused queues and the audit log). It takes plain values and returns frozen snapshots.

Guild isolation is one rule, applied wherever a job is looked up for a member (:meth:`visible`):
a job is only visible in the guild it was made in, a private one only to its owner, and an
invisible job is "not found". Cancelling and deleting also need the owner or a moderator
(:meth:`JobSnapshot.manageable_by`). ``viewer=None`` is the local command line, which may do
anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from sqlalchemy.orm import Session

from pipeline.domain.request import GenerationRequest
from pipeline.domain.text import shorten
from pipeline.errors import JobError, JobNotFound, NotCancellable, NotPermitted, PipelineError, QueueFull
from pipeline.queue import derive
from pipeline.queue.jobs.community import Community
from pipeline.queue.jobs.deliveries import Deliveries
from pipeline.queue.jobs.images import Images
from pipeline.queue.jobs.keys import ApiKeys
from pipeline.queue.jobs.moderation import AUDIT_PROMPT_CHARS, Moderation, audit
from pipeline.queue.jobs.overview import QueueEntry, QueueOverview, seconds_per_image, with_estimates
from pipeline.queue.jobs.runs import Runs
from pipeline.queue.jobs.snapshots import FINISHED_STATUSES, Destination, JobSnapshot, Requester, Viewer
from pipeline.queue.jobs.store import JobStore
from pipeline.queue.scheduler import FairScheduler, QueuedJob
from pipeline.queue.worker_status import WorkerStatus
from storage import (
    InvalidTransition,
    User,
    cancel_job,
    count_unfinished_jobs,
    create_delivery,
    create_job,
    delete_job,
    fail_job,
    get_job,
    get_or_create_user,
    is_visible,
    mark_cancelled,
    paused_guilds,
    queued_jobs,
    recent_runs,
    running_jobs,
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
        check: Callable[[GenerationRequest], None] | None = None,
        workers: Callable[[], Sequence[WorkerStatus]] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.workers = workers
        """The remote GPU workers, for the overview (``None``: the embedded worker)."""
        self.check = check
        """Refuses a request whose LoRA or VAE files are missing, before it is queued."""
        self.max_pixels = max_pixels
        self.max_queued_per_user = max_queued_per_user
        self.on_submit = on_submit
        self.runs = Runs(store)
        self.images = Images(store)
        self.deliveries = Deliveries(store)
        self.community = Community(store)
        self.moderation = Moderation(store)
        self.keys = ApiKeys(store)
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
        adult: bool = False,
    ) -> JobSnapshot:
        """Validate ``request``, give it a seed and store it as a queued job (with its delivery).

        The job is written before anyone is told it is queued. A Discord member's submission is
        first judged by the guild's content rules, bans and daily limits (see
        :meth:`Moderation.screen`); a prompt that is adult content (or ``adult``: the job works
        from an adult image) makes an adult job, kept out of listings and the showcase. Raises
        ``InvalidRequest`` for a bad request, :class:`~pipeline.errors.Banned`,
        :class:`~pipeline.errors.ContentRefused` or :class:`~pipeline.errors.DailyLimitReached`
        when the rules refuse it, and :class:`~pipeline.errors.QueueFull` when the requester has
        too many unfinished jobs, and :class:`~pipeline.errors.ResourceNotFound` for a LoRA or VAE
        that is not in its folder.
        """
        request = request.validate(max_pixels=max_pixels or self.max_pixels).with_seed()
        if self.check is not None:
            self.check(request)
        # Only the prompt is judged: a negative prompt names what is not to be drawn
        verdict = self.moderation.screen(
            request.prompt, requester=requester, destination=destination, images=request.count
        )
        guild_id = destination.guild_id if destination is not None else requester.guild_id
        with self._store.session() as session:
            owner = self._owner(session, requester)
            if not requester.local:
                unfinished = count_unfinished_jobs(session, owner_id=owner.id)
                if unfinished >= self.max_queued_per_user:
                    raise QueueFull(
                        f"You already have {unfinished} images on the way (the limit is "
                        f"{self.max_queued_per_user}); wait for one to finish or cancel one with ❌.",
                        key="queue_full",
                        params={"unfinished": unfinished, "limit": self.max_queued_per_user},
                    )
            job = create_job(
                session,
                kind=kind,
                owner=owner,
                request_json=request.to_json(),
                prompt=request.prompt,
                parent_id=parent_id,
                parent_image_index=parent_image_index,
                guild_id=guild_id,
                channel_id=destination.channel_id if destination else None,
                model_name=request.model,
                private=private,
                flagged=verdict.nsfw or adult,
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
                    age_restricted=destination.age_restricted,
                )
            session.flush()
            if verdict.nsfw:
                via = {"via": requester.name} if requester.discord_id is None else {}
                audit(
                    session, job.guild_id, "prompt_adult", actor=requester.discord_id, job_id=job.id,
                    term=verdict.term, **via,
                )  # fmt: skip
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
        viewer: Viewer | None = None,
        prompts: tuple[str, str] | None = None,
        canvas: str | None = None,
    ) -> JobSnapshot:
        """Queue a reroll, upscale or variation of ``parent_id`` (image ``index``) for ``requester``,
        who must be able to see the parent (``viewer``); ``prompts`` (remix mode) replaces the
        prompt and negative prompt the child inherits (they are judged like any new prompt).
        ``action="canvas"`` with ``canvas`` (``zoom:2``, ``pan:left``, ``square``, ``cells:4``) is a
        Zoom Out, Pan, Make Square or Vary (Region), stored as a variation of the image."""
        parent = self.visible(parent_id, viewer)
        if prompts is not None:
            parent = replace(
                parent, request=replace(parent.request, prompt=prompts[0], negative_prompt=prompts[1])
            )
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
            raise PipelineError(
                f"Job {parent_id} has no image {index + 1} to work from.",
                key="no_image",
                params={"job_id": parent_id, "image": index + 1},
            )
        image = parent.images[index]
        if image.flagged and not (destination is not None and destination.age_restricted):
            raise self.moderation.refuse_flagged_image(
                guild_id=parent.guild_id, job_id=parent_id, image=index, requester=requester
            )
        if action == "upscale":
            request = derive.upscale(
                parent.request,
                image_sha256=image.sha256,
                width=image.width,
                height=image.height,
                max_pixels=derive.MAX_PIXELS,
            )
            max_pixels = self.max_pixels * derive.UPSCALE_FACTOR**2
        elif action == "canvas":
            request = derive.on_canvas(
                parent.request,
                image_sha256=image.sha256,
                width=image.width,
                height=image.height,
                canvas=canvas or "",
                max_pixels=self.max_pixels,
            )
            max_pixels = self.max_pixels
            action = "variation"
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
            raise ValueError(f"action: {action!r} (allowed: reroll, upscale, variation, canvas)")
        return self.submit(
            request,
            requester=requester,
            kind=action,
            destination=destination,
            parent_id=parent_id,
            parent_image_index=index,
            max_pixels=max_pixels,
            private=parent.private,
            adult=image.flagged,
        )

    # -- reading --------------------------------------------------------------------------------

    def get(self, job_id: int) -> JobSnapshot:
        """The job; raises :class:`~pipeline.errors.JobNotFound`."""
        with self._store.session() as session:
            return JobSnapshot.of(get_job(session, job_id=job_id))

    def visible(self, job_id: int, viewer: Viewer | None) -> JobSnapshot:
        """The job, if ``viewer`` may see it where they are; else :class:`~pipeline.errors.JobNotFound`."""
        with self._store.session() as session:
            job = get_job(session, job_id=job_id)
            if viewer is not None and not is_visible(
                job,
                guild_id=viewer.guild_id,
                viewer_discord_id=viewer.discord_id,
                viewer_user_id=viewer.user_id,
            ):
                raise JobNotFound(job_id)
            return JobSnapshot.of(job)

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
                    guild_id=job.guild_id,
                )
                for job in queued_jobs(session, limit=None)
            ]

    def runnable(self) -> list[QueuedJob]:
        """The queued jobs that may start now: those of guilds whose queue is not paused."""
        paused = self.moderation.paused()
        return [job for job in self.queued() if job.guild_id not in paused]

    def position(self, job_id: int) -> int | None:
        """1-based place in the queue, ``None`` when the job is no longer queued."""
        return self.scheduler.position(job_id, self.queued())

    def overview(self) -> QueueOverview:
        """Every unfinished job (running first, then the queue in order), with estimates."""
        with self._store.session() as session:
            running = [
                QueueEntry(
                    job_id=job.id,
                    status="running",
                    position=None,
                    owner_discord_id=job.owner.discord_id,
                    owner_name=job.owner.name,
                    guild_id=job.guild_id,
                    images=GenerationRequest.from_json(job.request_json).count,
                    prompt=job.prompt,
                    owner_id=job.owner_id,
                )
                for job in running_jobs(session)
            ]
            waiting = {job.id: job for job in queued_jobs(session, limit=None)}
            owners = {
                job_id: (job.owner.discord_id, job.owner.name, job.owner_id)
                for job_id, job in waiting.items()
            }
            paused = paused_guilds(session)
            per_image = seconds_per_image(recent_runs(session))
        queued = [
            QueueEntry(
                job_id=job.job_id,
                status="queued",
                position=place,
                owner_discord_id=owners[job.job_id][0],
                owner_name=owners[job.job_id][1],
                guild_id=job.guild_id,
                images=job.request.count,
                prompt=job.request.prompt,
                paused=job.guild_id in paused,
                owner_id=owners[job.job_id][2],
            )
            for place, job in enumerate(self.scheduler.order(self.queued()), start=1)
            if job.job_id in owners
        ]
        workers = tuple(self.workers()) if self.workers is not None else ()
        return QueueOverview(
            with_estimates([*running, *queued], per_image),
            per_image,
            workers,
            remote=self.workers is not None,
        )

    # -- cancelling, abandoning and deleting ----------------------------------------------------

    def cancel(self, job_id: int, *, viewer: Viewer | None = None) -> JobSnapshot:
        """Cancel a queued job at once, or ask the worker to stop a running one."""
        self._check_manageable(job_id, viewer)
        with self._store.session() as session:
            try:
                # Locks the row first: the status judged is the one a worker may be changing now
                job = cancel_job(session, job_id=job_id)
            except InvalidTransition:
                status = get_job(session, job_id=job_id).status
                if status not in FINISHED_STATUSES:
                    raise
                raise NotCancellable(
                    f"Job {job_id} has already {FINISHED_WORDS[status]}.",
                    key=f"not_cancellable.{status}",
                    params={"job_id": job_id},
                ) from None
            session.flush()
            snapshot = JobSnapshot.of(job)
            _log_moderator(session, "cancel", snapshot, viewer)
            return snapshot

    def abandon(self, job_id: int, *, reason: str | None) -> None:
        """Whoever ran ``job_id`` gave up on it: cancel it (``reason=None``: interrupted) or fail it
        with ``reason``, so it is not left for the bot to run with nowhere to send it."""
        with self._store.session() as session:
            job = get_job(session, job_id=job_id)
            if job.finished:
                return
            if reason is None:
                # Whoever gives up was running it: nobody else will stop it, so it stops now
                mark_cancelled(session, job_id=job_id)
            else:
                fail_job(session, job_id=job_id, error=reason)

    def delete(self, job_id: int, *, viewer: Viewer | None = None) -> JobSnapshot:
        """Delete a job, its images and the files no other image uses."""
        self._check_manageable(job_id, viewer)
        with self._store.session() as session:
            snapshot = JobSnapshot.of(get_job(session, job_id=job_id))
            orphaned = delete_job(session, job_id=job_id)
            _log_moderator(session, "delete", snapshot, viewer)
        for path in orphaned:
            self._store.delete(path)
        log.info("job %d deleted with %d files", job_id, len(orphaned))
        return snapshot

    def _owner(self, session: Session, requester: Requester) -> User:
        if requester.user_id is not None:
            owner = session.get(User, requester.user_id)
            if owner is None:
                raise JobError(f"the user {requester.user_id} of {requester.name!r} no longer exists")
            return owner
        return get_or_create_user(session, discord_id=requester.discord_id, name=requester.name)

    def _check_manageable(self, job_id: int, viewer: Viewer | None) -> None:
        if viewer is not None and not self.visible(job_id, viewer).manageable_by(viewer):
            raise NotPermitted(NotPermitted.MANAGE, key="not_permitted")


def _log_moderator(session: Session, action: str, job: JobSnapshot, viewer: Viewer | None) -> None:
    """A moderator acting on someone else's job goes to the audit log."""
    if viewer is not None and viewer.discord_id != job.owner_discord_id:
        audit(
            session, job.guild_id, action, actor=viewer.discord_id, target=job.owner_discord_id,
            job_id=job.id, prompt=shorten(job.request.prompt, AUDIT_PROMPT_CHARS),
        )  # fmt: skip
