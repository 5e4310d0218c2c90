"""/prompts search|top|recent|by: find the guild's public prompts (ephemeral, paginated lists)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.listing import MAX_KEY

if TYPE_CHECKING:
    from bot.client import NankeBot

log = logging.getLogger(__name__)


@app_commands.guild_only()  # on the group: discord.py ignores it on subcommands
class Prompts(
    commands.GroupCog, group_name="prompts", group_description="Find prompts shared in this server"
):
    """The /prompts group; private jobs and other servers' jobs never show up."""

    def __init__(self, bot: NankeBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="search", description="Search the prompts of this server")
    @app_commands.describe(text="Words to find in the prompts")
    async def search(
        self, interaction: discord.Interaction, text: app_commands.Range[str, 1, MAX_KEY]
    ) -> None:
        await self.bot.listings.send(interaction, "search", " ".join(text.split()))

    @app_commands.command(name="top", description="The most liked and remixed prompts")
    @app_commands.describe(period="Made within the last day, week, month, or ever")
    @app_commands.choices(
        period=[app_commands.Choice(name=name, value=name) for name in ("day", "week", "month", "all")]
    )
    async def top(self, interaction: discord.Interaction, period: str = "week") -> None:
        await self.bot.listings.send(interaction, "top", period)

    @app_commands.command(name="recent", description="The newest prompts")
    async def recent(self, interaction: discord.Interaction) -> None:
        await self.bot.listings.send(interaction, "recent")

    @app_commands.command(name="by", description="The prompts of one member")
    @app_commands.describe(member="Whose prompts")
    async def by(self, interaction: discord.Interaction, member: discord.User) -> None:
        await self.bot.listings.send(interaction, "by", str(member.id))


async def setup(bot: NankeBot) -> None:
    await bot.add_cog(Prompts(bot))
