"""``NankeBot``: the discord.py bot, the Discord front door onto the job interface.

It builds the Discord side once, from the shared :class:`~pipeline.app.App` and the Discord
settings: the job interface for the event loop
(:class:`~pipeline.queue.jobs.asynchronous.AsyncJobs`), delivery and the submit flow. Each
feature module's ``setup`` hands its cog exactly what it needs and registers its buttons; nothing
reaches back through the bot afterwards.

The features are set up by calling their ``setup`` directly rather than with
``load_extension``, which would execute each module a second time: features import each
other's buttons (a result shows the job actions and the community row), and one class of
each button must be the one registered and the one posted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Sequence
from contextlib import suppress
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands
from PIL import Image

from bot.buttons import Gatekeeper, admitted, unclaimed_buttons
from bot.cogs import (
    actions,
    admin,
    community,
    describe,
    gallery,
    imagine,
    library,
    listings,
    queue,
    reproduce,
)
from bot.cogs import settings as settings_commands
from bot.delivery import Deliverer
from bot.errors import report_error
from bot.i18n.commands import CommandTranslator
from bot.settings import DiscordSettings
from bot.submitting import Submitter
from pipeline.app import App
from pipeline.queue.jobs.asynchronous import AsyncJobs
from pipeline.queue.worker import EventFanout, Worker, WorkerEvents

if TYPE_CHECKING:
    from pipeline.api.serving import ApiServer

log = logging.getLogger(__name__)

FEATURES = (
    imagine, actions, community, listings, gallery, reproduce, describe, queue, library,
    settings_commands, admin,
)  # fmt: skip
RETRY_INTERVAL = 5.0


def point_discord_py_at(api_base: str, gateway_url: str) -> None:
    """Send discord.py's REST and gateway traffic to ``api_base`` / ``gateway_url``.

    discord.py reads both from class attributes (REST, webhooks and follow-ups go through
    ``Route.BASE``; a plain client connects to ``DEFAULT_GATEWAY`` without asking ``/gateway``).
    """
    import yarl

    discord.http.Route.BASE = api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class NankeTree(app_commands.CommandTree):
    """The slash commands, each first checked against the server's bans."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.type is discord.InteractionType.autocomplete:
            # Suggestions cannot carry a message: a banned member just gets none
            return await admitted(interaction, quietly=True)
        return await admitted(interaction)


class NankeBot(commands.Bot):
    """The bot. One process runs it and the embedded GPU worker; SQLite needs no other service.

    ``start_worker=False`` leaves the worker stopped until :meth:`start_worker` is called.
    """

    def __init__(
        self, app: App, settings: DiscordSettings, *, start_worker: bool = True, api: ApiServer | None = None
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.none() | discord.Intents(guilds=True),
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            tree_cls=NankeTree,
        )
        self.app = app
        self.settings = settings
        self.jobs = AsyncJobs(app.jobs)
        self.deliverer = Deliverer(self, self.jobs)
        self.submitter = Submitter(
            jobs=self.jobs,
            deliverer=self.deliverer,
            catalog=app.catalog,
            max_pixels=app.settings.max_pixels,
            styles=app.styles,
        )
        self.worker: Worker | None = None
        self.api = api
        """The HTTP API served beside the bot (NANKE_API_PORT), sharing its queue and worker."""
        self._start_worker = start_worker
        self._retry_task: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        await self.add_cog(Gatekeeper(jobs=self.jobs))
        for feature in FEATURES:
            await feature.setup(self)
        self.add_dynamic_items(unclaimed_buttons())
        self.tree.on_error = self.on_app_command_error
        await self.tree.set_translator(CommandTranslator())
        await self._sync_commands()
        events: WorkerEvents = _LoopEvents(self.deliverer, asyncio.get_running_loop())
        if self.api is not None:
            events = EventFanout(events, self.api.hub)
            self.api.start()
        self.worker = self.app.worker(events=events)
        if self._start_worker:
            self.start_worker()
        self._retry_task = asyncio.create_task(self._retry_deliveries(), name="nanke-deliveries")

    def start_worker(self) -> None:
        """Requeue jobs a crash left running, then start the GPU worker thread."""
        if self.worker is None:
            raise RuntimeError("the worker is built in setup_hook: start the bot first")
        self.worker.recover()
        self.worker.start()

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
        """Deliver finished-but-undelivered jobs: at start every one (crash recovery: a restart is
        a fresh chance, whatever the backoff said), then whenever one is due."""
        await self.wait_until_ready()
        first = True
        while not self.is_closed():
            try:
                await self.deliverer.deliver_due(all_pending=first)
                first = False
            except Exception:
                log.exception("delivery retry loop failed; trying again in %g s", RETRY_INTERVAL)
            await asyncio.sleep(RETRY_INTERVAL)

    async def close(self) -> None:
        if self._retry_task is not None:
            self._retry_task.cancel()
            with suppress(asyncio.CancelledError):
                await self._retry_task
        if self.api is not None:
            await self.api.stop()
        if self.worker is not None:
            await asyncio.to_thread(self.worker.stop)
        await super().close()


class _LoopEvents(WorkerEvents):
    """Hands the worker thread's events to the bot's event loop."""

    def __init__(self, deliverer: Deliverer, loop: asyncio.AbstractEventLoop) -> None:
        self.deliverer = deliverer
        self.loop = loop

    def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
        self.loop.call_soon_threadsafe(self.deliverer.progress, job_id, step, total, elapsed_s)

    def preview(self, job_id: int, images: Sequence[Image.Image]) -> None:
        self.loop.call_soon_threadsafe(self.deliverer.preview, job_id, list(images))

    def finished(self, job_id: int) -> None:
        future = asyncio.run_coroutine_threadsafe(self.deliverer.deliver(job_id), self.loop)
        future.add_done_callback(_log_failure)


def _log_failure(future: concurrent.futures.Future[bool]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("delivering a finished job failed", exc_info=future.exception())
