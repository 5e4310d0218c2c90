"""The buttons under nanke's messages, as ``DynamicItem``s that survive restarts.

Every button's ``custom_id`` carries the job id (and the image index), so a click on a message
posted before the last restart still finds its job: the classes are registered in the bot's
``setup_hook`` and discord.py rebuilds them from the id. Nothing is kept in memory per message.

``custom_id`` layout: ``nk:<action>:<job id>[:<image index>[:<variant>]]``.
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


DYNAMIC_ITEMS: tuple[type[JobButton], ...] = (
    UpscaleButton,
    VariationButton,
    RerollButton,
    CancelButton,
    DeleteButton,
)
"""Registered with ``bot.add_dynamic_items`` in ``setup_hook``."""


def result_view(job_id: int, image_count: int) -> discord.ui.View:
    """The buttons under a finished job: U/V per image for grids; upscale/vary for singles."""
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
