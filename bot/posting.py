"""Where one job's messages go, and what Discord already has of them.

A :class:`Poster` sends, edits and deletes a job's messages through the interaction's webhook
while its token lives (15 minutes) and through the channel afterwards, or when Discord says the
token is no longer valid. :meth:`Poster.scan` reads the channel's recent history for the job's
messages, so a result that reached Discord just before a crash is found instead of posted again.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import discord

from bot import render
from bot.cogs.actions import CANCEL, DELETE
from bot.errors import NETWORK_ERRORS
from pipeline.queue.jobs import DeliverySnapshot, JobSnapshot

log = logging.getLogger(__name__)

TOKEN_MARGIN = timedelta(seconds=30)
"""A token this close to its expiry is treated as expired: a slow upload must not straddle it."""
INVALID_TOKEN_CODES = {50027, 10015}
"""Discord's "Invalid Webhook Token" and "Unknown Webhook": the interaction cannot answer any more."""
SCAN_LIMIT = 100
"""How many of the channel's messages since the first attempt are looked through."""
SCAN_MARGIN = timedelta(seconds=10)
"""How far before the first attempt the scan starts (clocks differ a little)."""


def token_invalid(error: BaseException) -> bool:
    """Whether ``error`` is Discord refusing the interaction's token (expired or unknown)."""
    return isinstance(error, discord.HTTPException) and (
        error.status == 401 or error.code in INVALID_TOKEN_CODES
    )


@dataclass(frozen=True)
class Found:
    """What a channel scan found of one job."""

    result_id: int | None = None
    """The job's result message, if it was posted."""
    stale_ids: tuple[int, ...] = field(default_factory=tuple)
    """Queue or progress messages of the job left behind."""


class Poster:
    """The messages of one job's delivery."""

    def __init__(self, client: discord.Client, delivery: DeliverySnapshot, *, now: datetime) -> None:
        self.client = client
        self.delivery = delivery
        self.now = now

    @property
    def token_valid(self) -> bool:
        delivery = self.delivery
        return (
            delivery.interaction_token is not None
            and delivery.application_id is not None
            and delivery.token_expires_at is not None
            and self.now < delivery.token_expires_at - TOKEN_MARGIN
        )

    @property
    def upload_limit(self) -> int:
        """The interaction's own limit; else the guild's (boosts raise it); else Discord's default."""
        if self.delivery.upload_limit:
            return self.delivery.upload_limit
        guild_id = self.delivery.guild_id
        return render.upload_limit(self.client.get_guild(guild_id) if guild_id else None)

    # -- sending, editing, deleting ---------------------------------------------------------------

    async def send(self, *, use_token: bool, **kwargs: object) -> int:
        """Post a message (a follow-up with the token, else in the channel); returns its id."""
        if use_token:
            message = await self._webhook().send(wait=True, **kwargs)  # type: ignore[arg-type]
            return message.id
        channel = self.client.get_channel(self.delivery.channel_id) or await self.client.fetch_channel(
            self.delivery.channel_id
        )
        message = await channel.send(**kwargs)  # type: ignore[union-attr]
        return message.id

    async def edit(
        self, message_id: int, *, image: tuple[str, bytes] | None = None, **kwargs: object
    ) -> None:
        """Edit one of the job's messages; ``image`` (file name, bytes) replaces its attachments
        (a new file object for each attempt: a file is read once)."""

        def files() -> dict[str, object]:
            if image is None:
                return kwargs
            return {**kwargs, "attachments": [discord.File(io.BytesIO(image[1]), filename=image[0])]}

        await self._by_token_or_channel(
            lambda: self._webhook().edit_message(message_id, **files()),  # type: ignore[arg-type]
            lambda: self._message(message_id).edit(**files()),  # type: ignore[arg-type]
        )

    async def delete_quietly(self, message_id: int) -> None:
        """Delete one of the job's messages; a failure is only logged (it is cosmetic)."""
        try:
            await self._by_token_or_channel(
                lambda: self._webhook().delete_message(message_id),
                lambda: self._message(message_id).delete(),
            )
        except NETWORK_ERRORS as error:
            log.info("could not delete message %d of job %d: %s", message_id, self.delivery.job_id, error)

    async def _by_token_or_channel(
        self, with_token: Callable[[], Awaitable[object]], in_channel: Callable[[], Awaitable[object]]
    ) -> None:
        if self.token_valid:
            try:
                await with_token()
                return
            except discord.HTTPException as error:
                if not token_invalid(error):
                    raise
                log.info("job %d: interaction token no longer valid, using the channel", self.delivery.job_id)
        await in_channel()

    def _webhook(self) -> discord.Webhook:
        return discord.Webhook.partial(
            self.delivery.application_id,  # type: ignore[arg-type]
            self.delivery.interaction_token,  # type: ignore[arg-type]
            client=self.client,
        )

    def _message(self, message_id: int) -> discord.PartialMessage:
        return self.client.get_partial_messageable(self.delivery.channel_id).get_partial_message(message_id)

    # -- what Discord already has ---------------------------------------------------------------

    async def scan(self, job: JobSnapshot, *, since: datetime) -> Found | None:
        """The job's messages in the channel since ``since``; ``None`` when the channel's history
        cannot be read (no Read Message History, or Discord is unreachable)."""
        me = self.client.user
        if me is None:
            return None
        channel = self.client.get_partial_messageable(self.delivery.channel_id)
        result: int | None = None
        stale: list[int] = []
        try:
            history = channel.history(limit=SCAN_LIMIT, after=since - SCAN_MARGIN, oldest_first=True)
            async for message in history:
                if message.author.id != me.id:
                    continue
                if _is_result(message, job) and message.id != self.delivery.progress_message_id:
                    result = result or message.id
                elif _is_queue_message(message, job):
                    stale.append(message.id)
        except NETWORK_ERRORS as error:
            log.warning("job %d: cannot read the channel's history to look for its result: %s", job.id, error)
            return None
        return Found(result, tuple(stale))


def _custom_ids(message: discord.Message) -> set[str]:
    return {
        child.custom_id
        for row in message.components
        for child in getattr(row, "children", ())
        if getattr(child, "custom_id", None)
    }


def _is_result(message: discord.Message, job: JobSnapshot) -> bool:
    """A posted result: its buttons (a finished job), or the failure text without buttons."""
    if job.status == "done":
        return DELETE.format(job=job.id) in _custom_ids(message)
    return not message.components and message.content.endswith(tuple(render.job_tags(job)))


def _is_queue_message(message: discord.Message, job: JobSnapshot) -> bool:
    return CANCEL.format(job=job.id) in _custom_ids(message)
