"""The slash commands in other languages, for Discord: names, descriptions and choices.

A command's English is where the command is defined (the cogs): it is what Discord shows by
default and what it sends back when a command is used, so commands always run by their English
names. Translations are in ``commands.<locale>.json`` beside this module, keyed by that English:

    {"names": {"imagine": "画图", "prompt": "提示词"},
     "descriptions": {"Generate images from a prompt": "根据提示词生成图片"},
     "choices": {"1:1 square": "1:1 方形"}}

``names`` serves commands, groups and options alike (an option called ``prompt`` is 提示词 in every
command), ``choices`` the choices' names (a choice without one, such as a sampler, keeps its
name in every language). discord.py asks
:class:`CommandTranslator` for every string at sync; Discord shows the member's locale's text and
the English where there is none. A translation Discord would refuse (a name with a capital or a
space, a description over 100 characters) is left out and logged, so that the sync still succeeds.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

from bot.i18n.catalog import CATALOG_DIR

log = logging.getLogger(__name__)

SECTIONS = ("names", "descriptions", "choices")
SECTION_OF = {
    Where.command_name: "names",
    Where.group_name: "names",
    Where.parameter_name: "names",
    Where.command_description: "descriptions",
    Where.group_description: "descriptions",
    Where.parameter_description: "descriptions",
    Where.choice_name: "choices",
}
NAME_LIMIT = 32
TEXT_LIMIT = 100
"""Discord's longest command or option name, and longest description or choice name."""
NAME_SCRIPTS = ((0x0900, 0x097F), (0x0E00, 0x0E7F))
"""Devanagari and Thai, whose marks Discord allows in names besides letters and digits."""

CommandCatalog = dict[str, dict[str, str]]


def load_command_catalogs(directory: Path = CATALOG_DIR) -> dict[str, CommandCatalog]:
    """Every ``commands.<locale>.json`` in ``directory``, by Discord locale."""
    catalogs: dict[str, CommandCatalog] = {}
    for path in sorted(directory.glob("commands.*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or set(data) - set(SECTIONS):
            raise ValueError(f"{path.name}: a command catalog has the sections {', '.join(SECTIONS)}")
        catalogs[path.name.removeprefix("commands.").removesuffix(".json")] = {
            section: dict(data.get(section, {})) for section in SECTIONS
        }
    return catalogs


def valid_name(name: str) -> bool:
    """Whether Discord accepts ``name`` for a command or option: 1-32 lowercase letters, digits,
    ``-`` or ``_`` (any script: ``^[-_\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$``)."""
    return (
        1 <= len(name) <= NAME_LIMIT
        and name == name.lower()
        and all(
            char in "-_"
            or unicodedata.category(char)[0] in "LN"
            or any(low <= ord(char) <= high for low, high in NAME_SCRIPTS)
            for char in name
        )
    )


def fits(section: str, text: str) -> bool:
    """Whether Discord accepts ``text`` as a translation in ``section``."""
    return valid_name(text) if section == "names" else 1 <= len(text) <= TEXT_LIMIT


class CommandTranslator(app_commands.Translator):
    """Translates the command tree at sync from the command catalogs."""

    def __init__(self, catalogs: dict[str, CommandCatalog] | None = None) -> None:
        self.catalogs = load_command_catalogs() if catalogs is None else catalogs

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        catalog = self.catalogs.get(locale.value)
        section = SECTION_OF.get(context.location)
        if catalog is None or section is None:
            return None
        translation = catalog[section].get(string.message)
        if translation is not None and not fits(section, translation):
            log.warning(
                "%s: %r is not a %s Discord accepts; left out", locale.value, translation, section[:-1]
            )
            return None
        return translation
