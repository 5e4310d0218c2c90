"""The base of nanke's buttons: ``DynamicItem``s that survive restarts, and how they reach their handler.

Every button's ``custom_id`` carries what it needs (the job id, the image index), so a click on a
message posted before the last restart still works: each feature registers its button classes
in ``setup_hook`` (through its module's ``setup``) and discord.py rebuilds them from the id.
Nothing is kept in memory per message. A button's template and the ``custom_id`` it carries come
from one :class:`CustomId`; the button class sits in the same file as the feature cog that handles
its clicks, and reaches that cog with :meth:`Feature.of`.

A button claims every ``custom_id`` that starts with its prefix (``nk:up:``) and then parses it
strictly; one that does not parse (forged, malformed, a job id out of range) is refused with a
short private answer, as is an ``nk:`` id no button claims (:func:`unclaimed_buttons`).
"""

from __future__ import annotations

import logging
import re
import string
from typing import Any, ClassVar, TypeVar

import discord
from discord.ext import commands

from bot.errors import BotError, JobGone, report_error
from bot.interactions import viewer_of
from pipeline.errors import JobNotFound, PipelineError
from pipeline.queue.jobs import JobSnapshot
from pipeline.queue.jobs.asynchronous import AsyncJobs

CUSTOM_ID_LIMIT = 100
"""Discord's longest ``custom_id``."""
JOB_ID = r"[1-9][0-9]{0,17}"
"""A job id: a positive whole number a database integer holds (at most 18 digits)."""
PREFIX = "nk:"

log = logging.getLogger(__name__)

FeatureT = TypeVar("FeatureT", bound="Feature")


class CustomId:
    """One kind of ``custom_id``: the template discord.py matches it with, and the string a button
    carries, both from one pattern.

    ``CustomId("nk:up:{job}:{index}", job=r"[0-9]+", index=r"[0-3]")`` has the template
    ``nk:up:(?P<job>[0-9]+):(?P<index>[0-3])`` and formats ``job=12, index=0`` as ``nk:up:12:0``.
    """

    prefixes: ClassVar[set[str]] = set()
    """The prefixes of every kind defined (what :func:`unclaimed_buttons` leaves out)."""

    def __init__(self, pattern: str, **fields: str) -> None:
        parts = list(string.Formatter().parse(pattern))
        names = [name for _, name, _, _ in parts if name]
        if sorted(names) != sorted(fields):
            raise ValueError(f"fields: {sorted(fields)} (allowed: the pattern's {sorted(names)})")
        if not parts or not parts[0][0].startswith(PREFIX) or not parts[0][0].endswith(":"):
            raise ValueError(f"pattern: {pattern!r} (allowed: 'nk:<action>:' then fields)")
        self.pattern = pattern
        self.prefix = parts[0][0]
        self.strict = re.compile(
            "".join(
                re.escape(literal) + (f"(?P<{name}>{fields[name]})" if name else "")
                for literal, name, _, _ in parts
            )
        )
        self.template = re.escape(self.prefix) + ".*"
        """What a button class registers: every id with this prefix, so a malformed one is answered."""
        CustomId.prefixes.add(self.prefix)

    def format(self, **values: object) -> str:
        """The ``custom_id`` for ``values``, cut to Discord's 100 characters."""
        return self.pattern.format(**values)[:CUSTOM_ID_LIMIT]

    def parse(self, custom_id: str) -> re.Match[str] | None:
        """The fields of ``custom_id``, or ``None`` when it is not one of these."""
        return self.strict.fullmatch(custom_id)


class Feature(commands.Cog):
    """A feature's cog: its slash commands and the handlers of its buttons."""

    @classmethod
    def of(cls: type[FeatureT], interaction: discord.Interaction) -> FeatureT:
        """The loaded instance of this cog, for a button discord.py rebuilt from a click."""
        cog = interaction.client.get_cog(cls.__cog_name__)  # type: ignore[attr-defined]
        if not isinstance(cog, cls):
            raise RuntimeError(f"the {cls.__cog_name__} feature is not loaded")
        return cog


class Gatekeeper(Feature):
    """Turns away every command and click of a member an admin banned in the server (``/admin
    ban``); members with Manage Server never are, so that they can always lift a ban."""

    def __init__(self, *, jobs: AsyncJobs) -> None:
        self.jobs = jobs

    async def admit(self, interaction: discord.Interaction) -> None:
        """Raise :class:`~pipeline.errors.Banned` when the member is barred where they are."""
        if interaction.guild_id is None or interaction.permissions.manage_guild:
            return
        await self.jobs.moderation.refuse_banned(
            guild_id=interaction.guild_id, discord_id=interaction.user.id
        )


async def admitted(interaction: discord.Interaction, *, quietly: bool = False) -> bool:
    """Whether the member may use the bot here; a banned one is told why (privately), unless
    ``quietly``."""
    try:
        await Gatekeeper.of(interaction).admit(interaction)
    except PipelineError as error:
        if not quietly:
            await report_error(interaction, error)
        return False
    return True


class RefusedButton(discord.ui.DynamicItem[discord.ui.Button], template=r"(?s).*"):
    """A click whose ``custom_id`` nanke does not know: answered privately, nothing done.

    Never registered itself (its template takes any id); the buttons return it for ids they
    claim but cannot parse, and :func:`unclaimed_buttons` registers it for the rest.
    """

    def __init__(self, button: discord.ui.Button) -> None:
        super().__init__(button)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        log.info("refused a click on %r", (interaction.data or {}).get("custom_id"))
        await report_error(interaction, BotError("error.invalid_button"))
        return False


def unclaimed_buttons() -> type[RefusedButton]:
    """A button class for every ``nk:`` custom id that no :class:`CustomId` defined so far claims.

    Register it after the features' buttons, so that a forged id still gets an answer.
    """
    known = "|".join(re.escape(prefix) for prefix in sorted(CustomId.prefixes))

    class UnclaimedButton(RefusedButton, template=rf"(?!{known}){re.escape(PREFIX)}.*"):
        @classmethod
        async def from_custom_id(
            cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
        ) -> UnclaimedButton:
            return cls(item)

    return UnclaimedButton


class JobButton(discord.ui.DynamicItem[discord.ui.Button], template=r"(?!)"):
    """Base of the buttons about one job: parses the job id and routes errors to the central handler.

    A subclass names its :class:`CustomId` (``class UpscaleButton(JobButton, custom_ids=UPSCALE)``)
    and defines :meth:`run` (and :meth:`check` for who may press them). A subclass without one is
    abstract: its template matches nothing.
    """

    custom_ids: ClassVar[CustomId]

    def __init_subclass__(cls, *, custom_ids: CustomId | None = None, **kwargs: Any) -> None:
        if custom_ids is not None:
            cls.custom_ids = custom_ids
        super().__init_subclass__(template=custom_ids.template if custom_ids else r"(?!)", **kwargs)

    def __init__(self, job_id: int, button: discord.ui.Button) -> None:
        super().__init__(button)
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> discord.ui.DynamicItem[discord.ui.Button]:
        fields = cls.custom_ids.parse(item.custom_id or "")
        if fields is None:
            return RefusedButton(item)
        return cls(**cls.parse(fields))

    @classmethod
    def parse(cls, match: re.Match[str]) -> dict[str, Any]:
        return {"job_id": int(match["job"])}

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        if not await admitted(interaction):
            return False
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


async def visible_job(jobs: AsyncJobs, interaction: discord.Interaction, job_id: int) -> JobSnapshot:
    """The job, if the member may see it here; else :class:`~bot.errors.JobGone` ("not found")."""
    try:
        return await jobs.visible(job_id, viewer_of(interaction))
    except JobNotFound:
        raise JobGone("error.job_gone", job_id=job_id) from None
