"""/describe: an image becomes four suggested prompts, each with a button that imagines it.

The captioning model is ``NANKE_DESCRIBE_MODEL`` (off unless an admin sets it; see
:mod:`pipeline.engine.describer`). The answer lists the prompts, numbered; a button reads its
prompt back from the message it sits on, so the buttons need no storage and work after a restart.
Whoever clicks gets the job, credited to them, as if they had typed ``/imagine`` with it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from PIL import Image, UnidentifiedImageError

from bot import render
from bot.buttons import CustomId, Feature, RefusedButton, admitted
from bot.cogs.imagine import IMAGE_TYPES, MAX_IMAGE_BYTES
from bot.errors import BotError, report_error, retract
from bot.i18n import for_interaction
from bot.interactions import in_time
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from bot.client import NankeBot
    from bot.submitting import Submitter
    from pipeline.engine.pool import EnginePool

log = logging.getLogger(__name__)

NUMBERS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣")
DESCRIBE = CustomId("nk:describe:{number}", number="[1-4]")
PROMPT_CHARS = 400
"""A suggestion is cut to this many characters (four of them and the header fit one message)."""


def describe_text(name: str, prompts: list[str], texts: Any) -> str:
    """The answer: a header, then one line per prompt that starts with its number's emoji."""
    lines = [texts("describe.title", name=render.shorten(name, 60))]
    lines += [f"{NUMBERS[i]} {render.shorten(prompt, PROMPT_CHARS)}" for i, prompt in enumerate(prompts)]
    return "\n".join(lines)


def prompt_on(message: discord.Message | None, number: int) -> str | None:
    """The prompt of button ``number`` (from 1), read from the /describe answer it is under."""
    if message is None:
        return None
    marker = NUMBERS[number - 1]
    for line in message.content.splitlines():
        if line.startswith(marker + " "):
            return line[len(marker) + 1 :].strip() or None
    return None


class DescribeButton(discord.ui.DynamicItem[discord.ui.Button], template=DESCRIBE.template):
    """One of the four buttons under a /describe answer: imagine that prompt."""

    def __init__(self, number: int) -> None:
        self.number = number
        super().__init__(
            discord.ui.Button(
                emoji=NUMBERS[number - 1],
                style=discord.ButtonStyle.secondary,
                custom_id=DESCRIBE.format(number=number),
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> discord.ui.DynamicItem[Any]:
        fields = DESCRIBE.parse(item.custom_id or "")
        if fields is None:
            return RefusedButton(item)
        return cls(int(fields["number"]))

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        return await admitted(interaction)

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        try:
            prompt = prompt_on(interaction.message, self.number)
            if prompt is None:
                raise BotError("error.invalid_button")
            await Describe.of(interaction).imagine(interaction, prompt)
        except Exception as error:
            await report_error(interaction, error)


class Describe(Feature):
    """The /describe command and its buttons."""

    def __init__(self, *, submitter: Submitter, engines: EnginePool, configured: bool) -> None:
        self.submitter = submitter
        self.engines = engines
        self.configured = configured

    @app_commands.command(name="describe", description="Four prompts suggested for an image")
    @app_commands.describe(image="A PNG, JPEG or WebP to describe")
    async def describe(self, interaction: discord.Interaction, image: discord.Attachment) -> None:
        if not self.configured:
            raise BotError("describe.off")
        if image.content_type not in IMAGE_TYPES or image.size > MAX_IMAGE_BYTES:
            raise BotError("describe.unreadable", name=render.shorten(image.filename, 80))
        data = await in_time(interaction, image.read())
        if not interaction.response.is_done():
            await interaction.response.defer(thinking=True)
        try:
            prompts = await asyncio.to_thread(self._describe, data)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
            await retract(
                interaction, BotError("describe.unreadable", name=render.shorten(image.filename, 80))
            )
            return
        except PipelineError as error:
            await retract(interaction, error)
            return
        view = discord.ui.View(timeout=None)
        for number in range(1, len(prompts) + 1):
            view.add_item(DescribeButton(number))
        await interaction.edit_original_response(
            content=describe_text(image.filename, prompts, for_interaction(interaction)),
            view=view,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    def _describe(self, data: bytes) -> list[str]:
        import io

        describer = self.engines.describer()
        if describer is None:
            raise BotError("describe.off")
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > 4 * self.submitter.max_pixels:
                opened.thumbnail((2048, 2048))
            picture = opened.convert("RGB")
        return describer.describe(picture)

    async def imagine(self, interaction: discord.Interaction, prompt: str) -> None:
        """Queue ``prompt`` for the member who clicked, as /imagine would."""
        try:
            request, private = self.submitter.prepare(prompt)
        except PipelineError as error:
            await report_error(interaction, error)
            return
        await self.submitter.start(interaction, request, private=True if private else None)


async def setup(bot: NankeBot) -> None:
    bot.add_dynamic_items(DescribeButton)
    await bot.add_cog(
        Describe(
            submitter=bot.submitter,
            engines=bot.app.engines,
            configured=bool(bot.app.settings.describe_model),
        )
    )
