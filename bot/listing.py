"""Ephemeral, paginated listings of jobs: /prompts search|top|recent|by and /history.

A page shows up to :data:`PAGE_SIZE` entries, each an embed (thumbnail, prompt, author, likes,
remixes) with a row of "Use" and ❤ buttons, and a last row of ◀ ▶ page buttons. Every button is
a ``DynamicItem`` whose ``custom_id`` carries what it needs, so nothing is kept in memory.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot import render
from bot.buttons import LikeButton, PageButton, UseButton
from storage import ListedJob

if TYPE_CHECKING:
    from bot.client import NankeBot

log = logging.getLogger(__name__)

PAGE_SIZE = 4
"""Four entries (a row of buttons each) and the page row: Discord's five rows."""
MAX_KEY = 80
"""The longest search text: it travels in the page buttons' ``custom_id`` (100 characters)."""
TITLES = {
    "search": "🔎 Prompts matching “{key}”",
    "top": "🏆 Top prompts ({key})",
    "recent": "🕒 Recent prompts",
    "by": "🎨 Prompts by {member}",
    "history": "📜 Your jobs",
}


@dataclass(frozen=True)
class Page:
    content: str
    embeds: list[discord.Embed]
    files: list[discord.File]
    view: discord.ui.View


class Listings:
    """Builds listing pages for an interaction's guild and member."""

    def __init__(self, bot: NankeBot) -> None:
        self.bot = bot

    async def send(self, interaction: discord.Interaction, listing: str, key: str = "-") -> None:
        """Answer a slash command with the first page (ephemeral)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        page = await self._page(interaction, listing, 0, key)
        await interaction.edit_original_response(
            content=page.content,
            embeds=page.embeds,
            attachments=page.files,
            view=page.view,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def turn(self, interaction: discord.Interaction, listing: str, number: int, key: str) -> None:
        """A page button: replace the listing message by page ``number``."""
        page = await self._page(interaction, listing, number, key)
        await interaction.response.edit_message(
            content=page.content,
            embeds=page.embeds,
            attachments=page.files,
            view=page.view,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def _page(self, interaction: discord.Interaction, listing: str, number: int, key: str) -> Page:
        options = _options(interaction, listing, key)
        entries = await asyncio.to_thread(
            self.bot.community.listing,
            listing,
            limit=PAGE_SIZE + 1,
            offset=number * PAGE_SIZE,
            **options,
        )
        more = len(entries) > PAGE_SIZE
        entries = entries[:PAGE_SIZE]
        files = await asyncio.to_thread(self._thumbnails, entries)
        title = TITLES[listing].format(key=key, member=f"<@{key}>")
        if not entries:
            content = f"{title}\nNothing here yet." if number == 0 else f"{title}\nNo more results."
        else:
            content = f"{title} · page {number + 1}"
        embeds = [_embed(entry, with_status=listing == "history") for entry in entries]
        return Page(content, embeds, files, _view(entries, listing, number, key, more=more))

    def _thumbnails(self, entries: list[ListedJob]) -> list[discord.File]:
        files = []
        for entry in entries:
            if entry.image_path is None:
                continue
            try:
                data = self.bot.services.jobs.store.read(entry.image_path)
            except OSError:
                log.warning("job %d: image %s is missing from the store", entry.job_id, entry.image_path)
                continue
            files.append(render.thumbnail_file(data, _thumbnail_name(entry)))
        return files


def _options(interaction: discord.Interaction, listing: str, key: str) -> dict[str, Any]:
    guild: dict[str, Any] = {"guild_id": interaction.guild_id}
    if listing == "search":
        return {**guild, "text": key}
    if listing == "top":
        return {**guild, "period": key}
    if listing == "by":
        return {**guild, "discord_id": int(key)}
    if listing == "history":
        return {**guild, "discord_id": interaction.user.id}
    return guild


def _embed(entry: ListedJob, *, with_status: bool) -> discord.Embed:
    embed = discord.Embed(
        title=f"#{entry.job_id}",
        description=render.shorten(entry.prompt, 300),
        colour=render.EMBED_COLOUR,
        timestamp=entry.created_at,
    )
    footer = f"by {entry.owner_name} · ❤ {entry.likes} · 🔁 {entry.remixes}"
    if with_status:
        footer += f" · {entry.status}" + (" · 🔒 private" if entry.private else "")
    embed.set_footer(text=footer)
    if entry.image_path is not None:
        embed.set_thumbnail(url=f"attachment://{_thumbnail_name(entry)}")
    return embed


def _view(entries: list[ListedJob], listing: str, number: int, key: str, *, more: bool) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for row, entry in enumerate(entries):
        for item in (
            UseButton(entry.job_id, label=f"Use #{entry.job_id}"),
            LikeButton(entry.job_id, entry.likes),
        ):
            item.row = row
            view.add_item(item)
    previous = PageButton(listing, max(number - 1, 0), key, emoji="◀️", disabled=number == 0)
    following = PageButton(listing, number + 1, key, emoji="▶️", disabled=not more)
    for item in (previous, following):
        item.row = PAGE_SIZE
        view.add_item(item)
    return view


def _thumbnail_name(entry: ListedJob) -> str:
    return f"thumb-{entry.job_id}.png"
