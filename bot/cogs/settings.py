"""/settings showcase and /settings moderation … (Manage Server only), /settings private (each
member's default)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.moderation_settings import ModerationSettings
from bot.errors import NotAllowed
from bot.i18n import for_interaction
from pipeline.queue.jobs.asynchronous import AsyncJobs

if TYPE_CHECKING:
    from bot.client import NankeBot

log = logging.getLogger(__name__)

SAID = {
    "private": {True: "settings.private_on", False: "settings.private_off"},
    "previews": {True: "settings.previews_on", False: "settings.previews_off"},
    "remix": {True: "settings.remix_on", False: "settings.remix_off"},
}
"""What a member is told after turning one of their own settings on or off."""


@app_commands.guild_only()  # on the group: discord.py ignores it on subcommands
class GuildSettingsCog(commands.GroupCog, group_name="settings", group_description="nanke's settings"):
    """The /settings group."""

    def __init__(self, *, jobs: AsyncJobs) -> None:
        self.jobs = jobs
        super().__init__()
        self.app_command.add_command(ModerationSettings(jobs=jobs))

    @app_commands.command(name="showcase", description="Set the channel shared images are posted to")
    @app_commands.describe(channel="The showcase channel (leave empty to turn the showcase off)")
    @app_commands.default_permissions(manage_guild=True)
    async def showcase(
        self, interaction: discord.Interaction, channel: discord.TextChannel | None = None
    ) -> None:
        # default_permissions only hides the command; the member's permissions decide.
        if not interaction.permissions.manage_guild:
            raise NotAllowed("settings.showcase_refused")
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.jobs.community.set_showcase(
            guild_id=interaction.guild_id, channel_id=channel and channel.id
        )
        texts = for_interaction(interaction)
        text = (
            texts("settings.showcase_on", channel=channel.mention)
            if channel
            else texts("settings.showcase_off")
        )
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(name="private", description="Make your new images private by default")
    @app_commands.describe(enabled="True: new jobs stay out of listings, search and the showcase")
    async def private(self, interaction: discord.Interaction, enabled: bool) -> None:
        await self._member_setting(interaction, "private", enabled)

    @app_commands.command(name="previews", description="Show a preview image while your jobs run")
    @app_commands.describe(enabled="True (the default): the progress message shows the image as it forms")
    async def previews(self, interaction: discord.Interaction, enabled: bool) -> None:
        await self._member_setting(interaction, "previews", enabled)

    @app_commands.command(name="remix", description="Edit the prompt before a variation or reroll runs")
    @app_commands.describe(enabled="True: V and 🔄 first open a form with the prompt to change")
    async def remix(self, interaction: discord.Interaction, enabled: bool) -> None:
        await self._member_setting(interaction, "remix", enabled)

    async def _member_setting(self, interaction: discord.Interaction, name: str, enabled: bool) -> None:
        """Turn the member's own setting ``name`` (private, previews, remix) on or off, and say so."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.jobs.community.set_member_settings(
            discord_id=interaction.user.id, name=interaction.user.display_name, **{name: enabled}
        )
        text = for_interaction(interaction)(SAID[name][enabled])
        await interaction.followup.send(text, ephemeral=True)


async def setup(bot: NankeBot) -> None:
    await bot.add_cog(GuildSettingsCog(jobs=bot.jobs))
