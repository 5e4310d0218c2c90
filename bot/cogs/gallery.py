"""/show, /history and /info: one job again, your own jobs, and everything about a job."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import render

if TYPE_CHECKING:
    from bot.client import NankeBot
    from pipeline.jobs import JobSnapshot

log = logging.getLogger(__name__)

CODE_LIMIT = 1000
"""An embed field holds 1024 characters, the code fence included."""


class Gallery(commands.Cog):
    """/show, /history and /info."""

    def __init__(self, bot: NankeBot) -> None:
        self.bot = bot

    @app_commands.command(name="show", description="Post a job's images again, with working buttons")
    @app_commands.describe(job="The job number (#123)")
    @app_commands.guild_only()
    async def show(self, interaction: discord.Interaction, job: app_commands.Range[int, 1]) -> None:
        await self.bot.sharing.show(interaction, job_id=job)

    @app_commands.command(name="history", description="Your own jobs in this server (only you see it)")
    @app_commands.guild_only()
    async def history(self, interaction: discord.Interaction) -> None:
        await self.bot.listings.send(interaction, "history")

    @app_commands.command(name="info", description="A job's parameters (ready for the WebUI) and lineage")
    @app_commands.describe(job="The job number (#123)")
    @app_commands.guild_only()
    async def info(self, interaction: discord.Interaction, job: app_commands.Range[int, 1]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        snapshot = await self.bot.sharing.visible(interaction, job)
        children = await asyncio.to_thread(
            self.bot.community.children, job, guild_id=interaction.guild_id, viewer_id=interaction.user.id
        )
        embed = info_embed(snapshot, children)
        await interaction.followup.send(
            embed=embed, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )


def info_embed(job: JobSnapshot, children: list[int]) -> discord.Embed:
    """The result embed, plus A1111's ``parameters`` text and the job's parent and children."""
    embed = render.result_embed(job)
    embed.title = f"Job #{job.id} · {job.kind} · {job.status}" + (" · 🔒 private" if job.private else "")
    parameters = render.shorten(render.parameters_text(job), CODE_LIMIT - 8).replace("```", "'''")
    embed.add_field(name="Parameters (paste into the WebUI)", value=f"```\n{parameters}\n```", inline=False)
    if job.parent_id is not None:
        by = f" by {job.parent_owner_name}" if job.parent_owner_name else ""
        embed.add_field(name="Parent", value=f"#{job.parent_id}{by}")
    if children:
        embed.add_field(name="Children", value=render.shorten(", ".join(f"#{c}" for c in children), 1000))
    return embed


async def setup(bot: NankeBot) -> None:
    await bot.add_cog(Gallery(bot))
