"""Which language a member is answered in, from what Discord tells about them.

Discord sends every interaction the member's client language (``interaction.locale``) and the
server's preferred language (``interaction.guild_locale``). A member is answered in their own
language when nanke has a catalog for it: the locale itself (``zh-CN``), else its language
(``en-GB`` → ``en``), else English. ``zh-TW`` (Traditional Chinese, the only other Chinese locale
Discord has) gets English, not Simplified Chinese: another script reads as a mistranslation to
those who chose it, and a ``messages.zh-TW.json`` catalog would serve them without code changes.

A message posted with no interaction at hand (a result delivered after a restart) is in the
server's preferred locale as the client cache knows it (``guild.preferred_locale``), else English.
"""

from __future__ import annotations

import logging

import discord

from bot.i18n.catalog import FALLBACK, Texts, load_texts

log = logging.getLogger(__name__)

TEXTS: dict[str, Texts] = load_texts()
"""Every language nanke speaks, by catalog name (``en``, ``zh-CN``)."""
ENGLISH = TEXTS[FALLBACK]


def language_of(locale: discord.Locale | str | None) -> str:
    """The catalog that serves a Discord locale: its own, its language's, or English."""
    if locale is None:
        return FALLBACK
    tag = locale.value if isinstance(locale, discord.Locale) else str(locale)
    if tag in TEXTS:
        return tag
    language = tag.split("-", 1)[0]
    return language if language in TEXTS else FALLBACK


def texts_for(locale: discord.Locale | str | None) -> Texts:
    """The texts for a Discord locale (``None``: English)."""
    return TEXTS[language_of(locale)]


def for_interaction(interaction: discord.Interaction) -> Texts:
    """The texts for the member who clicked or typed: their Discord client's language."""
    return texts_for(interaction.locale)


def for_guild(guild: discord.Guild | None) -> Texts:
    """The texts for a message to a whole server: its preferred language (English without one)."""
    return texts_for(guild.preferred_locale if guild is not None else None)
