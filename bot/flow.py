"""From an interaction to a queued job and back: the steps /imagine and every button share."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import discord

from bot.delivery import TOKEN_LIFETIME, Deliverer
from bot.errors import JobGone, report_error
from pipeline.jobs import Destination, JobService, JobSnapshot, Requester
from pipeline.prompt.flags import parse_prompt
from pipeline.request import GenerationRequest
from storage import get_showcase_post
from storage.errors import JobNotFound

if TYPE_CHECKING:
    from bot.client import NankeBot

log = logging.getLogger(__name__)


class JobFlow:
    """Queues jobs for interactions and answers within Discord's deadlines."""

    def __init__(self, bot: NankeBot, service: JobService, deliverer: Deliverer) -> None:
        self.bot = bot
        self.service = service
        self.deliverer = deliverer

    def prepare(self, text: str, **options: object) -> tuple[GenerationRequest, bool]:
        """Prompt text with flags (and /imagine's options, which win) → a validated request, and
        whether ``--private`` was given. Raises :class:`PipelineError` for bad input; no I/O."""
        parsed = parse_prompt(text)
        request = replace(parsed.request, **{k: v for k, v in options.items() if v is not None})
        if request.model is not None:
            request = replace(
                request, model=self.bot.services.catalog.resolve(request.model, allow_paths=False).name
            )
        return request.validate(max_pixels=self.bot.settings.max_pixels), parsed.private

    async def start(
        self,
        interaction: discord.Interaction,
        request: GenerationRequest,
        *,
        private: bool | None = None,
        kind: str = "imagine",
        parent_id: int | None = None,
    ) -> JobSnapshot | None:
        """/imagine (and remixes): defer (unless the handler already did), store the job, show its
        place in the queue. ``private=None``: the member's default (``/settings private``).

        ``request`` has been validated already, so invalid input never reaches this point.
        """
        if not interaction.response.is_done():
            await interaction.response.defer(thinking=True)
        try:
            if private is None:
                private = await asyncio.to_thread(
                    self.bot.community.private_by_default,
                    discord_id=interaction.user.id,
                    name=interaction.user.display_name,
                )
            job = await asyncio.to_thread(
                self.service.submit,
                request,
                requester=_requester(interaction),
                destination=_destination(interaction),
                kind=kind,
                parent_id=parent_id,
                private=private,
            )
        except Exception as error:
            await self.retract(interaction, error)
            return None
        await self.deliverer.announce_queued(interaction, job)
        return job

    async def start_child(
        self,
        interaction: discord.Interaction,
        *,
        parent_id: int,
        action: str,
        index: int = 0,
        strength: str = "strong",
    ) -> JobSnapshot | None:
        """A button under a result: queue the reroll/upscale/variation for the person who clicked."""
        await interaction.response.defer(thinking=True)
        try:
            job = await asyncio.to_thread(
                self.service.submit_child,
                parent_id,
                action=action,
                index=index,
                strength=strength,
                requester=_requester(interaction),
                destination=_destination(interaction),
            )
        except JobNotFound:
            await self.retract(interaction, JobGone(f"Job {parent_id} no longer exists."))
            return None
        except Exception as error:
            await self.retract(interaction, error, job_id=parent_id)
            return None
        await self.deliverer.announce_queued(interaction, job)
        return job

    async def cancel(self, interaction: discord.Interaction, *, job_id: int) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await asyncio.to_thread(self.service.cancel, job_id)
        if job.status == "cancelled":
            await self.deliverer.deliver(job_id)
            text = f"Job #{job_id} is cancelled."
        else:  # running: it stops at its next step, or finishes if it shares a batch with others
            text = f"Job #{job_id} will stop at its next step."
        await interaction.followup.send(text, ephemeral=True)

    async def delete(self, interaction: discord.Interaction, *, job_id: int) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        showcased = await asyncio.to_thread(self._showcase_message, job_id)
        await asyncio.to_thread(self.service.delete, job_id)
        messages = [interaction.message] if interaction.message is not None else []
        if showcased is not None:
            channel_id, message_id = showcased
            messages.append(self.bot.get_partial_messageable(channel_id).get_partial_message(message_id))
        for message in messages:
            try:
                await message.delete()
            except discord.HTTPException as error:
                log.info("could not delete message %d of job %d: %s", message.id, job_id, error)
        await interaction.followup.send(f"Job #{job_id} and its images are deleted.", ephemeral=True)

    def _showcase_message(self, job_id: int) -> tuple[int, int] | None:
        """(channel id, message id) of the job's showcase post, if it was shared."""
        with self.service.database.session() as session:
            post = get_showcase_post(session, job_id=job_id)
            return (post.channel_id, post.message_id) if post is not None and post.message_id else None

    async def owner_discord_id(self, job_id: int) -> int | None:
        try:
            job = await asyncio.to_thread(self.service.get, job_id)
        except JobNotFound:
            raise JobGone(f"Job {job_id} no longer exists.") from None
        return job.owner_discord_id

    async def retract(
        self, interaction: discord.Interaction, error: BaseException, *, job_id: int | None = None
    ) -> None:
        """Replace the public "thinking…" message by an ephemeral error: nothing was queued."""
        try:
            await interaction.delete_original_response()
        except discord.HTTPException:
            log.debug("could not delete the deferred response", exc_info=True)
        await report_error(interaction, error, job_id=job_id)


def _requester(interaction: discord.Interaction) -> Requester:
    return Requester(name=interaction.user.display_name, discord_id=interaction.user.id)


def _destination(interaction: discord.Interaction) -> Destination:
    return Destination(
        channel_id=interaction.channel_id or 0,
        guild_id=interaction.guild_id,
        application_id=interaction.application_id,
        interaction_token=interaction.token,
        token_expires_at=interaction.created_at + TOKEN_LIFETIME,
        upload_limit=interaction.filesize_limit,
    )
