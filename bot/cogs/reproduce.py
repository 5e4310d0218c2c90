"""/reproduce: regenerate an AUTOMATIC1111 / civitai / nanke image from its embedded parameters."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.buttons import Feature
from bot.errors import BotError, retract
from pipeline.domain.metadata import read_parameters
from pipeline.domain.metadata.imported import import_request
from pipeline.domain.models import ModelCatalog

if TYPE_CHECKING:
    from bot.client import NankeBot
    from bot.submitting import Submitter

log = logging.getLogger(__name__)

MAX_ATTACHMENT = 50 * 1024 * 1024
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


class NoParameters(BotError):
    """The attachment carries no generation parameters."""


class Reproduce(Feature):
    """The /reproduce command."""

    def __init__(self, *, submitter: Submitter, catalog: ModelCatalog) -> None:
        self.submitter = submitter
        self.catalog = catalog

    @app_commands.command(
        name="reproduce",
        description="Generate an image again from the settings saved inside it (A1111, civitai)",
    )
    @app_commands.describe(image="A PNG, JPEG or WebP with AUTOMATIC1111 'parameters' (PNG Info)")
    async def reproduce(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        # 1. Acknowledge at once: the download is slow work.
        await interaction.response.defer(thinking=True)
        # 2. Read the parameters and turn them into a request.
        try:
            if image.content_type not in IMAGE_TYPES or image.size > MAX_ATTACHMENT:
                raise NoParameters(f"{image.filename} is not a PNG, JPEG or WebP image nanke can read.")
            text = await asyncio.to_thread(read_parameters, await image.read())
            if text is None:
                raise NoParameters(
                    f"{image.filename} has no generation parameters (no A1111 PNG Info). Images re-saved by "
                    "Discord, screenshots and most social sites lose them: use the original file."
                )
            imported = import_request(text, catalog=self.catalog)
            notes = imported.notes
            request = self.submitter.validate(imported.request)
        except Exception as error:
            await retract(interaction, error)
            return
        # 3. Queue it like any /imagine, then say what could not be honoured.
        job = await self.submitter.start(interaction, request)
        if job is not None and notes:
            listed = "\n".join(f"• {note}" for note in notes[:10])
            await interaction.followup.send(
                f"Job #{job.id} differs from the original:\n{listed}",
                ephemeral=True,
                allowed_mentions=discord.AllowedMentions.none(),
            )


async def setup(bot: NankeBot) -> None:
    await bot.add_cog(Reproduce(submitter=bot.submitter, catalog=bot.app.catalog))
