"""Sharing jobs: ❤ likes, 📌 the showcase post, "Use this prompt" (a remix) and /show.

Every step first checks that the member may see the job (:meth:`Community.visible_job`): another
guild's job, or someone else's private job, is "not found".
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord

from bot import render
from bot.buttons import result_view, showcase_view
from bot.errors import BotError, report_error
from pipeline.errors import PipelineError
from pipeline.jobs import JobSnapshot
from pipeline.prompt.flags import format_prompt

if TYPE_CHECKING:
    from bot.client import NankeBot

log = logging.getLogger(__name__)

LIKE_CUSTOM_ID = "nk:like:{job_id}"
PROMPT_INPUT_MAX = 2000


class Sharing:
    """The handlers behind the ❤, 📌 and Use buttons, and /show."""

    def __init__(self, bot: NankeBot) -> None:
        self.bot = bot

    async def visible(self, interaction: discord.Interaction, job_id: int) -> JobSnapshot:
        return await asyncio.to_thread(
            self.bot.community.visible_job,
            job_id,
            guild_id=interaction.guild_id,
            viewer_id=interaction.user.id,
        )

    # -- ❤ ----------------------------------------------------------------------------------------

    async def like(self, interaction: discord.Interaction, *, job_id: int) -> None:
        """Toggle the clicker's like and show the new count on the message's ❤ button."""
        await self.visible(interaction, job_id)
        liked, count = await asyncio.to_thread(
            self.bot.community.toggle_like,
            job_id,
            discord_id=interaction.user.id,
            name=interaction.user.display_name,
        )
        if interaction.message is not None:
            view = discord.ui.View.from_message(interaction.message, timeout=None)
            custom_id = LIKE_CUSTOM_ID.format(job_id=job_id)
            for item in view.children:
                if isinstance(item, discord.ui.Button) and item.custom_id == custom_id:
                    item.label = str(count) if count else None
            await interaction.response.edit_message(view=view)
        else:
            await interaction.response.defer(ephemeral=True)
        word = "You like" if liked else "You no longer like"
        await interaction.followup.send(f"❤️ {word} #{job_id} ({count} ❤).", ephemeral=True)

    # -- 📌 ---------------------------------------------------------------------------------------

    async def share(self, interaction: discord.Interaction, *, job_id: int) -> None:
        """Post the job once to the guild's showcase channel, crediting its author."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await self.visible(interaction, job_id)
        if job.private:
            raise BotError("This job is private: private jobs are never showcased.")
        if job.status != "done" or interaction.guild_id is None:
            raise BotError("Only a finished image can be shared.")
        channel_id = await asyncio.to_thread(
            self.bot.community.showcase_channel, guild_id=interaction.guild_id
        )
        if channel_id is None:
            raise BotError(
                "This server has no showcase channel yet; an admin can set one with /settings showcase."
            )
        if not await asyncio.to_thread(self.bot.community.claim_showcase, job_id, channel_id=channel_id):
            raise BotError(f"Job #{job_id} is already in the showcase.")
        try:
            message = await self._post_showcase(job, channel_id)
        except BaseException:
            await asyncio.to_thread(self.bot.community.release_showcase, job_id)
            raise
        await asyncio.to_thread(self.bot.community.showcased, job_id, message_id=message.id)
        await interaction.followup.send(f"📌 Shared #{job_id} in <#{channel_id}>.", ephemeral=True)

    async def _post_showcase(self, job: JobSnapshot, channel_id: int) -> discord.Message:
        channel = self.bot.get_channel(channel_id) or await self.bot.fetch_channel(channel_id)
        file = await self.bot.deliverer.attachment(
            job, max_bytes=render.upload_limit(getattr(channel, "guild", None))
        )
        kwargs: dict[str, object] = {"file": file} if file is not None else {}
        return await channel.send(  # type: ignore[union-attr]
            content=f"📌 {render.headline(job)}\nShared by {job.owner_name} · job #{job.id}",
            embed=render.result_embed(job),
            view=showcase_view(job.id),
            allowed_mentions=discord.AllowedMentions.none(),
            **kwargs,  # type: ignore[arg-type]
        )

    # -- Use this prompt ------------------------------------------------------------------------

    async def open_remix(self, interaction: discord.Interaction, *, job_id: int) -> None:
        job = await self.visible(interaction, job_id)
        await interaction.response.send_modal(RemixModal(self.bot, job))

    # -- /show ----------------------------------------------------------------------------------

    async def show(self, interaction: discord.Interaction, *, job_id: int) -> None:
        """Post a finished job's result again, with buttons that work."""
        # One quick read before deferring, so "not found" is a private answer, not a public one.
        job = await self.visible(interaction, job_id)
        if job.status != "done":
            raise BotError(f"Job #{job_id} has no images ({job.status}).")
        await interaction.response.defer(thinking=True)
        likes = await asyncio.to_thread(self.bot.community.like_count, job_id)
        file = await self.bot.deliverer.attachment(job, max_bytes=interaction.filesize_limit)
        kwargs: dict[str, object] = {"file": file} if file is not None else {}
        await interaction.followup.send(
            content=render.finished_text(job),
            embed=render.result_embed(job),
            view=result_view(job.id, len(job.images), likes=likes),
            allowed_mentions=discord.AllowedMentions.none(),
            **kwargs,  # type: ignore[arg-type]
        )


class RemixModal(discord.ui.Modal):
    """The prompt of a job and its flags, ready to edit; submitting queues a remix of the job."""

    def __init__(self, bot: NankeBot, job: JobSnapshot) -> None:
        super().__init__(title=f"Remix #{job.id}"[:45], custom_id=f"nk:remix:{job.id}", timeout=15 * 60)
        self.bot = bot
        self.job_id = job.id
        self.prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label="Prompt and flags",
            style=discord.TextStyle.paragraph,
            default=format_prompt(job.request)[:PROMPT_INPUT_MAX],
            max_length=PROMPT_INPUT_MAX,
            custom_id="prompt",
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        try:
            request, private = self.bot.flow.prepare(self.prompt.value)
        except PipelineError as error:
            await report_error(interaction, error, job_id=self.job_id)
            return
        await self.bot.flow.start(
            interaction, request, private=True if private else None, kind="remix", parent_id=self.job_id
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:  # type: ignore[override]
        await report_error(interaction, error, job_id=self.job_id)
