"""Listings: /prompts search|top|recent|by and /history, ephemeral and paginated, with ◀ ▶.

A page shows up to :data:`PAGE_SIZE` entries, each an embed (thumbnail, prompt, author, likes,
remixes) with a row of "Use" and ❤ buttons, and a last row of ◀ ▶ page buttons. Every listing is
of the guild the interaction came from; private jobs and other servers' jobs never show up
(a member's own /history includes their private jobs). Every button is a ``DynamicItem`` whose
``custom_id`` carries what it needs: ``nk:page:<listing>:<page>:<key>`` (the key is the search
text, period or member id), so a page turns after a restart too.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot import render
from bot.buttons import CustomId, Feature, RefusedButton, admitted
from bot.cogs.community import LikeButton, UseButton
from bot.errors import report_error
from bot.i18n import Texts, for_interaction
from pipeline.queue.jobs import ListedJob
from pipeline.queue.jobs.asynchronous import AsyncJobs

if TYPE_CHECKING:
    from bot.client import NankeBot

log = logging.getLogger(__name__)

PAGE = CustomId("nk:page:{listing}:{page}:{key}", listing=r"[a-z]+", page=r"[0-9]{1,4}", key=r".*")
PAGE_SIZE = 4
THUMBNAIL_SIDE = 160
"""Four entries (a row of buttons each) and the page row: Discord's five rows."""
MAX_KEY = 80
"""The longest search text: it travels in the page buttons' ``custom_id`` (100 characters)."""
LISTINGS = ("search", "top", "recent", "by", "history")
"""Every listing; its title is the text ``listing.<name>``."""
PERIODS = ("day", "week", "month", "all")


@dataclass(frozen=True)
class Page:
    content: str
    embeds: list[discord.Embed]
    files: list[discord.File]
    view: discord.ui.View

    def message(self) -> dict[str, Any]:
        """The page as the keyword arguments of a message edit."""
        return {
            "content": self.content,
            "embeds": self.embeds,
            "attachments": self.files,
            "view": self.view,
            "allowed_mentions": discord.AllowedMentions.none(),
        }


class Listings(Feature):
    """/prompts and /history, and the page buttons."""

    # discord.py ignores guild_only on subcommands: it is set on the group.
    prompts = app_commands.Group(
        name="prompts", description="Find prompts shared in this server", guild_only=True
    )

    def __init__(self, *, jobs: AsyncJobs) -> None:
        self.jobs = jobs

    # -- the commands ---------------------------------------------------------------------------

    @prompts.command(name="search", description="Search the prompts of this server")
    @app_commands.describe(text="Words to find in the prompts")
    async def search(
        self, interaction: discord.Interaction, text: app_commands.Range[str, 1, MAX_KEY]
    ) -> None:
        await self.send(interaction, "search", " ".join(text.split()))

    @prompts.command(name="top", description="The most liked and remixed prompts")
    @app_commands.describe(period="Made within the last day, week, month, or ever")
    @app_commands.choices(period=[app_commands.Choice(name=name, value=name) for name in PERIODS])
    async def top(self, interaction: discord.Interaction, period: str = "week") -> None:
        await self.send(interaction, "top", period)

    @prompts.command(name="recent", description="The newest prompts")
    async def recent(self, interaction: discord.Interaction) -> None:
        await self.send(interaction, "recent")

    @prompts.command(name="by", description="The prompts of one member")
    @app_commands.describe(member="Whose prompts")
    async def by(self, interaction: discord.Interaction, member: discord.User) -> None:
        await self.send(interaction, "by", str(member.id))

    @app_commands.command(name="history", description="Your own jobs in this server (only you see it)")
    @app_commands.guild_only()
    async def history(self, interaction: discord.Interaction) -> None:
        await self.send(interaction, "history")

    # -- pages ----------------------------------------------------------------------------------

    async def send(self, interaction: discord.Interaction, listing: str, key: str = "-") -> None:
        """Answer a slash command with the first page (ephemeral)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        page = await self._page(interaction, listing, 0, key)
        await interaction.edit_original_response(**page.message())

    async def turn(self, interaction: discord.Interaction, listing: str, number: int, key: str) -> None:
        """A page button: replace the listing message by page ``number``."""
        page = await self._page(interaction, listing, number, key)
        await interaction.response.edit_message(**page.message())

    async def _page(self, interaction: discord.Interaction, listing: str, number: int, key: str) -> Page:
        entries = await self.jobs.community.listing(
            listing,
            limit=PAGE_SIZE + 1,
            offset=number * PAGE_SIZE,
            **_options(interaction, listing, key),
        )
        more = len(entries) > PAGE_SIZE
        entries = entries[:PAGE_SIZE]
        thumbnails = await self.jobs.images.thumbnails(entries, side=THUMBNAIL_SIDE)
        files = [
            discord.File(io.BytesIO(thumbnails[entry.job_id]), filename=_thumbnail_name(entry))
            for entry in entries
            if entry.job_id in thumbnails
        ]
        texts = for_interaction(interaction)
        title = _title(texts, listing, key)
        if not entries:
            content = texts("listing.empty" if number == 0 else "listing.end", title=title)
        else:
            content = texts("listing.page", title=title, number=number + 1)
        embeds = [_embed(entry, texts, with_status=listing == "history") for entry in entries]
        return Page(content, embeds, files, _view(entries, listing, number, key, texts, more=more))


class PageButton(discord.ui.DynamicItem[discord.ui.Button], template=PAGE.template):
    """◀ / ▶ of a listing: the listing, the page and its key are all in the ``custom_id``."""

    def __init__(self, listing: str, page: int, key: str, *, emoji: str, disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=PAGE.format(listing=listing, page=page, key=key),
                disabled=disabled,
            )
        )
        self.listing = listing
        self.page = page
        self.key = key

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> discord.ui.DynamicItem[discord.ui.Button]:
        fields = PAGE.parse(item.custom_id or "")
        if fields is None or not _valid_key(fields["listing"], fields["key"]):
            return RefusedButton(item)
        return cls(fields["listing"], int(fields["page"]), fields["key"], emoji=str(item.emoji or "▶"))

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        return await admitted(interaction)

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        try:
            await Listings.of(interaction).turn(interaction, self.listing, self.page, self.key)
        except Exception as error:
            await report_error(interaction, error)


BUTTONS = (PageButton,)
"""Registered in ``setup_hook`` (by :func:`setup`)."""


def _valid_key(listing: str, key: str) -> bool:
    """Whether a page button's listing and key are ones nanke makes (a forged one is refused)."""
    if listing == "by":
        return key.isdigit() and len(key) <= 20
    if listing == "top":
        return key in PERIODS
    return listing in LISTINGS and len(key) <= MAX_KEY


def _title(texts: Texts, listing: str, key: str) -> str:
    """A listing's title: the search text, the period or the member it is of."""
    if listing == "search":
        return texts("listing.search", text=key)
    if listing == "top":
        return texts("listing.top", period=texts(f"listing.period.{key}"))
    if listing == "by":
        return texts("listing.by", member=f"<@{key}>")
    return texts(f"listing.{listing}")


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


def _embed(entry: ListedJob, texts: Texts, *, with_status: bool) -> discord.Embed:
    embed = discord.Embed(
        title=f"#{entry.job_id}",
        description=render.shorten(entry.prompt, 300),
        colour=render.EMBED_COLOUR,
        timestamp=entry.created_at,
    )
    footer = texts("listing.footer", owner=entry.owner_name, likes=entry.likes, remixes=entry.remixes)
    if with_status:
        status = texts(f"status.{entry.status}")
        footer += f" · {status}" + (texts("listing.private") if entry.private else "")
    embed.set_footer(text=footer)
    if entry.image_path is not None:
        embed.set_thumbnail(url=f"attachment://{_thumbnail_name(entry)}")
    return embed


def _view(
    entries: list[ListedJob], listing: str, number: int, key: str, texts: Texts, *, more: bool
) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for row, entry in enumerate(entries):
        for item in (
            UseButton(entry.job_id, label=texts("button.use_job", job_id=entry.job_id)),
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


async def setup(bot: NankeBot) -> None:
    bot.add_dynamic_items(*BUTTONS)
    await bot.add_cog(Listings(jobs=bot.jobs))
