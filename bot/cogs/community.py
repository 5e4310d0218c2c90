"""Sharing jobs: ❤ likes, 📌 the showcase post and "Use this prompt" (a remix), with their buttons.

Every step first checks that the member may see the job (:func:`visible_job`): another guild's
job, or someone else's private job, is "not found". ``custom_id``: ``nk:like:<job>``,
``nk:share:<job>``, ``nk:use:<job>``; the remix modal is ``nk:remix:<job>``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord

from bot import render
from bot.buttons import JOB_ID, CustomId, Feature, JobButton, visible_job
from bot.errors import BotError, NotAllowed, report_error
from bot.i18n import ENGLISH, Texts, for_interaction
from pipeline.domain.prompt.flags import format_prompt
from pipeline.errors import PipelineError
from pipeline.queue.jobs import JobSnapshot
from pipeline.queue.jobs.asynchronous import AsyncJobs

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
MODAL_TITLE_LIMIT = 45
INPUT_LABEL_LIMIT = 45
"""Discord's longest modal title and text input label."""


def prompt_input(
    label: str, text: str, *, custom_id: str = "prompt", required: bool = True
) -> discord.ui.TextInput[Any]:
    """A paragraph field for a prompt, labelled ``label`` and filled with ``text``, within
    Discord's limits."""
    return discord.ui.TextInput(
        label=label[:INPUT_LABEL_LIMIT],
        style=discord.TextStyle.paragraph,
        default=text[:PROMPT_INPUT_MAX] or None,
        max_length=PROMPT_INPUT_MAX,
        required=required,
        custom_id=custom_id,
    )


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
        text = for_interaction(interaction)(
            "like.liked" if liked else "like.unliked", job_id=job_id, count=count
        )
        await interaction.followup.send(text, ephemeral=True)

    # -- 📌 ---------------------------------------------------------------------------------------

    async def share(self, interaction: discord.Interaction, *, job_id: int) -> None:
        """Post the job once to the guild's showcase channel, crediting its author."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await visible_job(self.jobs, interaction, job_id)
        if job.private:
            raise BotError("share.private")
        if job.status != "done" or interaction.guild_id is None:
            raise BotError("share.unfinished")
        channel_id = await self.jobs.community.showcase_channel(guild_id=interaction.guild_id)
        if channel_id is None:
            raise BotError("share.no_channel")
        if not await self.jobs.community.claim_showcase(job_id, channel_id=channel_id):
            raise BotError("share.already", job_id=job_id)
        texts = for_interaction(interaction)
        try:
            message = await self._post_showcase(interaction.client, job, channel_id, texts)
        except BaseException:
            await self.jobs.community.release_showcase(job_id)
            raise
        await self.jobs.community.showcased(job_id, message_id=message.id)
        await interaction.followup.send(
            texts("share.done", job_id=job_id, channel_id=channel_id), ephemeral=True
        )

    async def _post_showcase(
        self, client: discord.Client, job: JobSnapshot, channel_id: int, texts: Texts
    ) -> discord.Message:
        """The showcase post, in the language of the member who shared it."""
        channel = client.get_channel(channel_id) or await client.fetch_channel(channel_id)
        file = await self.deliverer.attachment(
            job, max_bytes=render.upload_limit(getattr(channel, "guild", None))
        )
        kwargs: dict[str, object] = {"file": file} if file is not None else {}
        return await channel.send(  # type: ignore[union-attr]
            content=texts(
                "share.post", headline=render.headline(job, texts), owner=job.owner_name, job_id=job.id
            ),
            embed=render.result_embed(job, texts),
            view=showcase_view(job.id, await self.jobs.community.like_count(job.id), texts=texts),
            allowed_mentions=discord.AllowedMentions.none(),
            **kwargs,  # type: ignore[arg-type]
        )

    # -- Use this prompt ------------------------------------------------------------------------

    async def open_remix(self, interaction: discord.Interaction, *, job_id: int) -> None:
        job = await visible_job(self.jobs, interaction, job_id)
        await interaction.response.send_modal(RemixModal(self.submitter, job, for_interaction(interaction)))


class RemixModal(discord.ui.Modal):
    """The prompt of a job and its flags, ready to edit; submitting queues a remix of the job."""

    def __init__(self, submitter: Submitter, job: JobSnapshot, texts: Texts = ENGLISH) -> None:
        super().__init__(
            title=texts("remix.title", job_id=job.id)[:MODAL_TITLE_LIMIT],
            custom_id=REMIX.format(job=job.id),
            timeout=15 * 60,
        )
        self.submitter = submitter
        self.job_id = job.id
        self.prompt = prompt_input(texts("remix.prompt"), format_prompt(job.request))
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

    def __init__(self, job_id: int, *, label: str | None = None) -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="✍️",
                label=label or ENGLISH("button.use"),
                style=discord.ButtonStyle.secondary,
                custom_id=USE.format(job=job_id),
            ),
        )

    async def run(self, interaction: discord.Interaction) -> None:
        await Community.of(interaction).open_remix(interaction, job_id=self.job_id)


class ShareButton(JobButton, custom_ids=SHARE):
    """📌: post the job to the guild's showcase channel (once; its owner only, not moderators)."""

    def __init__(self, job_id: int, *, label: str | None = None) -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="📌",
                label=label or ENGLISH("button.share"),
                style=discord.ButtonStyle.secondary,
                custom_id=SHARE.format(job=job_id),
            ),
        )

    async def check(self, interaction: discord.Interaction) -> None:
        job = await visible_job(Community.of(interaction).jobs, interaction, self.job_id)
        if interaction.user.id != job.owner_discord_id:
            raise NotAllowed("share.owner_only")

    async def run(self, interaction: discord.Interaction) -> None:
        await Community.of(interaction).share(interaction, job_id=self.job_id)


BUTTONS: tuple[type[JobButton], ...] = (LikeButton, ShareButton, UseButton)
"""Registered in ``setup_hook`` (by :func:`setup`)."""


def showcase_view(job_id: int, likes: int = 0, *, texts: Texts = ENGLISH) -> discord.ui.View:
    """The buttons under a showcase post: ❤ and Use this prompt."""
    view = discord.ui.View(timeout=None)
    view.add_item(LikeButton(job_id, likes))
    view.add_item(UseButton(job_id, label=texts("button.use")))
    return view


async def setup(bot: NankeBot) -> None:
    bot.add_dynamic_items(*BUTTONS)
    await bot.add_cog(Community(jobs=bot.jobs, deliverer=bot.deliverer, submitter=bot.submitter))
