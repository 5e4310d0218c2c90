"""Starting the bot: one process with the embedded GPU worker."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from bot.settings import DiscordSettings
from pipeline.settings import Settings

if TYPE_CHECKING:
    from bot.client import NankeBot

log = logging.getLogger(__name__)


async def start_bot(settings: Settings, discord_settings: DiscordSettings, token: str) -> None:
    """Run the bot until it is closed (the tests start it this way, inside their event loop)."""
    from bot.client import NankeBot, point_discord_py_at
    from pipeline.app import App

    point_discord_py_at(discord_settings.discord_api_base, discord_settings.discord_gateway_url)
    app = await asyncio.to_thread(App(settings).open)
    async with NankeBot(app, discord_settings) as bot:
        _close_on_signals(bot)
        await bot.start(token)


def _close_on_signals(bot: NankeBot) -> None:
    """SIGTERM (systemd, docker stop) and SIGINT close the bot: the worker finishes its batch first."""
    loop = asyncio.get_running_loop()
    closing: set[asyncio.Task[None]] = set()

    def close(name: str) -> None:
        log.info("%s received: shutting down", name)
        task = loop.create_task(bot.close())
        closing.add(task)
        task.add_done_callback(closing.discard)

    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, close, signum.name)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
            log.debug("cannot handle %s here", signum.name)


def run_bot(settings: Settings, discord_settings: DiscordSettings, token: str) -> int:
    """The ``main.py run`` entry: run until interrupted; returns the exit status."""
    import discord

    from bot.redaction import redact_logs

    redact_logs(token)
    try:
        asyncio.run(start_bot(settings, discord_settings, token))
    except discord.LoginFailure:
        log.error(
            "Discord refused the token: check DISCORD_TOKEN (Bot → Reset Token in the developer portal)"
        )
        return 2
    except discord.PrivilegedIntentsRequired:
        log.error("Discord refused a privileged intent; nanke needs none: update nanke")
        return 2
    except KeyboardInterrupt:
        log.info("stopped")
    return 0
