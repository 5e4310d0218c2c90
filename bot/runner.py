"""Starting the bot: one process with the embedded GPU worker.

Start-up checks before anything reaches Discord: the settings, the data folder and database
(upgraded), the device, and the default model, loaded (a Hub model is downloaded then). Any of
them failing stops ``main.py run`` with one line naming the setting and exit status 2. Discord
itself may be unreachable for a while (a network still coming up): the bot says so on one line
and tries again until it can log in.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

import aiohttp

from bot.settings import DiscordSettings
from pipeline.domain.text import one_line
from pipeline.settings import Settings, SettingsError
from pipeline.startup import StartupFailure, held_back_info, prepare

if TYPE_CHECKING:
    from bot.client import NankeBot
    from pipeline.api.serving import ApiServer
    from pipeline.app import App

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (5, 10, 20, 30, 60)
"""How long to wait between tries to reach Discord at start (then every minute)."""
PROBE_TIMEOUT_S = 15.0


async def start_bot(
    settings: Settings, discord_settings: DiscordSettings, token: str, *, load_model: bool = True
) -> None:
    """Run the bot until it is closed (the tests start it this way, inside their event loop)."""
    import discord

    from bot.client import NankeBot, point_discord_py_at

    point_discord_py_at(discord_settings.discord_api_base, discord_settings.discord_gateway_url)
    with held_back_info():
        app = await asyncio.to_thread(prepare, settings, load_model=load_model)
        api = _api_server(app)
    # nanke has no voice features: discord.py's notice that voice is unavailable is noise
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
    await wait_for_discord(discord_settings.discord_api_base)
    async with NankeBot(app, discord_settings, api=api) as bot:
        _close_on_signals(bot)
        await bot.start(token)


def _api_server(app: App) -> ApiServer | None:
    """The HTTP API beside the bot when NANKE_API_PORT is set (its port bound now: in use, it
    stops the start with one line)."""
    if not app.settings.api_port:
        return None
    from pipeline.api.progress import ProgressHub
    from pipeline.api.serving import ApiServer

    try:
        return ApiServer(app, ProgressHub(), host=app.settings.api_host, port=app.settings.api_port)
    except SettingsError as error:
        raise StartupFailure("; ".join(error.problems)) from error


async def wait_for_discord(api_base: str) -> None:
    """Return once Discord's API answers at all; until then, one line per try and a pause."""
    attempt = 0
    while True:
        try:
            timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(f"{api_base}/gateway"):
                return
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
            log.warning(
                "cannot reach Discord at %s (%s); trying again in %d s", api_base, _reason(error), delay
            )
            attempt += 1
            await asyncio.sleep(delay)


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
    except StartupFailure as failure:
        log.error("%s", failure.line)
        return 2
    except discord.LoginFailure:
        log.error("DISCORD_TOKEN: Discord refused the token (Bot → Reset Token in the developer portal)")
        return 2
    except discord.PrivilegedIntentsRequired:
        log.error("Discord refused a privileged intent; nanke needs none: update nanke")
        return 2
    except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError) as error:
        log.error("lost the connection to Discord while starting (%s); start nanke again", _reason(error))
        return 1
    except KeyboardInterrupt:
        log.info("stopped")
    return 0


def _reason(error: BaseException) -> str:
    text = one_line(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
