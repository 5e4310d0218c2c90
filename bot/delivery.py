"""Getting results to Discord under Discord's rules, exactly once.

- Progress edits of one message are at least ``edit_interval`` seconds apart (latest wins).
- Results go out through the interaction's webhook while its token is valid (15 minutes), and
  with ``channel.send`` mentioning the requester afterwards (long queue, restart, a token Discord
  refuses): never lost. Queue and progress messages are cleaned up the same way.
- An upload over the limit is re-encoded smaller (PNG → WebP → JPEG, parameters kept).
- Exactly once across crashes: the intent to post is written before the post goes out, and a
  delivery whose earlier attempt may have reached Discord (a crash, a dropped connection) first
  looks for the result in the channel's recent history (:meth:`~bot.posting.Poster.scan`) and
  only posts it when it is not there.
- A failed post (an error answer, a dropped connection, a timeout) stays ``pending`` and is
  retried with backoff; on start, every finished-but-undelivered job is delivered.
- A job's messages are in the language of the member who asked (:mod:`bot.i18n`), remembered in
  memory from their interaction until the result is out; a job whose interaction this process
  never saw (a restart) is posted in the server's preferred language, else English. Nothing of it
  is stored (no column for a matter of presentation): a restart costs the results it interrupted
  at most their member's own language.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import discord
from PIL import Image

from bot import render
from bot.cogs.actions import queued_view, result_view
from bot.cogs.canvas import single_size
from bot.errors import NETWORK_ERRORS
from bot.i18n import Texts, for_guild, for_interaction
from bot.posting import Found, Poster, token_invalid
from pipeline.domain.grid import preview_jpeg
from pipeline.domain.metadata import UploadTooLarge
from pipeline.domain.moderation import Showing, showing
from pipeline.errors import JobNotFound
from pipeline.queue.jobs import DeliverySnapshot, JobSnapshot
from pipeline.queue.jobs.asynchronous import AsyncJobs

log = logging.getLogger(__name__)
PREVIEW_NAME = "preview.jpg"
"""The file name of a progress message's preview image."""

RETRY_DELAYS = (2.0, 5.0, 15.0, 60.0, 300.0)
MAX_ATTEMPTS = 12
ANNOUNCE_GRACE = timedelta(seconds=30)
EVERYTHING_DUE = timedelta(days=36500)
"""Looking this far ahead makes every pending delivery due (at start, whatever its backoff)."""
MIN_UPLOAD = 8 * 1024
"""Halving the upload size after a 413 stops here (the encoder then says it cannot fit)."""
TOO_LARGE_CODE = 40005


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _ProgressState:
    last_edit: float = float("-inf")
    latest: tuple[int, int, float] | None = None
    """The newest (step, total, elapsed seconds) not yet shown."""
    preview: list[Image.Image] | None = None
    """The newest preview images not yet shown."""
    shown_step: tuple[int, int, float] | None = None
    """The step the message shows now (a preview alone is shown with it)."""
    previews_wanted: bool | None = None
    """The owner's /settings previews, read once per job."""
    job: JobSnapshot | None = None
    task: asyncio.Task[None] | None = None


class Deliverer:
    """Posts queue, progress and result messages for jobs; all methods run on the bot's loop.

    ``client`` is the Discord connection the messages go through.
    """

    def __init__(
        self,
        client: discord.Client,
        jobs: AsyncJobs,
        *,
        edit_interval: float = 2.0,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.client = client
        self.jobs = jobs
        self.edit_interval = edit_interval
        self.now = now
        self._progress: dict[int, _ProgressState] = {}
        self._delivering: set[int] = set()
        self._texts: dict[int, Texts] = {}
        """The language of each job whose interaction this process answered, until it is delivered."""

    # -- queued and progress --------------------------------------------------------------------

    async def acknowledge(self, interaction: discord.Interaction, job: JobSnapshot) -> None:
        """Answer the interaction of a job just stored: defer it (unless the handler did), then
        show the queue message. A network failure here loses nothing: the job is queued and its
        result is posted when it is done."""
        self._texts[job.id] = for_interaction(interaction)
        try:
            if not interaction.response.is_done():
                await interaction.response.defer(thinking=True)
        except NETWORK_ERRORS as error:
            # The deferral may still have reached Discord (a connection dropped after it): go on
            log.warning("job %d is queued, but acknowledging it failed: %s", job.id, error)
        try:
            await self.announce_queued(interaction, job)
        except NETWORK_ERRORS as error:
            log.warning("job %d is queued, but its queue message failed: %s", job.id, error)

    async def announce_queued(self, interaction: discord.Interaction, job: JobSnapshot) -> None:
        """Turn the deferred response into the job's queue message (with ❌) and remember its id."""
        position = await self.jobs.position(job.id)
        message = await interaction.edit_original_response(
            content=render.queued_text(job, position, texts=for_interaction(interaction)),
            view=queued_view(job.id),
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self._progress.setdefault(job.id, _ProgressState()).last_edit = time.monotonic()
        await self.jobs.deliveries.record_progress_message(job.id, message_id=message.id)
        # A fast job may have finished while this message went out; deliver() waited for it.
        if (await self.jobs.get(job.id)).finished:
            await self.deliver(job.id)

    def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
        """Show progress, coalescing updates so one message is edited at most every interval."""
        state = self._progress.setdefault(job_id, _ProgressState())
        state.latest = (step, total, elapsed_s)
        self._schedule_flush(job_id, state)

    def preview(self, job_id: int, images: list[Image.Image]) -> None:
        """Show a preview with the next progress edit (when the job's owner wants previews)."""
        state = self._progress.setdefault(job_id, _ProgressState())
        state.preview = images
        self._schedule_flush(job_id, state)

    def _schedule_flush(self, job_id: int, state: _ProgressState) -> None:
        if state.task is None or state.task.done():
            state.task = asyncio.create_task(self._flush_progress(job_id), name=f"nanke-progress-{job_id}")

    async def _flush_progress(self, job_id: int) -> None:
        state = self._progress[job_id]
        wait = state.last_edit + self.edit_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        latest, state.latest = state.latest, None
        preview, state.preview = state.preview, None
        latest = latest or state.shown_step
        if latest is None:
            return
        try:
            if state.job is None:
                state.job = await self.jobs.get(job_id)
            delivery = await self.jobs.deliveries.get(job_id)
            if delivery is not None and delivery.progress_message_id is not None:
                text = render.progress_text(state.job, *latest, texts=self.texts_of(delivery))
                image = None
                if preview and await self._wants_previews(state):
                    image = (PREVIEW_NAME, await asyncio.to_thread(preview_jpeg, preview))
                await self._poster(delivery).edit(delivery.progress_message_id, content=text, image=image)
                state.shown_step = latest
        except NETWORK_ERRORS as error:
            log.info("progress edit for job %d failed: %s", job_id, error)
        finally:
            # Measured from when Discord has the edit, so the next one is a full interval later.
            state.last_edit = time.monotonic()

    async def _wants_previews(self, state: _ProgressState) -> bool:
        """Whether the job's owner keeps previews on (``/settings previews``); jobs from the
        command line or the HTTP API have no progress message to show them in."""
        if state.previews_wanted is None:
            owner = state.job.owner_discord_id if state.job is not None else None
            state.previews_wanted = (
                owner is not None and (await self.jobs.community.member_settings(discord_id=owner)).previews
            )
        return state.previews_wanted

    def _stop_progress(self, job_id: int) -> None:
        state = self._progress.pop(job_id, None)
        if state is not None and state.task is not None and not state.task.done():
            state.task.cancel()

    # -- results ------------------------------------------------------------------------------

    async def deliver(self, job_id: int) -> bool:
        """Post a finished job's result (or failure) once; ``True`` when it is delivered now."""
        if job_id in self._delivering:
            return False
        self._delivering.add(job_id)
        try:
            self._stop_progress(job_id)
            return await self._deliver(job_id)
        finally:
            self._delivering.discard(job_id)

    async def _deliver(self, job_id: int) -> bool:
        try:
            job = await self.jobs.get(job_id)
        except JobNotFound:
            self._texts.pop(job_id, None)
            return False  # deleted meanwhile: its delivery row went with it
        delivery = await self.jobs.deliveries.get(job_id)
        if delivery is None or delivery.status != "pending":
            self._texts.pop(job_id, None)  # delivered, or given up on, already
            return False
        if not job.finished or self._announcing(delivery):
            return False
        poster = self._poster(delivery)
        try:
            # 1. An earlier attempt may have reached Discord: look before posting again
            found = None
            if delivery.posting_since is not None:
                found = await poster.scan(job, since=delivery.posting_since)
            if found is not None and found.result_id is not None:
                message_id = found.result_id
                log.info("job %d: its result was already posted, as message %d", job_id, message_id)
            else:
                # 2. Post, the intent written first
                await self.jobs.deliveries.begin_posting(job_id, now=self.now())
                message_id = await self._post_result(job, poster)
        except NETWORK_ERRORS as error:
            await self._failed(delivery, str(error) or type(error).__name__)
            return False
        except Exception as error:
            log.exception("delivery of job %d failed unexpectedly", job_id)
            await self._failed(delivery, repr(error))
            return False
        await self.jobs.deliveries.mark_delivered(job_id, message_id=message_id)
        self._texts.pop(job_id, None)
        log.info("job %d delivered as message %d", job_id, message_id)
        # 3. The queue or progress message is replaced by the result
        await self._clean_up(job, poster, found)
        return True

    async def _clean_up(self, job: JobSnapshot, poster: Poster, found: Found | None) -> None:
        stale = set(found.stale_ids if found is not None else ())
        delivery = poster.delivery
        if delivery.progress_message_id is not None:
            stale.add(delivery.progress_message_id)
        elif found is None and not poster.token_valid:
            # A queue message whose id was never recorded (a crash right after it was posted)
            scanned = await poster.scan(job, since=delivery.created_at)
            stale.update(scanned.stale_ids if scanned is not None else ())
        for message_id in sorted(stale):
            await poster.delete_quietly(message_id)

    async def _post_result(self, job: JobSnapshot, poster: Poster, *, use_token: bool | None = None) -> int:
        """Post the result: as a follow-up while the interaction token lives, else in the channel
        with a mention of the requester. Returns the message id."""
        if use_token is None:
            use_token = poster.token_valid
        mention = None if use_token or job.owner_discord_id is None else f"<@{job.owner_discord_id}>"
        allowed = (
            discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(job.owner_discord_id)])
            if mention
            else discord.AllowedMentions.none()
        )
        kwargs: dict[str, object] = {"allowed_mentions": allowed}
        texts = self.texts_of(poster.delivery)
        if job.status == "done":
            content = render.finished_text(job, mention, texts=texts)
            kwargs.update(
                embed=render.result_embed(job, texts=texts),
                view=result_view(job.id, len(job.images), texts=texts, size=single_size(job)),
            )
        else:
            content = render.failure_text(job, mention, texts=texts)
        limit = poster.upload_limit
        shown = await self.showing(job, age_restricted=poster.delivery.age_restricted)
        note = render.showing_note(shown, texts)
        while True:
            kwargs.pop("file", None)
            kwargs["content"] = content if note is None else f"{content}\n{note}"
            if job.status == "done" and shown.shown:
                file = await self.attachment(job, max_bytes=limit, showing=shown)
                if file is None:
                    kwargs["content"] = f"{kwargs['content']}\n{render.too_large_note(texts)}"
                else:
                    kwargs["file"] = file
            try:
                try:
                    return await poster.send(use_token=use_token, **kwargs)
                except discord.HTTPException as error:
                    if not use_token or not token_invalid(error):
                        raise
                    log.info("job %d: interaction token no longer valid, posting in the channel", job.id)
                    return await self._post_result(job, poster, use_token=False)
            except discord.HTTPException as error:
                too_large = error.status == 413 or error.code == TOO_LARGE_CODE
                if "file" in kwargs and too_large and limit > MIN_UPLOAD:
                    limit //= 2
                    log.info("job %d: upload too large, trying under %d bytes", job.id, limit)
                    continue
                raise

    def _announcing(self, delivery: DeliverySnapshot) -> bool:
        """The queue message of a live interaction is not recorded yet (it is on its way).

        Posting now would fill the deferred response, which the queue message then overwrites;
        ``announce_queued`` delivers once it is done. Past the grace period (a crash between
        queueing and announcing) the result goes out anyway.
        """
        return (
            delivery.progress_message_id is None
            and self._poster(delivery).token_valid
            and self.now() < delivery.created_at + ANNOUNCE_GRACE
        )

    def texts_of(self, delivery: DeliverySnapshot) -> Texts:
        """The language of a job's messages: its member's, while this process remembers their
        interaction; else its server's preferred language; else English."""
        remembered = self._texts.get(delivery.job_id)
        if remembered is not None:
            return remembered
        return for_guild(self.client.get_guild(delivery.guild_id) if delivery.guild_id else None)

    def _poster(self, delivery: DeliverySnapshot) -> Poster:
        return Poster(self.client, delivery, now=self.now())

    async def showing(self, job: JobSnapshot, *, age_restricted: bool) -> Showing:
        """Which of the job's images a channel shows, and how: flagged images (adult content) only
        in age-restricted channels; elsewhere withheld or behind a spoiler, as the server chose."""
        flags = [image.flagged for image in job.images]
        if age_restricted or not any(flags):
            return showing(flags, age_restricted=True, action="withhold")
        policy = await self.jobs.moderation.policy(guild_id=job.guild_id)
        return showing(flags, age_restricted=False, action=policy.flagged_images)

    async def attachment(
        self, job: JobSnapshot, *, max_bytes: int, showing: Showing | None = None
    ) -> discord.File | None:
        """The job's image (or grid; with ``showing``, of the images it shows) as an upload under
        ``max_bytes``; ``None`` if it has none or it cannot fit (for /show and the showcase, which
        post a finished job again, too).

        Showing all of them, the PNG stored when they were made is posted as it is, when it fits.
        """
        spoiler = showing is not None and showing.spoiler
        if showing is None or len(showing.shown) == len(job.images):
            posted = await self.jobs.images.posted(job)
            if posted is not None and len(posted) <= max_bytes:
                return render.upload(job, posted, grid=len(job.images) > 1, spoiler=spoiler)
        images = await self.jobs.images.load(job)
        if showing is not None:
            images = [images[index] for index in showing.shown if index < len(images)]
        if not images:
            return None
        try:
            return await asyncio.to_thread(
                render.result_file, job, images, max_bytes=max_bytes, spoiler=spoiler
            )
        except UploadTooLarge as error:
            log.warning("job %d: %s; posting it without the image", job.id, error)
            return None

    async def _failed(self, delivery: DeliverySnapshot, error: str) -> None:
        attempt = delivery.attempts + 1
        give_up = attempt >= MAX_ATTEMPTS
        delay = RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)]
        log.warning(
            "delivery of job %d failed (attempt %d)%s: %s",
            delivery.job_id,
            attempt,
            ", giving up" if give_up else f", retrying in {delay:g} s",
            error,
        )
        await self.jobs.deliveries.record_failure(
            delivery.job_id, error=error, retry_at=None if give_up else self.now() + timedelta(seconds=delay)
        )
        if give_up:
            self._texts.pop(delivery.job_id, None)

    # -- the retry loop -----------------------------------------------------------------------

    async def deliver_due(self, *, all_pending: bool = False) -> int:
        """Deliver every finished job whose delivery is pending and due (``all_pending``: due or
        not, as at start); returns how many went out."""
        later = self.now() + EVERYTHING_DUE if all_pending else self.now()
        due = await self.jobs.deliveries.due(now=later)
        delivered = 0
        for job_id in due:
            try:
                delivered += await self.deliver(job_id)
            except Exception:  # one bad row must not hold up the others
                log.exception("delivering job %d failed", job_id)
        return delivered
