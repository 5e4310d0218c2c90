"""/reproduce: regenerate an AUTOMATIC1111 / civitai / nanke image from its embedded parameters."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot import render
from bot.buttons import Feature
from bot.cogs.imagine import IMAGE_TYPES
from bot.errors import BotError, retract
from bot.i18n import for_interaction
from bot.interactions import in_time
from pipeline.domain.metadata import read_parameters
from pipeline.domain.metadata.imported import import_request
from pipeline.domain.models import ModelCatalog
from pipeline.domain.models.resources import Resources

if TYPE_CHECKING:
    from bot.client import NankeBot
    from bot.submitting import Submitter

log = logging.getLogger(__name__)

MAX_ATTACHMENT = 50 * 1024 * 1024


class NoParameters(BotError):
    """The attachment carries no generation parameters."""


class Reproduce(Feature):
    """The /reproduce command."""

    def __init__(
        self, *, submitter: Submitter, catalog: ModelCatalog, resources: Resources | None = None
    ) -> None:
        self.submitter = submitter
        self.catalog = catalog
        self.resources = resources

    @app_commands.command(
        name="reproduce",
        description="Generate an image again from the settings saved inside it (A1111, civitai)",
    )
    @app_commands.describe(image="A PNG, JPEG or WebP with AUTOMATIC1111 'parameters' (PNG Info)")
    async def reproduce(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        # 1. Check the attachment and read its parameters; the job is stored before Discord is
        #    answered, unless the download takes too long for Discord's 3 seconds
        name = render.shorten(image.filename, 80)
        try:
            if image.content_type not in IMAGE_TYPES or image.size > MAX_ATTACHMENT:
                raise NoParameters("reproduce.unreadable", name=name)
            data = await in_time(interaction, image.read())
            text = await asyncio.to_thread(read_parameters, data)
            if text is None:
                raise NoParameters("reproduce.no_parameters", name=name)
            # finding LoRAs by hash reads each file once (then the digest is cached)
            imported = await in_time(
                interaction,
                asyncio.to_thread(import_request, text, catalog=self.catalog, resources=self.resources),
            )
            request = self.submitter.validate(imported.request)
        except Exception as error:
            if not interaction.response.is_done():
                await interaction.response.defer(thinking=True)
            await retract(interaction, error)
            return
        # 2. Queue it like any /imagine, then say what could not be honoured (the notes are English).
        job = await self.submitter.start(interaction, request)
        if job is not None and imported.notes:
            listed = "\n".join(f"• {render.shorten(note, 150)}" for note in imported.notes[:10])
            await interaction.followup.send(
                for_interaction(interaction)("reproduce.notes", job_id=job.id, notes=listed),
                ephemeral=True,
                allowed_mentions=discord.AllowedMentions.none(),
            )


async def setup(bot: NankeBot) -> None:
    await bot.add_cog(
        Reproduce(submitter=bot.submitter, catalog=bot.app.catalog, resources=bot.app.resources)
    )
