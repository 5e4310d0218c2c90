"""/settings moderation …: a server's content rules (Manage Server).

- ``show``: the rules as they are.
- ``banned-terms add|remove|clear``: words and phrases refused in prompts everywhere.
- ``adult-terms add|remove|reset``: words allowed only in age-restricted channels (``reset``:
  nanke's default list).
- ``adult-prompts``: what a prompt with an adult term gets: allowed only in age-restricted
  channels (the default), or refused everywhere.
- ``flagged-images``: what happens outside age-restricted channels to an image the safety check
  (``NANKE_SAFETY_CHECKER``) flagged: withheld (the default), or posted behind a spoiler.
- ``daily-limit``: images one member may ask for per day (0: no limit; ``/admin limit`` sets one
  member's own).

Each answer shows the rules after the change; each change goes to the audit log. Terms are
matched as the rules read them (case, width, accents, emphasis and punctuation inside words do
not matter: see :mod:`pipeline.domain.moderation`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import discord
from discord import app_commands

from bot import render
from bot.audit import CHOICE_KEYS, limit_text
from bot.errors import BotError
from bot.i18n import ENGLISH, Texts, for_interaction
from bot.interactions import require_manage_server
from pipeline.domain.moderation import DEFAULT_NSFW_TERMS, MAX_TERMS, Policy, term_list, with_terms
from pipeline.queue.jobs import MAX_DAILY_LIMIT
from pipeline.queue.jobs.asynchronous import AsyncJobs

log = logging.getLogger(__name__)

TERMS_INPUT_MAX = 1000
FIELD_LIMIT = 1024
"""Discord's longest embed field value."""

TERM_ACTIONS = [
    app_commands.Choice(name="add", value="add"),
    app_commands.Choice(name="remove", value="remove"),
    app_commands.Choice(name="clear", value="clear"),
]
ADULT_TERM_ACTIONS = [
    app_commands.Choice(name="add", value="add"),
    app_commands.Choice(name="remove", value="remove"),
    app_commands.Choice(name="reset to the default list", value="reset"),
]
ADULT_PROMPT_CHOICES = [
    app_commands.Choice(name="allow only in age-restricted channels", value="age_restricted"),
    app_commands.Choice(name="refuse everywhere", value="refuse"),
]
FLAGGED_IMAGE_CHOICES = [
    app_commands.Choice(name="withhold them", value="withhold"),
    app_commands.Choice(name="post them behind a spoiler", value="spoiler"),
]


class ModerationSettings(app_commands.Group):
    """The /settings moderation group; every command needs Manage Server."""

    def __init__(self, *, jobs: AsyncJobs) -> None:
        super().__init__(name="moderation", description="What nanke will draw in this server")
        self.jobs = jobs

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        # A subgroup cannot have default permissions of its own: the member's permissions decide.
        require_manage_server(interaction)
        return True

    @app_commands.command(name="show", description="The content rules of this server")
    async def show(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        policy = await self.jobs.moderation.policy(guild_id=interaction.guild_id)
        await self._answer(interaction, policy)

    @app_commands.command(name="banned-terms", description="Words and phrases refused in prompts everywhere")
    @app_commands.describe(action="What to do with the list", terms="Comma-separated words or phrases")
    @app_commands.choices(action=TERM_ACTIONS)
    async def banned_terms(
        self,
        interaction: discord.Interaction,
        action: app_commands.Choice[str],
        terms: app_commands.Range[str, 0, TERMS_INPUT_MAX] = "",
    ) -> None:
        await self._edit_terms(interaction, "banned_terms", action.value, terms, emptied=())

    @app_commands.command(name="adult-terms", description="Words allowed only in age-restricted channels")
    @app_commands.describe(action="What to do with the list", terms="Comma-separated words or phrases")
    @app_commands.choices(action=ADULT_TERM_ACTIONS)
    async def adult_terms(
        self,
        interaction: discord.Interaction,
        action: app_commands.Choice[str],
        terms: app_commands.Range[str, 0, TERMS_INPUT_MAX] = "",
    ) -> None:
        await self._edit_terms(interaction, "nsfw_terms", action.value, terms, emptied=DEFAULT_NSFW_TERMS)

    @app_commands.command(name="adult-prompts", description="What a prompt with an adult term gets")
    @app_commands.describe(action="Allowed only in age-restricted channels, or refused everywhere")
    @app_commands.choices(action=ADULT_PROMPT_CHOICES)
    async def adult_prompts(self, interaction: discord.Interaction, action: app_commands.Choice[str]) -> None:
        await self._change(interaction, lambda policy: replace(policy, nsfw_action=action.value))  # type: ignore[arg-type]

    @app_commands.command(
        name="flagged-images", description="Images the safety check flags, outside age-restricted channels"
    )
    @app_commands.describe(action="Withhold them, or post them behind a spoiler")
    @app_commands.choices(action=FLAGGED_IMAGE_CHOICES)
    async def flagged_images(
        self, interaction: discord.Interaction, action: app_commands.Choice[str]
    ) -> None:
        await self._change(interaction, lambda policy: replace(policy, flagged_images=action.value))  # type: ignore[arg-type]

    @app_commands.command(name="daily-limit", description="Images one member may ask for per day")
    @app_commands.describe(images="Images a day (0: no limit)")
    async def daily_limit(
        self, interaction: discord.Interaction, images: app_commands.Range[int, 0, MAX_DAILY_LIMIT]
    ) -> None:
        await self._change(interaction, lambda policy: replace(policy, daily_limit=images))

    async def _edit_terms(
        self,
        interaction: discord.Interaction,
        field: str,
        action: str,
        typed: str,
        *,
        emptied: tuple[str, ...],
    ) -> None:
        """``add`` or ``remove`` the terms typed, or (``clear``, ``reset``) make the list ``emptied``."""
        given = term_list(typed)
        if action in ("add", "remove") and not given:
            raise BotError("moderation.terms_needed")

        def change(policy: Policy) -> Policy:
            if action not in ("add", "remove"):
                return replace(policy, **{field: emptied})
            terms = getattr(policy, field)
            edited = with_terms(terms, added=given) if action == "add" else with_terms(terms, removed=given)
            return replace(policy, **{field: edited})

        await self._change(interaction, change)

    async def _change(self, interaction: discord.Interaction, change: Callable[[Policy], Policy]) -> None:
        assert interaction.guild_id is not None
        policy = await self.jobs.moderation.change_policy(
            guild_id=interaction.guild_id, actor_discord_id=interaction.user.id, change=change
        )
        await self._answer(interaction, policy)

    async def _answer(self, interaction: discord.Interaction, policy: Policy) -> None:
        await interaction.response.send_message(
            embed=policy_embed(policy, for_interaction(interaction)),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )


def policy_embed(policy: Policy, texts: Texts = ENGLISH) -> discord.Embed:
    """The rules, one field each."""
    embed = discord.Embed(title=texts("moderation.title"), colour=render.EMBED_COLOUR)
    embed.add_field(
        name=texts("moderation.field.banned_terms"),
        value=_terms(policy.banned_terms, texts),
        inline=False,
    )
    adult = _terms(policy.nsfw_terms, texts)
    if policy.nsfw_terms == DEFAULT_NSFW_TERMS:
        adult = texts("moderation.default_list", terms=adult)
    embed.add_field(name=texts("moderation.field.nsfw_terms"), value=adult[:FIELD_LIMIT], inline=False)
    embed.add_field(name=texts("moderation.field.nsfw_action"), value=texts(CHOICE_KEYS[policy.nsfw_action]))
    embed.add_field(
        name=texts("moderation.field.flagged_images"), value=texts(CHOICE_KEYS[policy.flagged_images])
    )
    embed.add_field(name=texts("moderation.field.daily_limit"), value=limit_text(policy.daily_limit, texts))
    embed.set_footer(text=texts("moderation.footer", max=MAX_TERMS))
    return embed


def _terms(terms: tuple[str, ...], texts: Texts) -> str:
    if not terms:
        return texts("moderation.no_terms")
    quoted = ["`" + term.replace("`", "'") + "`" for term in terms]
    return render.shorten(", ".join(quoted), FIELD_LIMIT - 100)
