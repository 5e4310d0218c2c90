"""Whether Discord accepts the bot token, for ``main.py doctor``; the token itself is never shown."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from bot.settings import TOKEN_HELP, DiscordSettings
from pipeline.diagnostics import Check

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0


def check_token(settings: DiscordSettings, *, online: bool) -> Check:
    """Is the token set, and (``online``) does Discord accept it?"""
    if not settings.discord_token:
        return Check("Discord token", False, "DISCORD_TOKEN is not set", TOKEN_HELP)
    if not online:
        return Check("Discord token", True, "set (not checked with Discord: --offline)")
    return asyncio.run(_ask_discord(settings))


async def _ask_discord(settings: DiscordSettings) -> Check:
    url = settings.discord_api_base.rstrip("/") + "/users/@me"
    headers = {"Authorization": f"Bot {settings.discord_token}"}
    try:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as response,
        ):
            if response.status == 401:
                return Check(
                    "Discord token", False, "Discord refused it", "Bot → Reset Token in the developer portal"
                )
            if response.status != 200:
                return Check("Discord token", False, f"Discord answered {response.status}", "try again later")
            me = await response.json()
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
        return Check(
            "Discord token",
            False,
            f"Discord cannot be reached ({type(error).__name__})",
            "check this machine's internet connection, or use --offline",
        )
    return Check("Discord token", True, f"accepted: the bot is {me.get('username', '?')}")
