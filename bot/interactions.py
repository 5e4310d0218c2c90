"""What an interaction tells about who asked and where the answer goes, as the job interface takes it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

import discord

from bot.errors import CheckRefused
from pipeline.queue.jobs import Destination, Requester, Viewer

TOKEN_LIFETIME = timedelta(minutes=15)
"""How long an interaction's token lets the bot answer through its webhook."""
ANSWER_WITHIN_S = 1.0
"""How long slow work (a download, hashing) may run before the interaction is deferred: Discord
waits 3 s for the first answer, and the handler needs time after the work too."""
T = TypeVar("T")


async def in_time(interaction: discord.Interaction, work: Awaitable[T]) -> T:
    """The result of ``work``; when it takes longer than :data:`ANSWER_WITHIN_S`, the interaction
    is deferred first (thinking), so Discord's deadline holds."""
    task = asyncio.ensure_future(work)
    if interaction.response.is_done():
        return await task
    try:
        return await asyncio.wait_for(asyncio.shield(task), ANSWER_WITHIN_S)
    except asyncio.TimeoutError:
        await interaction.response.defer(thinking=True)
        return await task


def requester_of(interaction: discord.Interaction) -> Requester:
    return Requester(name=interaction.user.display_name, discord_id=interaction.user.id)


def age_restricted(interaction: discord.Interaction) -> bool:
    """Whether Discord marks the channel of ``interaction`` age-restricted (a thread: its parent).
    A channel the bot cannot tell about counts as not age-restricted."""
    is_nsfw = getattr(interaction.channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


def destination_of(interaction: discord.Interaction) -> Destination:
    return Destination(
        channel_id=interaction.channel_id or 0,
        guild_id=interaction.guild_id,
        application_id=interaction.application_id,
        interaction_token=interaction.token,
        token_expires_at=interaction.created_at + TOKEN_LIFETIME,
        upload_limit=interaction.filesize_limit,
        age_restricted=age_restricted(interaction),
    )


def require_manage_server(interaction: discord.Interaction) -> None:
    """Raise :class:`~bot.errors.CheckRefused` unless the member has Manage Server where they are
    (a command's default permissions only hide it; the member's own decide)."""
    if interaction.guild_id is None or not interaction.permissions.manage_guild:
        raise CheckRefused("admin.refused")


def viewer_of(interaction: discord.Interaction) -> Viewer:
    """The member who clicked or typed, where they are, and whether they moderate there."""
    in_guild = interaction.guild_id is not None
    return Viewer(
        discord_id=interaction.user.id,
        guild_id=interaction.guild_id,
        moderator=in_guild and interaction.permissions.manage_messages,
    )
