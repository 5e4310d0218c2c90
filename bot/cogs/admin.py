"""/admin pause|resume|ban|unban|limit|log: a server's admins (Manage Server) control the bot there.

Pausing holds the server's queued jobs (running ones finish) until resumed; other servers are
not affected. A banned member cannot use the bot in the server (no command, no button, no
remix) until unbanned; the reason is shown to them. ``/admin limit`` gives one member their own
daily image limit in place of the server's (``/settings moderation daily-limit``). ``/admin log``
lists the audit log: every moderation decision and admin action, newest first.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.audit import audit_embed, limit_text
from bot.i18n import for_interaction
from bot.interactions import require_manage_server
from pipeline.queue.jobs import MAX_DAILY_LIMIT
from pipeline.queue.jobs.asynchronous import AsyncJobs

if TYPE_CHECKING:
    from bot.client import NankeBot

log = logging.getLogger(__name__)

REASON_MAX = 300
LOG_PAGE = 10
"""Audit log entries per page (each is at most a few hundred characters: an embed holds 4096)."""


@app_commands.guild_only()  # on the group: discord.py ignores it on subcommands
@app_commands.default_permissions(manage_guild=True)
class Admin(commands.GroupCog, group_name="admin", group_description="Control nanke in this server"):
    """The /admin group; every command needs Manage Server."""

    def __init__(self, *, jobs: AsyncJobs) -> None:
        self.jobs = jobs
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        # default_permissions only hides the commands; the member's permissions decide.
        require_manage_server(interaction)
        return True

    @app_commands.command(name="pause", description="Hold this server's queued jobs until /admin resume")
    async def pause(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        await self.jobs.moderation.pause(guild_id=interaction.guild_id, actor_discord_id=interaction.user.id)
        await interaction.response.send_message(for_interaction(interaction)("admin.paused"), ephemeral=True)

    @app_commands.command(name="resume", description="Run this server's queued jobs again")
    async def resume(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        await self.jobs.moderation.resume(guild_id=interaction.guild_id, actor_discord_id=interaction.user.id)
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
        lifted = await self.jobs.moderation.unban(
            guild_id=interaction.guild_id, discord_id=member.id, actor_discord_id=interaction.user.id
        )
        text = for_interaction(interaction)(
            "admin.unbanned" if lifted else "admin.not_banned", member=member.mention
        )
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @app_commands.command(name="limit", description="Give a member their own daily image limit")
    @app_commands.describe(
        member="Who", images="Images a day (0: no limit); leave empty for the server's limit again"
    )
    async def limit(
        self,
        interaction: discord.Interaction,
        member: discord.User,
        images: app_commands.Range[int, 0, MAX_DAILY_LIMIT] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        await self.jobs.moderation.set_daily_limit(
            guild_id=interaction.guild_id,
            discord_id=member.id,
            images=images,
            actor_discord_id=interaction.user.id,
        )
        texts = for_interaction(interaction)
        if images is None:
            server = (await self.jobs.moderation.policy(guild_id=interaction.guild_id)).daily_limit
            text = texts("admin.limit_server", member=member.mention, limit=limit_text(server, texts))
        else:
            text = texts("admin.limit_own", member=member.mention, limit=limit_text(images, texts))
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @app_commands.command(name="log", description="The audit log: moderation decisions and admin actions")
    @app_commands.describe(member="Only the entries by or about this member", page="Page (1: the newest)")
    async def log(
        self,
        interaction: discord.Interaction,
        member: discord.User | None = None,
        page: app_commands.Range[int, 1, 1000] = 1,
    ) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        entries = await self.jobs.moderation.log(
            guild_id=interaction.guild_id,
            discord_id=member.id if member else None,
            limit=LOG_PAGE + 1,  # one more tells whether there is an older page
            offset=(page - 1) * LOG_PAGE,
        )
        texts = for_interaction(interaction)
        await interaction.followup.send(
            embed=audit_embed(
                entries[:LOG_PAGE], page=page, more=len(entries) > LOG_PAGE, member=member, texts=texts
            ),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )


async def setup(bot: NankeBot) -> None:
    await bot.add_cog(Admin(jobs=bot.jobs))
