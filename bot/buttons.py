"""The base of nanke's buttons: ``DynamicItem``s that survive restarts, and how they reach their handler.

Every button's ``custom_id`` carries what it needs (the job id, the image index), so a click on a
message posted before the last restart still works: each feature registers its button classes
in ``setup_hook`` (through its module's ``setup``) and discord.py rebuilds them from the id.
Nothing is kept in memory per message. A button's template and the ``custom_id`` it carries come
from one :class:`CustomId`; the button class sits in the same file as the feature cog that handles
its clicks, and reaches that cog with :meth:`Feature.of`.
"""

from __future__ import annotations

import re
import string
from typing import Any, TypeVar

import discord
from discord.ext import commands

from bot.async_jobs import AsyncJobs
from bot.errors import JobGone, report_error
from pipeline.errors import JobNotFound

CUSTOM_ID_LIMIT = 100
"""Discord's longest ``custom_id``."""
JOB_ID = r"[0-9]+"

FeatureT = TypeVar("FeatureT", bound="Feature")


class CustomId:
    """One kind of ``custom_id``: the template discord.py matches it with, and the string a button
    carries, both from one pattern.

    ``CustomId("nk:up:{job}:{index}", job=r"[0-9]+", index=r"[0-3]")`` has the template
    ``nk:up:(?P<job>[0-9]+):(?P<index>[0-3])`` and formats ``job=12, index=0`` as ``nk:up:12:0``.
    """

    def __init__(self, pattern: str, **fields: str) -> None:
        parts = list(string.Formatter().parse(pattern))
        names = [name for _, name, _, _ in parts if name]
        if sorted(names) != sorted(fields):
            raise ValueError(f"fields: {sorted(fields)} (allowed: the pattern's {sorted(names)})")
        self.pattern = pattern
        self.template = "".join(
            re.escape(literal) + (f"(?P<{name}>{fields[name]})" if name else "")
            for literal, name, _, _ in parts
        )

    def format(self, **values: object) -> str:
        """The ``custom_id`` for ``values``, cut to Discord's 100 characters."""
        return self.pattern.format(**values)[:CUSTOM_ID_LIMIT]


class Feature(commands.Cog):
    """A feature's cog: its slash commands and the handlers of its buttons."""

    @classmethod
    def of(cls: type[FeatureT], interaction: discord.Interaction) -> FeatureT:
        """The loaded instance of this cog, for a button discord.py rebuilt from a click."""
        cog = interaction.client.get_cog(cls.__cog_name__)  # type: ignore[attr-defined]
        if not isinstance(cog, cls):
            raise RuntimeError(f"the {cls.__cog_name__} feature is not loaded")
        return cog


class JobButton(discord.ui.DynamicItem[discord.ui.Button], template=r"nk:job:(?P<job>[0-9]+)"):
    """Base of the buttons about one job: parses the job id and routes errors to the central handler.

    Subclasses give their own template (from a :class:`CustomId`) and define :meth:`run` (and
    :meth:`check` for who may press them); this base, and other abstract ones, are never
    registered, so their placeholder templates match nothing.
    """

    def __init__(self, job_id: int, button: discord.ui.Button) -> None:
        super().__init__(button)
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> JobButton:
        return cls(**cls.parse(match))

    @classmethod
    def parse(cls, match: re.Match[str]) -> dict[str, Any]:
        return {"job_id": int(match["job"])}

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        try:
            await self.check(interaction)
        except Exception as error:
            await report_error(interaction, error, job_id=self.job_id)
            return False
        return True

    async def check(self, interaction: discord.Interaction) -> None:
        """Raise :class:`~bot.errors.NotAllowed` when the clicker may not press this button."""

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        try:
            await self.run(interaction)
        except Exception as error:
            await report_error(interaction, error, job_id=self.job_id)

    async def run(self, interaction: discord.Interaction) -> None:
        raise NotImplementedError


async def owner_of(jobs: AsyncJobs, job_id: int) -> int | None:
    """The Discord id of the member who asked for ``job_id``; :class:`~bot.errors.JobGone` if it is gone."""
    try:
        job = await jobs.get(job_id)
    except JobNotFound:
        raise JobGone(f"Job {job_id} no longer exists.") from None
    return job.owner_discord_id
