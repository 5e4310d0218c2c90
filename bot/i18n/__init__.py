"""English and 简体中文 for everything a member sees: one translation layer, by key.

- :mod:`bot.i18n.catalog`: the message catalogs (``messages.en.json``, ``messages.zh-CN.json``)
  and :class:`Texts`, the texts of one language: ``texts("cancel.done", job_id=7)``.
- :mod:`bot.i18n.languages`: which language a member is answered in (their Discord locale; the
  server's for a message posted with no interaction at hand).
- :mod:`bot.i18n.errors`: how a pipeline error reads in a language (its key and values, not its
  English).
- :mod:`bot.i18n.commands`: the slash commands' names, descriptions and choices for Discord
  (``commands.zh-CN.json``, through discord.py's translator).
"""

from __future__ import annotations

from bot.i18n.catalog import FALLBACK, Texts
from bot.i18n.languages import ENGLISH, TEXTS, for_guild, for_interaction, language_of, texts_for

__all__ = [
    "ENGLISH",
    "FALLBACK",
    "TEXTS",
    "Texts",
    "for_guild",
    "for_interaction",
    "language_of",
    "texts_for",
]
