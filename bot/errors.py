"""The bot's errors and its one central error handler.

Errors a member can cause (a bad option, a full queue, a button they may not press) become a short
ephemeral reply, in the member's language (:mod:`bot.i18n`). Anything else is logged with its
traceback and the member sees "something went wrong", with the job id when there is one so an
admin can find it in the log.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import discord
from discord import app_commands

from bot.i18n import ENGLISH, Texts, for_interaction
from bot.i18n.errors import pipeline_text
from pipeline.errors import JobBusy, PipelineError

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000
"""Discord's longest message."""
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    discord.HTTPException,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    OSError,
)
"""What a call to Discord can fail with: an error answer, a dropped or refused connection, a timeout."""


class BotError(Exception):
    """Base class of the bot's own errors: a catalog key and its values, said to the member in their
    language (``JobGone("error.job_gone", job_id=7)``); the message is the English text."""

    def __init__(self, key: str, /, **params: object) -> None:
        self.key = key
        self.params = params
        super().__init__(ENGLISH(key, **params))

    def text(self, texts: Texts) -> str:
        """The error in the language of ``texts``."""
        return texts(self.key, **self.params)


class NotAllowed(BotError):
    """The member may not do this (another member's job, no Manage Messages)."""


class CheckRefused(NotAllowed, app_commands.CheckFailure):
    """:class:`NotAllowed`, raised from a cog's ``interaction_check`` (discord.py then reports it)."""


class JobGone(BotError):
    """The job a button points to no longer exists (deleted)."""


def user_message(error: BaseException, texts: Texts = ENGLISH) -> str | None:
    """The short text to show a member for a known error, or ``None`` for an unexpected one."""
    if isinstance(error, app_commands.CommandInvokeError | discord.app_commands.TransformerError):
        error = error.__cause__ or error
    if isinstance(error, JobBusy):
        return texts("error.busy")
    if isinstance(error, BotError):
        return f"⚠️ {_one_message(error.text(texts))}"
    if isinstance(error, PipelineError):
        return f"⚠️ {_one_message(pipeline_text(error, texts))}"
    if isinstance(error, app_commands.CheckFailure):
        return texts("error.not_here")
    return None


async def report_error(
    interaction: discord.Interaction, error: BaseException, *, job_id: int | None = None
) -> None:
    """Tell the member what went wrong (ephemeral) and log unexpected errors with the traceback."""
    texts = for_interaction(interaction)
    message = user_message(error, texts)
    if message is None:
        original = getattr(error, "original", error)
        log.error("unexpected error in %s (job %s)", _describe(interaction), job_id or "-", exc_info=original)
        message = texts("error.unexpected_job", job_id=job_id) if job_id else texts("error.unexpected")
    try:
        if interaction.response.is_done():
            await interaction.followup.send(
                message, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
        else:
            await interaction.response.send_message(
                message, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
    except NETWORK_ERRORS:
        log.warning("could not tell %s about an error: %s", _describe(interaction), message)


async def retract(
    interaction: discord.Interaction, error: BaseException, *, job_id: int | None = None
) -> None:
    """Replace the public "thinking…" message by an ephemeral error: nothing was queued."""
    try:
        await interaction.delete_original_response()
    except NETWORK_ERRORS:
        log.debug("could not delete the deferred response", exc_info=True)
    await report_error(interaction, error, job_id=job_id)


def _one_message(text: str) -> str:
    """``text`` cut to fit one Discord message, with room for the warning sign."""
    return text if len(text) <= MESSAGE_LIMIT - 10 else text[: MESSAGE_LIMIT - 11] + "…"


def _describe(interaction: discord.Interaction) -> str:
    if interaction.command is not None:
        return f"/{interaction.command.qualified_name}"
    data = interaction.data or {}
    return f"component {data.get('custom_id', '?')}"
