"""/show and /info: one job again with working buttons, and everything about a job.

An adult job (see :mod:`pipeline.domain.moderation`) is shown again only in an age-restricted
channel; /info is private to whoever asks, so it works anywhere.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot import render
from bot.buttons import Feature, visible_job
from bot.cogs.actions import result_view
from bot.cogs.canvas import single_size
from bot.errors import BotError
from bot.i18n import ENGLISH, Texts, for_interaction
from bot.interactions import age_restricted
from pipeline.queue.jobs.asynchronous import AsyncJobs

if TYPE_CHECKING:
    from bot.client import NankeBot
    from bot.delivery import Deliverer
    from pipeline.queue.jobs import JobSnapshot

log = logging.getLogger(__name__)

CODE_LIMIT = 1000
"""An embed field holds 1024 characters, the code fence included."""


class Gallery(Feature):
    """/show and /info."""

    def __init__(self, *, jobs: AsyncJobs, deliverer: Deliverer) -> None:
        self.jobs = jobs
        self.deliverer = deliverer

    @app_commands.command(name="show", description="Post a job's images again, with working buttons")
    @app_commands.describe(job="The job number (#123)")
    @app_commands.guild_only()
    async def show(self, interaction: discord.Interaction, job: app_commands.Range[int, 1]) -> None:
        # One quick read before deferring, so "not found" is a private answer, not a public one.
        snapshot = await visible_job(self.jobs, interaction, job)
        texts = for_interaction(interaction)
        if snapshot.status != "done":
            raise BotError("show.no_images", job_id=job, status=texts(f"status.{snapshot.status}"))
        if snapshot.flagged and not age_restricted(interaction):
            raise BotError("show.adult", job_id=job)
        await interaction.response.defer(thinking=True)
        likes = await self.jobs.community.like_count(job)
        file = await self.deliverer.attachment(snapshot, max_bytes=interaction.filesize_limit)
        kwargs: dict[str, object] = {"file": file} if file is not None else {}
        await interaction.followup.send(
            content=render.finished_text(snapshot, texts=texts),
            embed=render.result_embed(snapshot, texts),
            view=result_view(
                snapshot.id, len(snapshot.images), likes=likes, texts=texts, size=single_size(snapshot)
            ),
            allowed_mentions=discord.AllowedMentions.none(),
            **kwargs,  # type: ignore[arg-type]
        )

    @app_commands.command(name="info", description="A job's parameters (ready for the WebUI) and lineage")
    @app_commands.describe(job="The job number (#123)")
    @app_commands.guild_only()
    async def info(self, interaction: discord.Interaction, job: app_commands.Range[int, 1]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        snapshot = await visible_job(self.jobs, interaction, job)
        children = await self.jobs.community.children(
            job, guild_id=interaction.guild_id, viewer_id=interaction.user.id
        )
        await interaction.followup.send(
            embed=info_embed(snapshot, children, for_interaction(interaction)),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )


def info_embed(job: JobSnapshot, children: list[int], texts: Texts = ENGLISH) -> discord.Embed:
    """The result embed, plus A1111's ``parameters`` text and the job's parent and children."""
    embed = render.result_embed(job, texts)
    embed.title = texts(
        "info.title", job_id=job.id, kind=texts(f"info.kind.{job.kind}"), status=texts(f"status.{job.status}")
    ) + (texts("listing.private") if job.private else "")
    parameters = render.shorten(job.parameters_text(), CODE_LIMIT - 8).replace("```", "'''")
    embed.add_field(name=texts("info.parameters"), value=f"```\n{parameters}\n```", inline=False)
    if job.parent_id is not None:
        by = texts("info.parent_by", name=job.parent_owner_name) if job.parent_owner_name else ""
        embed.add_field(name=texts("info.parent"), value=f"#{job.parent_id}{by}")
    if children:
        embed.add_field(
            name=texts("info.children"), value=render.shorten(", ".join(f"#{c}" for c in children), 1000)
        )
    if job.worker:
        embed.add_field(name=texts("info.worker"), value=render.shorten(job.worker, 64))
    return embed


async def setup(bot: NankeBot) -> None:
    await bot.add_cog(Gallery(jobs=bot.jobs, deliverer=bot.deliverer))
