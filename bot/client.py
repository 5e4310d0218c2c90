"""``NankeBot``: the discord.py bot, wired to the job service, the GPU worker and delivery."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from contextlib import suppress

import discord
from discord.ext import commands

from bot.buttons import DYNAMIC_ITEMS
from bot.community import Community
from bot.delivery import Deliverer
from bot.errors import report_error
from bot.flow import JobFlow
from bot.listing import Listings
from bot.services import Services
from bot.settings import Settings
from bot.sharing import Sharing
from pipeline.worker import WorkerEvents

log = logging.getLogger(__name__)

COGS = (
    "bot.cogs.imagine",
    "bot.cogs.reproduce",
    "bot.cogs.prompts",
    "bot.cogs.gallery",
    "bot.cogs.settings",
)
RETRY_INTERVAL = 5.0


def point_discord_py_at(api_base: str, gateway_url: str) -> None:
    """Send discord.py's REST and gateway traffic to ``api_base`` / ``gateway_url``.

    discord.py reads both from class attributes (REST, webhooks and follow-ups go through
    ``Route.BASE``; a plain client connects to ``DEFAULT_GATEWAY`` without asking ``/gateway``).
    """
    import yarl

    discord.http.Route.BASE = api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class NankeBot(commands.Bot):
    """The bot. One process runs it and the embedded GPU worker; SQLite needs no other service."""

    def __init__(self, settings: Settings, services: Services) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.none() | discord.Intents(guilds=True),
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
        )
        self.settings = settings
        self.services = services
        self.deliverer = Deliverer(self, services.jobs)
        self.flow = JobFlow(self, services.jobs, self.deliverer)
        self.community = Community(services.jobs)
        self.listings = Listings(self)
        self.sharing = Sharing(self)
        self._retry_task: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        for cog in COGS:
            await self.load_extension(cog)
        self.tree.on_error = self.on_app_command_error
        await self._sync_commands()
        loop = asyncio.get_running_loop()
        self.services.worker.events = _LoopEvents(self, loop)
        self.services.start_worker()
        self._retry_task = asyncio.create_task(self._retry_deliveries(), name="nanke-deliveries")

    async def _sync_commands(self) -> None:
        if self.settings.guild_ids:
            for guild_id in self.settings.guild_ids:
                guild = discord.Object(guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()
        where = (
            "guilds " + ", ".join(map(str, self.settings.guild_ids)) if self.settings.guild_ids else "global"
        )
        log.info("slash commands synced (%s)", where)

    async def on_ready(self) -> None:
        log.info(
            "logged in as %s (id %s) in %d guilds", self.user, self.user and self.user.id, len(self.guilds)
        )

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: discord.app_commands.AppCommandError
    ) -> None:
        await report_error(interaction, error)

    async def _retry_deliveries(self) -> None:
        """Deliver finished-but-undelivered jobs: at start (crash recovery) and whenever due."""
        await self.wait_until_ready()
        while not self.is_closed():
            try:
                await self.deliverer.deliver_due()
            except Exception:
                log.exception("delivery retry loop failed; trying again in %g s", RETRY_INTERVAL)
            await asyncio.sleep(RETRY_INTERVAL)

    async def close(self) -> None:
        if self._retry_task is not None:
            self._retry_task.cancel()
            with suppress(asyncio.CancelledError):
                await self._retry_task
        await asyncio.to_thread(self.services.stop_worker)
        await super().close()


class _LoopEvents(WorkerEvents):
    """Hands the worker thread's events to the bot's event loop."""

    def __init__(self, bot: NankeBot, loop: asyncio.AbstractEventLoop) -> None:
        self.bot = bot
        self.loop = loop

    def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
        self.loop.call_soon_threadsafe(self.bot.deliverer.progress, job_id, step, total, elapsed_s)

    def finished(self, job_id: int) -> None:
        future = asyncio.run_coroutine_threadsafe(self.bot.deliverer.deliver(job_id), self.loop)
        future.add_done_callback(_log_failure)


def _log_failure(future: concurrent.futures.Future[bool]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("delivering a finished job failed", exc_info=future.exception())
