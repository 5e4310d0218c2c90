"""/loras and /styles: what a prompt can call on beside the model, with trigger words and texts.

Both answer privately (a long list would bury the channel) and fit one Discord message; a
``search`` narrows the list. The folders are read when asked (files an admin adds show up).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot import render
from bot.buttons import Feature
from bot.i18n import ENGLISH, Texts, for_interaction
from pipeline.domain.models.resources import ResourceFolder, trigger_words
from pipeline.domain.prompt.styles import StyleBook, StyleFile

if TYPE_CHECKING:
    from bot.client import NankeBot

log = logging.getLogger(__name__)

SHOWN = 20
"""The most entries one answer lists (each line at most about 90 characters)."""
LIMIT = 1900


def matching(names: list[str], search: str | None) -> list[str]:
    """``names`` that contain ``search`` (without regard to case), all of them without one."""
    needle = (search or "").casefold().strip()
    return [name for name in names if needle in name.casefold()]


def choices(names: list[str], current: str) -> list[app_commands.Choice[str]]:
    """Autocomplete choices: the first 25 names containing what was typed (Discord's limit)."""
    return [app_commands.Choice(name=name[:100], value=name[:100]) for name in matching(names, current)][:25]


def loras_text(folder: ResourceFolder, search: str | None, *, texts: Texts = ENGLISH) -> str:
    """The answer to /loras: each LoRA with its trigger words, and how to use one."""
    resources = [
        resource for resource in folder.all() if resource.name in set(matching(folder.names(), search))
    ]
    if not resources:
        return texts("loras.none")
    lines = [texts("loras.title", count=len(resources))]
    for resource in resources[:SHOWN]:
        words = trigger_words(resource)
        name = render.shorten(resource.name, 40)
        lines.append(
            texts("loras.line_words", name=name, words=render.shorten(", ".join(words), 45))
            if words
            else texts("loras.line", name=name)
        )
    if len(resources) > SHOWN:
        lines.append(texts("library.more", count=len(resources) - SHOWN))
    lines.append(texts("loras.how"))
    return render.shorten_lines(lines, LIMIT)


def styles_text(book: StyleBook, search: str | None, *, texts: Texts = ENGLISH) -> str:
    """The answer to /styles: each style with the start of its prompt, and how to use one."""
    names = matching(list(book.names()), search)
    if not names:
        return texts("styles.none")
    lines = [texts("styles.title", count=len(names))]
    for name in names[:SHOWN]:
        style = book.get(name)
        lines.append(
            texts(
                "styles.line", name=render.shorten(name, 40), prompt=render.shorten(style.prompt or "—", 45)
            )
        )
    if len(names) > SHOWN:
        lines.append(texts("library.more", count=len(names) - SHOWN))
    lines.append(texts("styles.how"))
    return render.shorten_lines(lines, LIMIT)


class Library(Feature):
    """The /loras and /styles commands."""

    def __init__(self, *, loras: ResourceFolder, styles: StyleFile) -> None:
        self.loras = loras
        self.styles = styles

    @app_commands.command(
        name="loras", description="The LoRAs you can use in a prompt, with their trigger words"
    )
    @app_commands.describe(search="Only LoRAs whose name contains this")
    async def list_loras(
        self, interaction: discord.Interaction, search: app_commands.Range[str, 0, 100] | None = None
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        text = await asyncio.to_thread(loras_text, self.loras, search, texts=for_interaction(interaction))
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())

    @app_commands.command(name="styles", description="The prompt styles you can add with --style")
    @app_commands.describe(search="Only styles whose name contains this")
    async def list_styles(
        self, interaction: discord.Interaction, search: app_commands.Range[str, 0, 100] | None = None
    ) -> None:
        text = styles_text(self.styles.book(), search, texts=for_interaction(interaction))
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )


async def setup(bot: NankeBot) -> None:
    await bot.add_cog(Library(loras=bot.app.resources.loras, styles=bot.app.styles))
