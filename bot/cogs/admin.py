"""/admin pause|resume|ban|unban: a server's admins (Manage Server) control the bot in their server.

Pausing holds the server's queued jobs (running ones finish) until resumed; other servers are
not affected. A banned member cannot ask for images in the server (/imagine, buttons, remixes,
/reproduce) until unbanned; the reason is shown to them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.async_jobs import AsyncJobs
from bot.errors import CheckRefused
from bot.i18n import for_interaction

if TYPE_CHECKING:
    from bot.client import NankeBot

log = logging.getLogger(__name__)

REASON_MAX = 300


@app_commands.guild_only()  # on the group: discord.py ignores it on subcommands
@app_commands.default_permissions(manage_guild=True)
class Admin(commands.GroupCog, group_name="admin", group_description="Control nanke in this server"):
    """The /admin group; every command needs Manage Server."""

    def __init__(self, *, jobs: AsyncJobs) -> None:
        self.jobs = jobs
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        # default_permissions only hides the commands; the member's permissions decide.
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            raise CheckRefused("admin.refused")
        return True

    @app_commands.command(name="pause", description="Hold this server's queued jobs until /admin resume")
    async def pause(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        await self.jobs.moderation.pause(guild_id=interaction.guild_id)
        await interaction.response.send_message(for_interaction(interaction)("admin.paused"), ephemeral=True)

    @app_commands.command(name="resume", description="Run this server's queued jobs again")
    async def resume(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        await self.jobs.moderation.resume(guild_id=interaction.guild_id)
        await interaction.response.send_message(for_interaction(interaction)("admin.resumed"), ephemeral=True)

    @app_commands.command(name="ban", description="Stop a member from asking nanke for images here")
    @app_commands.describe(member="Who", reason="Why (the member is told)")
    async def ban(
        self,
        interaction: discord.Interaction,
        member: discord.User,
        reason: app_commands.Range[str, 1, REASON_MAX],
    ) -> None:
        assert interaction.guild_id is not None
        banned = await self.jobs.moderation.ban(
            guild_id=interaction.guild_id, discord_id=member.id, reason=reason, banned_by=interaction.user.id
        )
        text = for_interaction(interaction)(
            "admin.banned" if banned else "admin.already_banned", member=member.mention
        )
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @app_commands.command(name="unban", description="Let a banned member ask nanke for images again")
    @app_commands.describe(member="Who")
    async def unban(self, interaction: discord.Interaction, member: discord.User) -> None:
        assert interaction.guild_id is not None
        lifted = await self.jobs.moderation.unban(guild_id=interaction.guild_id, discord_id=member.id)
        text = for_interaction(interaction)(
            "admin.unbanned" if lifted else "admin.not_banned", member=member.mention
        )
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )


async def setup(bot: NankeBot) -> None:
    await bot.add_cog(Admin(jobs=bot.jobs))
