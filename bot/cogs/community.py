"""Sharing jobs: ❤ likes, 📌 the showcase post and "Use this prompt" (a remix), with their buttons.

Every step first checks that the member may see the job (:func:`visible_job`): another guild's
job, or someone else's private job, is "not found". ``custom_id``: ``nk:like:<job>``,
``nk:share:<job>``, ``nk:use:<job>``; the remix modal is ``nk:remix:<job>``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from bot import render
from bot.async_jobs import AsyncJobs
from bot.buttons import JOB_ID, CustomId, Feature, JobButton, visible_job
from bot.errors import BotError, NotAllowed, report_error
from pipeline.domain.prompt.flags import format_prompt
from pipeline.errors import PipelineError
from pipeline.queue.jobs import JobSnapshot

if TYPE_CHECKING:
    from bot.client import NankeBot
    from bot.delivery import Deliverer
    from bot.submitting import Submitter

log = logging.getLogger(__name__)

LIKE = CustomId("nk:like:{job}", job=JOB_ID)
SHARE = CustomId("nk:share:{job}", job=JOB_ID)
USE = CustomId("nk:use:{job}", job=JOB_ID)
REMIX = CustomId("nk:remix:{job}", job=JOB_ID)
PROMPT_INPUT_MAX = 2000


class Community(Feature):
    """The handlers behind the ❤, 📌 and Use buttons and the remix form."""

    def __init__(self, *, jobs: AsyncJobs, deliverer: Deliverer, submitter: Submitter) -> None:
        self.jobs = jobs
        self.deliverer = deliverer
        self.submitter = submitter

    # -- ❤ ----------------------------------------------------------------------------------------

    async def like(self, interaction: discord.Interaction, *, job_id: int) -> None:
        """Toggle the clicker's like and show the new count on the message's ❤ button."""
        await visible_job(self.jobs, interaction, job_id)
        liked, count = await self.jobs.community.toggle_like(
            job_id, discord_id=interaction.user.id, name=interaction.user.display_name
        )
        if interaction.message is not None:
            view = discord.ui.View.from_message(interaction.message, timeout=None)
            custom_id = LIKE.format(job=job_id)
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
        job = await visible_job(self.jobs, interaction, job_id)
        if job.private:
            raise BotError("This job is private: private jobs are never showcased.")
        if job.status != "done" or interaction.guild_id is None:
            raise BotError("Only a finished image can be shared.")
        channel_id = await self.jobs.community.showcase_channel(guild_id=interaction.guild_id)
        if channel_id is None:
            raise BotError(
                "This server has no showcase channel yet; an admin can set one with /settings showcase."
            )
        if not await self.jobs.community.claim_showcase(job_id, channel_id=channel_id):
            raise BotError(f"Job #{job_id} is already in the showcase.")
        try:
            message = await self._post_showcase(interaction.client, job, channel_id)
        except BaseException:
            await self.jobs.community.release_showcase(job_id)
            raise
        await self.jobs.community.showcased(job_id, message_id=message.id)
        await interaction.followup.send(f"📌 Shared #{job_id} in <#{channel_id}>.", ephemeral=True)

    async def _post_showcase(
        self, client: discord.Client, job: JobSnapshot, channel_id: int
    ) -> discord.Message:
        channel = client.get_channel(channel_id) or await client.fetch_channel(channel_id)
        file = await self.deliverer.attachment(
            job, max_bytes=render.upload_limit(getattr(channel, "guild", None))
        )
        kwargs: dict[str, object] = {"file": file} if file is not None else {}
        return await channel.send(  # type: ignore[union-attr]
            content=f"📌 {render.headline(job)}\nShared by {job.owner_name} · job #{job.id}",
            embed=render.result_embed(job),
            view=showcase_view(job.id, await self.jobs.community.like_count(job.id)),
            allowed_mentions=discord.AllowedMentions.none(),
            **kwargs,  # type: ignore[arg-type]
        )

    # -- Use this prompt ------------------------------------------------------------------------

    async def open_remix(self, interaction: discord.Interaction, *, job_id: int) -> None:
        job = await visible_job(self.jobs, interaction, job_id)
        await interaction.response.send_modal(RemixModal(self.submitter, job))


class RemixModal(discord.ui.Modal):
    """The prompt of a job and its flags, ready to edit; submitting queues a remix of the job."""

    def __init__(self, submitter: Submitter, job: JobSnapshot) -> None:
        super().__init__(title=f"Remix #{job.id}"[:45], custom_id=REMIX.format(job=job.id), timeout=15 * 60)
        self.submitter = submitter
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
            request, private = self.submitter.prepare(self.prompt.value)
        except PipelineError as error:
            await report_error(interaction, error, job_id=self.job_id)
            return
        await self.submitter.start(
            interaction, request, private=True if private else None, kind="remix", parent_id=self.job_id
        )

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:  # type: ignore[override]
        await report_error(interaction, error, job_id=self.job_id)


# -- the buttons ----------------------------------------------------------------------------------


class LikeButton(JobButton, custom_ids=LIKE):
    """❤: like the job, or take the like back; the label shows the count."""

    def __init__(self, job_id: int, likes: int = 0) -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="❤️",
                label=str(likes) if likes else None,
                style=discord.ButtonStyle.secondary,
                custom_id=LIKE.format(job=job_id),
            ),
        )

    async def run(self, interaction: discord.Interaction) -> None:
        await Community.of(interaction).like(interaction, job_id=self.job_id)


class UseButton(JobButton, custom_ids=USE):
    """ "Use this prompt": a modal pre-filled with the job's prompt and flags queues a remix."""

    def __init__(self, job_id: int, *, label: str = "Use this prompt") -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="✍️", label=label, style=discord.ButtonStyle.secondary, custom_id=USE.format(job=job_id)
            ),
        )

    async def run(self, interaction: discord.Interaction) -> None:
        await Community.of(interaction).open_remix(interaction, job_id=self.job_id)


class ShareButton(JobButton, custom_ids=SHARE):
    """📌: post the job to the guild's showcase channel (once; its owner only, not moderators)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="📌",
                label="Share",
                style=discord.ButtonStyle.secondary,
                custom_id=SHARE.format(job=job_id),
            ),
        )

    async def check(self, interaction: discord.Interaction) -> None:
        job = await visible_job(Community.of(interaction).jobs, interaction, self.job_id)
        if interaction.user.id != job.owner_discord_id:
            raise NotAllowed("Only the person who made this image can share it.")

    async def run(self, interaction: discord.Interaction) -> None:
        await Community.of(interaction).share(interaction, job_id=self.job_id)


BUTTONS: tuple[type[JobButton], ...] = (LikeButton, ShareButton, UseButton)
"""Registered in ``setup_hook`` (by :func:`setup`)."""


def showcase_view(job_id: int, likes: int = 0) -> discord.ui.View:
    """The buttons under a showcase post: ❤ and Use this prompt."""
    view = discord.ui.View(timeout=None)
    view.add_item(LikeButton(job_id, likes))
    view.add_item(UseButton(job_id))
    return view


async def setup(bot: NankeBot) -> None:
    bot.add_dynamic_items(*BUTTONS)
    await bot.add_cog(Community(jobs=bot.jobs, deliverer=bot.deliverer, submitter=bot.submitter))
