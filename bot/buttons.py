"""The buttons under nanke's messages, as ``DynamicItem``s that survive restarts.

Every button's ``custom_id`` carries the job id (and the image index), so a click on a message
posted before the last restart still finds its job: the classes are registered in the bot's
``setup_hook`` and discord.py rebuilds them from the id. Nothing is kept in memory per message.

``custom_id`` layout: ``nk:<action>:<job id>[:<image index>[:<variant>]]``; the community
buttons are ``nk:like:<job>``, ``nk:share:<job>``, ``nk:use:<job>`` and the listing pages
``nk:page:<listing>:<page>:<key>`` (the key is the search text, period or member id).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import NotAllowed, report_error

if TYPE_CHECKING:
    from bot.client import NankeBot

log = logging.getLogger(__name__)


class JobButton(discord.ui.DynamicItem[discord.ui.Button], template=r"nk:base:(?P<job>[0-9]+)"):
    """Base of the buttons: parses the job id and routes errors to the central handler."""

    action = "base"

    def __init__(self, job_id: int, button: discord.ui.Button) -> None:
        super().__init__(button)
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> JobButton:
        return cls(**cls.parse(match))

    @classmethod
    def parse(cls, match: re.Match[str]) -> dict[str, Any]:
        return {"job_id": int(match["job"])}

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        try:
            await self.check(interaction)
        except Exception as error:
            await report_error(interaction, error, job_id=self.job_id)
            return False
        return True

    async def check(self, interaction: discord.Interaction) -> None:
        """Raise :class:`NotAllowed` when the clicker may not press this button."""

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        try:
            await self.run(interaction, _bot(interaction))
        except Exception as error:
            await report_error(interaction, error, job_id=self.job_id)

    async def run(self, interaction: discord.Interaction, bot: NankeBot) -> None:
        raise NotImplementedError


class UpscaleButton(JobButton, template=r"nk:up:(?P<job>[0-9]+):(?P<index>[0-3])"):
    """U1…U4: a 2x upscale of image ``index``."""

    def __init__(self, job_id: int, index: int, *, label: str | None = None) -> None:
        self.index = index
        super().__init__(
            job_id,
            discord.ui.Button(
                label=label or f"U{index + 1}",
                style=discord.ButtonStyle.secondary,
                custom_id=f"nk:up:{job_id}:{index}",
            ),
        )

    @classmethod
    def parse(cls, match: re.Match[str]) -> dict[str, Any]:
        return {"job_id": int(match["job"]), "index": int(match["index"])}

    async def run(self, interaction: discord.Interaction, bot: NankeBot) -> None:
        await bot.flow.start_child(interaction, parent_id=self.job_id, action="upscale", index=self.index)


class VariationButton(
    JobButton, template=r"nk:var:(?P<job>[0-9]+):(?P<index>[0-3]):(?P<strength>strong|subtle)"
):
    """V1…V4 (strong variation of image ``index``), and Vary (Strong) / Vary (Subtle) on singles."""

    def __init__(
        self, job_id: int, index: int, strength: str = "strong", *, label: str | None = None
    ) -> None:
        self.index = index
        self.strength = strength
        super().__init__(
            job_id,
            discord.ui.Button(
                label=label or f"V{index + 1}",
                style=discord.ButtonStyle.secondary,
                custom_id=f"nk:var:{job_id}:{index}:{strength}",
            ),
        )

    @classmethod
    def parse(cls, match: re.Match[str]) -> dict[str, Any]:
        return {"job_id": int(match["job"]), "index": int(match["index"]), "strength": match["strength"]}

    async def run(self, interaction: discord.Interaction, bot: NankeBot) -> None:
        await bot.flow.start_child(
            interaction, parent_id=self.job_id, action="variation", index=self.index, strength=self.strength
        )


class RerollButton(JobButton, template=r"nk:reroll:(?P<job>[0-9]+)"):
    """🔄: the same request again with new seeds."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="🔄", style=discord.ButtonStyle.secondary, custom_id=f"nk:reroll:{job_id}"
            ),
        )

    async def run(self, interaction: discord.Interaction, bot: NankeBot) -> None:
        await bot.flow.start_child(interaction, parent_id=self.job_id, action="reroll")


class OwnerOnlyButton(JobButton, template=r"nk:owner:(?P<job>[0-9]+)"):
    """A button only the job's owner or a member with Manage Messages may press."""

    async def check(self, interaction: discord.Interaction) -> None:
        bot = _bot(interaction)
        owner = await bot.flow.owner_discord_id(self.job_id)
        permissions = interaction.permissions
        if interaction.user.id != owner and not permissions.manage_messages:
            raise NotAllowed("Only the person who asked for this job (or a moderator) can do that.")


class CancelButton(OwnerOnlyButton, template=r"nk:cancel:(?P<job>[0-9]+)"):
    """❌: cancel a queued or running job."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="❌", style=discord.ButtonStyle.secondary, custom_id=f"nk:cancel:{job_id}"
            ),
        )

    async def run(self, interaction: discord.Interaction, bot: NankeBot) -> None:
        await bot.flow.cancel(interaction, job_id=self.job_id)


class LikeButton(JobButton, template=r"nk:like:(?P<job>[0-9]+)"):
    """❤: like the job, or take the like back; the label shows the count."""

    def __init__(self, job_id: int, likes: int = 0) -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="❤️",
                label=str(likes) if likes else None,
                style=discord.ButtonStyle.secondary,
                custom_id=f"nk:like:{job_id}",
            ),
        )

    async def run(self, interaction: discord.Interaction, bot: NankeBot) -> None:
        await bot.sharing.like(interaction, job_id=self.job_id)


class UseButton(JobButton, template=r"nk:use:(?P<job>[0-9]+)"):
    """ "Use this prompt": a modal pre-filled with the job's prompt and flags queues a remix."""

    def __init__(self, job_id: int, *, label: str = "Use this prompt") -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="✍️", label=label, style=discord.ButtonStyle.secondary, custom_id=f"nk:use:{job_id}"
            ),
        )

    async def run(self, interaction: discord.Interaction, bot: NankeBot) -> None:
        await bot.sharing.open_remix(interaction, job_id=self.job_id)


class ShareButton(JobButton, template=r"nk:share:(?P<job>[0-9]+)"):
    """📌: post the job to the guild's showcase channel (once; its owner only, not moderators)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="📌", label="Share", style=discord.ButtonStyle.secondary, custom_id=f"nk:share:{job_id}"
            ),
        )

    async def check(self, interaction: discord.Interaction) -> None:
        owner = await _bot(interaction).flow.owner_discord_id(self.job_id)
        if interaction.user.id != owner:
            raise NotAllowed("Only the person who made this image can share it.")

    async def run(self, interaction: discord.Interaction, bot: NankeBot) -> None:
        await bot.sharing.share(interaction, job_id=self.job_id)


class PageButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"nk:page:(?P<listing>[a-z]+):(?P<page>[0-9]+):(?P<key>.*)",
):
    """◀ / ▶ of a listing: the listing, the page and its key (search text, period, member) are
    all in the ``custom_id``, so a page turns after a restart too."""

    def __init__(self, listing: str, page: int, key: str, *, emoji: str, disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=f"nk:page:{listing}:{page}:{key}"[:100],
                disabled=disabled,
            )
        )
        self.listing = listing
        self.page = page
        self.key = key

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> PageButton:
        return cls(match["listing"], int(match["page"]), match["key"], emoji=str(item.emoji or "▶"))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        try:
            await _bot(interaction).listings.turn(interaction, self.listing, self.page, self.key)
        except Exception as error:
            await report_error(interaction, error)


class DeleteButton(OwnerOnlyButton, template=r"nk:delete:(?P<job>[0-9]+)"):
    """🗑: delete a finished job's message and its images."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            job_id,
            discord.ui.Button(
                emoji="🗑️", style=discord.ButtonStyle.secondary, custom_id=f"nk:delete:{job_id}"
            ),
        )

    async def run(self, interaction: discord.Interaction, bot: NankeBot) -> None:
        await bot.flow.delete(interaction, job_id=self.job_id)


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[discord.ui.Button]], ...] = (
    UpscaleButton,
    VariationButton,
    RerollButton,
    CancelButton,
    DeleteButton,
    LikeButton,
    ShareButton,
    UseButton,
    PageButton,
)
"""Registered with ``bot.add_dynamic_items`` in ``setup_hook``."""


def result_view(job_id: int, image_count: int, *, likes: int = 0) -> discord.ui.View:
    """The buttons under a finished job: U/V per image for grids; upscale/vary for singles; then
    a row of ❤ (with the like count), 📌 Share and Use this prompt."""
    view = discord.ui.View(timeout=None)
    if image_count > 1:
        for index in range(image_count):
            view.add_item(UpscaleButton(job_id, index))
        view.add_item(RerollButton(job_id))
        for index in range(image_count):
            view.add_item(VariationButton(job_id, index))
        view.add_item(DeleteButton(job_id))
        _place_rows(view, image_count)
    else:
        view.add_item(UpscaleButton(job_id, 0, label="Upscale (2x)"))
        view.add_item(VariationButton(job_id, 0, "strong", label="Vary (Strong)"))
        view.add_item(VariationButton(job_id, 0, "subtle", label="Vary (Subtle)"))
        view.add_item(RerollButton(job_id))
        view.add_item(DeleteButton(job_id))
    community_row = 2 if image_count > 1 else 1
    for item in (LikeButton(job_id, likes), ShareButton(job_id), UseButton(job_id)):
        item.row = community_row
        view.add_item(item)
    return view


def showcase_view(job_id: int, likes: int = 0) -> discord.ui.View:
    """The buttons under a showcase post: ❤ and Use this prompt."""
    view = discord.ui.View(timeout=None)
    view.add_item(LikeButton(job_id, likes))
    view.add_item(UseButton(job_id))
    return view


def queued_view(job_id: int) -> discord.ui.View:
    """The ❌ button shown while a job waits or runs."""
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


def _place_rows(view: discord.ui.View, image_count: int) -> None:
    """Row 0: U1…Un and 🔄; row 1: V1…Vn and 🗑 (Midjourney's layout)."""
    for position, item in enumerate(view.children):
        item.row = 0 if position <= image_count else 1


def _bot(interaction: discord.Interaction) -> NankeBot:
    return interaction.client  # type: ignore[return-value]
