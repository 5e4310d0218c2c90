"""/queue: where your jobs are and when they should be done; admins see the whole server's queue.

The estimate comes from the measured recent throughput (``JobService.overview``). A member sees
only their own jobs and how many others wait; a member with Manage Server sees every job of the
server (other servers' jobs only as a count). With remote GPU workers, everyone sees how many
are connected and busy, and an admin sees each one: host, GPU, models, busy or idle, images/s.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot import render
from bot.buttons import Feature
from bot.i18n import ENGLISH, Texts, for_interaction
from pipeline.queue.jobs import QueueEntry, QueueOverview
from pipeline.queue.jobs.asynchronous import AsyncJobs
from pipeline.queue.worker_status import WorkerStatus

if TYPE_CHECKING:
    from bot.client import NankeBot

log = logging.getLogger(__name__)

SHOWN = 10
"""The most jobs one answer lists (each line is at most about 170 characters)."""


class Queue(Feature):
    """The /queue command."""

    def __init__(self, *, jobs: AsyncJobs) -> None:
        self.jobs = jobs

    @app_commands.command(name="queue", description="Where your jobs are in the queue, and when they are due")
    async def queue(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        overview = await self.jobs.overview()
        admin = interaction.guild_id is not None and interaction.permissions.manage_guild
        text = queue_text(
            overview,
            viewer_id=interaction.user.id,
            guild_id=interaction.guild_id,
            admin=admin,
            texts=for_interaction(interaction),
        )
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())


def queue_text(
    overview: QueueOverview, *, viewer_id: int, guild_id: int | None, admin: bool, texts: Texts = ENGLISH
) -> str:
    """The answer to /queue: the viewer's jobs (an admin: the server's), then the rest as counts."""
    entries = overview.entries
    if admin:
        title = texts("queue.title_server")
        shown = [entry for entry in entries if entry.guild_id == guild_id]
    else:
        title = texts("queue.title_own")
        shown = [entry for entry in entries if entry.owner_discord_id == viewer_id]
    lines = [title]
    lines += [_line(entry, texts, with_owner=admin) for entry in shown[:SHOWN]]
    if len(shown) > SHOWN:
        lines.append(texts("queue.more", count=len(shown) - SHOWN))
    if not shown:
        lines.append(texts("queue.nothing" if admin else "queue.nothing_own"))
    others = len(entries) - len(shown)
    if others:
        lines.append(texts("queue.others_elsewhere" if admin else "queue.others", count=others))
    if overview.seconds_per_image is not None:
        lines.append(texts("queue.speed", seconds=f"{overview.seconds_per_image:.1f}"))
    if overview.remote:
        lines += _workers(overview.workers, texts, detailed=admin)
    return render.shorten_lines(lines, 2000)


def _workers(workers: Sequence[WorkerStatus], texts: Texts, *, detailed: bool) -> list[str]:
    """The GPU workers: how many and how many busy; for an admin, one line each."""
    if not workers:
        return [texts("queue.no_workers")]
    lines = [texts("queue.workers", count=len(workers), busy=sum(worker.busy for worker in workers))]
    if not detailed:
        return lines
    for worker in workers[:SHOWN]:
        models = ", ".join(render.shorten(model, 40) for model in worker.models[:3])
        speed = texts("queue.worker_speed", rate=f"{worker.images_per_s:.2f}") if worker.images_per_s else ""
        lines.append(
            texts(
                "queue.worker_line",
                name=render.shorten(worker.name, 40),
                host=render.shorten(worker.host, 40),
                gpu=render.shorten(worker.gpu, 40),
                state=texts("queue.worker_busy" if worker.busy else "queue.worker_idle"),
                models=models or texts("queue.worker_no_model"),
                speed=speed,
            )
        )
    return lines


def _line(entry: QueueEntry, texts: Texts, *, with_owner: bool) -> str:
    if entry.status == "running":
        where = texts("queue.running")
    else:
        where = texts("queue.position", position=entry.position)
    if entry.paused:
        where += texts("queue.paused")
    due = texts("queue.due", duration=_duration(entry.eta_s, texts)) if entry.eta_s is not None else ""
    owner = f" · {render.shorten(entry.owner_name, 32)}" if with_owner else ""
    images = texts("queue.image" if entry.images == 1 else "queue.images", count=entry.images)
    return f"#{entry.job_id} {where}{due} · {images}{owner} · {render.shorten(entry.prompt, 60)}"


def _duration(seconds: float, texts: Texts) -> str:
    """About how long: ``45 s``, ``3 min``, ``1 h 5 min``."""
    if seconds < 90:
        return texts("duration.seconds", seconds=max(1, round(seconds)))
    minutes = round(seconds / 60)
    if minutes < 60:
        return texts("duration.minutes", minutes=minutes)
    return texts("duration.hours", hours=minutes // 60, minutes=minutes % 60)


async def setup(bot: NankeBot) -> None:
    await bot.add_cog(Queue(jobs=bot.jobs))
