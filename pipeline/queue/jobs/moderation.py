"""What a guild's admins control, and the record of it: the content rules prompts are judged by,
members barred from the bot or limited per day, pausing the queue, and the audit log.

Every moderation decision (a prompt refused or allowed only where adult content may be, an
image the safety check flagged, a member turned away by a ban or a daily limit) and every admin
action (a ban, a limit, a pause, a change of the rules, a moderator cancelling or deleting
someone else's job) is written to the audit log with who, what, when and which job. The log is
listed to the guild's admins only; nothing else reads it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, time
from typing import Any

from sqlalchemy.orm import Session

from pipeline.domain.moderation import (
    DEFAULT_NSFW_TERMS,
    FLAGGED_ACTIONS,
    NSFW_ACTIONS,
    Policy,
    Verdict,
    clean_terms,
    judge,
)
from pipeline.domain.text import shorten
from pipeline.errors import Banned, ContentRefused, DailyLimitReached
from pipeline.queue.jobs.snapshots import Destination, Requester
from pipeline.queue.jobs.store import JobStore
from storage import (
    audit_events,
    ban_member,
    ban_reason,
    guild_policy,
    images_asked_since,
    member_limit,
    paused_guilds,
    record_audit,
    set_guild_policy,
    set_member_limit,
    set_paused,
    unban_member,
    utcnow,
)

log = logging.getLogger(__name__)

MAX_REASON = 300
"""The longest ban reason kept (it is shown to the member)."""
MAX_DAILY_LIMIT = 10_000
AUDIT_PROMPT_CHARS = 300
"""How much of a judged prompt the audit log keeps."""
AUDIT_ACTIONS = (
    "prompt_refused",
    "prompt_adult",
    "image_refused",
    "image_flagged",
    "daily_limit",
    "banned_refused",
    "ban",
    "unban",
    "limit",
    "pause",
    "resume",
    "policy",
    "cancel",
    "delete",
)
"""What the audit log records (see the module docstring); ``AuditEntry.detail`` says the rest."""


@dataclass(frozen=True)
class AuditEntry:
    """One entry of a guild's audit log."""

    id: int
    action: str
    created_at: datetime
    guild_id: int | None = None
    actor_discord_id: int | None = None
    """Who acted: the member whose prompt was judged, or the admin (``None``: nanke itself)."""
    target_discord_id: int | None = None
    job_id: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    """What else there is to say, by action: ``rule``, ``term`` and ``prompt`` of a refusal,
    ``reason`` of a ban, ``images`` flagged, ``changes`` of the rules, ``limit`` ..."""


def start_of_day(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day: daily limits count from there."""
    return datetime.combine(now.date(), time(), tzinfo=now.tzinfo)


class Moderation:
    """Content rules, bans, daily limits, paused queues and the audit log, per guild."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    # -- the rules ------------------------------------------------------------------------------

    def policy(self, *, guild_id: int | None) -> Policy:
        """The content rules of ``guild_id`` (nanke's defaults for a new guild or a direct message)."""
        if guild_id is None:
            return Policy()
        with self._store.session() as session:
            return _policy(session, guild_id)

    def change_policy(
        self, *, guild_id: int, actor_discord_id: int | None, change: Callable[[Policy], Policy]
    ) -> Policy:
        """Apply ``change`` to the guild's rules and store the result (checked); the change is logged."""
        with self._store.session() as session:
            before = _policy(session, guild_id)
            after = _checked(change(before))
            changes = _differences(before, after)
            if changes:
                set_guild_policy(
                    session,
                    guild_id=guild_id,
                    banned_terms=list(after.banned_terms),
                    nsfw_terms=None if after.nsfw_terms == DEFAULT_NSFW_TERMS else list(after.nsfw_terms),
                    nsfw_action=after.nsfw_action,
                    flagged_images=after.flagged_images,
                    daily_limit=after.daily_limit,
                )
                audit(session, guild_id, "policy", actor=actor_discord_id, changes=changes)
        if changes:
            log.info("content rules of guild %d changed by %s: %s", guild_id, actor_discord_id, changes)
        return after

    # -- judging a submission -------------------------------------------------------------------

    def screen(
        self, prompt: str, *, requester: Requester, destination: Destination | None, images: int
    ) -> Verdict:
        """Judge a submission of ``images`` images by a Discord member or an API key (the command
        line is not judged) by the rules of the guild it is made in: raise
        :class:`~pipeline.errors.Banned`, :class:`~pipeline.errors.ContentRefused` or
        :class:`~pipeline.errors.DailyLimitReached`, each logged; else the verdict (``nsfw``: the
        job is adult content)."""
        if requester.local:
            return Verdict(True)
        member = requester.discord_id
        if destination is not None:
            guild_id, age_restricted = destination.guild_id, destination.age_restricted
        else:  # outside Discord: an API key
            guild_id, age_restricted = requester.guild_id, requester.age_restricted
        refusal: Exception | None = None
        with self._store.session() as session:
            if guild_id is not None and member is not None:
                refusal = _banned(session, guild_id, member)
            policy = _policy(session, guild_id) if guild_id is not None else Policy()
            verdict = judge(prompt, policy, age_restricted=age_restricted)
            if refusal is None and not verdict.allowed:
                refusal = _refused(verdict, policy)
                audit(
                    session,
                    guild_id,
                    "prompt_refused",
                    actor=member,
                    **({"via": requester.name} if member is None else {}),
                    rule=verdict.rule,
                    term=verdict.term,
                    prompt=shorten(prompt, AUDIT_PROMPT_CHARS),
                )
            if refusal is None and guild_id is not None and member is not None:
                refusal = _over_limit(session, guild_id, member, policy, images)
        if refusal is not None:
            raise refusal
        return verdict

    def refuse_flagged_image(
        self, *, guild_id: int | None, job_id: int, image: int, requester: Requester
    ) -> ContentRefused:
        """Log and return the refusal of working from a flagged image outside an age-restricted channel."""
        with self._store.session() as session:
            audit(
                session, guild_id, "image_refused", actor=requester.discord_id, job_id=job_id, image=image + 1
            )
        return ContentRefused(
            f"Image {image + 1} of job {job_id} is adult content: work from it in an age-restricted channel.",
            key="image_adult",
            params={"job_id": job_id, "image": image + 1},
        )

    def refuse_banned(self, *, guild_id: int, discord_id: int) -> None:
        """Raise :class:`~pipeline.errors.Banned` (logged) when the member is barred in ``guild_id``."""
        with self._store.session() as session:
            refusal = _banned(session, guild_id, discord_id)
        if refusal is not None:
            raise refusal

    # -- members --------------------------------------------------------------------------------

    def ban(self, *, guild_id: int, discord_id: int, reason: str, banned_by: int | None) -> bool:
        """Bar the member from the bot in ``guild_id``; ``False`` if already barred."""
        reason = " ".join(reason.split())[:MAX_REASON]
        with self._store.session() as session:
            banned = ban_member(
                session, guild_id=guild_id, discord_id=discord_id, reason=reason, banned_by=banned_by
            )
            if banned:
                audit(session, guild_id, "ban", actor=banned_by, target=discord_id, reason=reason)
        if banned:
            log.info("member %d banned in guild %d by %s", discord_id, guild_id, banned_by)
        return banned

    def unban(self, *, guild_id: int, discord_id: int, actor_discord_id: int | None = None) -> bool:
        """Lift the member's ban; ``False`` if there was none."""
        with self._store.session() as session:
            lifted = unban_member(session, guild_id=guild_id, discord_id=discord_id)
            if lifted:
                audit(session, guild_id, "unban", actor=actor_discord_id, target=discord_id)
        return lifted

    def ban_reason(self, *, guild_id: int, discord_id: int) -> str | None:
        with self._store.session() as session:
            return ban_reason(session, guild_id=guild_id, discord_id=discord_id)

    def set_daily_limit(
        self, *, guild_id: int, discord_id: int, images: int | None, actor_discord_id: int | None
    ) -> None:
        """Give the member their own daily image limit (0: none) or, with ``None``, the guild's."""
        if images is not None and not 0 <= images <= MAX_DAILY_LIMIT:
            raise ValueError(f"images: {images} (allowed: 0 to {MAX_DAILY_LIMIT}, or None)")
        with self._store.session() as session:
            set_member_limit(
                session, guild_id=guild_id, discord_id=discord_id, daily_limit=images, set_by=actor_discord_id
            )
            audit(session, guild_id, "limit", actor=actor_discord_id, target=discord_id, limit=images)

    def daily_limit(self, *, guild_id: int, discord_id: int) -> tuple[int, bool]:
        """The member's daily image limit in ``guild_id`` (0: none) and whether it is their own."""
        with self._store.session() as session:
            own = member_limit(session, guild_id=guild_id, discord_id=discord_id)
            return (own, True) if own is not None else (_policy(session, guild_id).daily_limit, False)

    # -- the queue ------------------------------------------------------------------------------

    def pause(self, *, guild_id: int, actor_discord_id: int | None = None) -> None:
        """The guild's queued jobs wait until :meth:`resume`; running ones finish."""
        with self._store.session() as session:
            set_paused(session, guild_id=guild_id, paused=True)
            audit(session, guild_id, "pause", actor=actor_discord_id)
        log.info("queue of guild %d paused", guild_id)

    def resume(self, *, guild_id: int, actor_discord_id: int | None = None) -> None:
        with self._store.session() as session:
            set_paused(session, guild_id=guild_id, paused=False)
            audit(session, guild_id, "resume", actor=actor_discord_id)
        log.info("queue of guild %d resumed", guild_id)

    def paused(self) -> set[int]:
        """The guilds whose queue is paused."""
        with self._store.session() as session:
            return paused_guilds(session)

    # -- the audit log --------------------------------------------------------------------------

    def record(
        self,
        action: str,
        *,
        guild_id: int | None,
        actor_discord_id: int | None = None,
        target_discord_id: int | None = None,
        job_id: int | None = None,
        **detail: Any,
    ) -> None:
        """Write one entry of the audit log (``action`` one of :data:`AUDIT_ACTIONS`)."""
        with self._store.session() as session:
            audit(
                session, guild_id, action, actor=actor_discord_id, target=target_discord_id, job_id=job_id,
                **detail,
            )  # fmt: skip

    def log(
        self, *, guild_id: int, discord_id: int | None = None, limit: int = 10, offset: int = 0
    ) -> list[AuditEntry]:
        """The guild's audit log, newest first; with ``discord_id``, the entries by or about that member."""
        with self._store.session() as session:
            return [
                AuditEntry(
                    id=event.id,
                    action=event.action,
                    created_at=event.created_at,
                    guild_id=event.guild_id,
                    actor_discord_id=event.actor_discord_id,
                    target_discord_id=event.target_discord_id,
                    job_id=event.job_id,
                    detail=_decoded(event.detail),
                )
                for event in audit_events(
                    session, guild_id=guild_id, discord_id=discord_id, limit=limit, offset=offset
                )
            ]


def _policy(session: Session, guild_id: int) -> Policy:
    stored = guild_policy(session, guild_id=guild_id)
    terms = stored["nsfw_terms"]
    return Policy(
        banned_terms=tuple(stored["banned_terms"]),
        nsfw_terms=DEFAULT_NSFW_TERMS if terms is None else tuple(terms),
        nsfw_action=stored["nsfw_action"] if stored["nsfw_action"] in NSFW_ACTIONS else "refuse",
        flagged_images=stored["flagged_images"]
        if stored["flagged_images"] in FLAGGED_ACTIONS
        else "withhold",
        daily_limit=max(0, int(stored["daily_limit"])),
    )


def _checked(policy: Policy) -> Policy:
    """``policy`` as it may be stored: terms cleaned and bounded, each choice one nanke knows."""
    if policy.nsfw_action not in NSFW_ACTIONS:
        raise ValueError(f"nsfw_action: {policy.nsfw_action!r} (allowed: {', '.join(NSFW_ACTIONS)})")
    if policy.flagged_images not in FLAGGED_ACTIONS:
        raise ValueError(f"flagged_images: {policy.flagged_images!r} (allowed: {', '.join(FLAGGED_ACTIONS)})")
    if not 0 <= policy.daily_limit <= MAX_DAILY_LIMIT:
        raise ValueError(f"daily_limit: {policy.daily_limit} (allowed: 0 to {MAX_DAILY_LIMIT})")
    return replace(
        policy, banned_terms=clean_terms(policy.banned_terms), nsfw_terms=clean_terms(policy.nsfw_terms)
    )


def _differences(before: Policy, after: Policy) -> dict[str, Any]:
    """What changed, for the audit log: terms added and removed, other fields' new values."""
    changes: dict[str, Any] = {}
    for name in (f.name for f in fields(Policy)):
        old, new = getattr(before, name), getattr(after, name)
        if old == new:
            continue
        if isinstance(new, tuple):
            changes[name] = {
                "added": [t for t in new if t not in old],
                "removed": [t for t in old if t not in new],
            }
        else:
            changes[name] = new
    return changes


def _banned(session: Session, guild_id: int, discord_id: int) -> Banned | None:
    reason = ban_reason(session, guild_id=guild_id, discord_id=discord_id)
    if reason is None:
        return None
    audit(session, guild_id, "banned_refused", actor=discord_id)
    return Banned(
        f"An admin of this server stopped you from using nanke here: {reason}",
        key="banned",
        params={"reason": reason},
    )


def _refused(verdict: Verdict, policy: Policy) -> ContentRefused:
    if verdict.rule == "banned":
        return ContentRefused(
            f"This server does not allow “{verdict.term}” in prompts.",
            key="prompt_banned",
            params={"term": verdict.term},
        )
    if verdict.rule == "minors":
        return ContentRefused("Adult content involving minors is never allowed.", key="prompt_minors")
    if policy.nsfw_action == "refuse":
        return ContentRefused(
            f"“{verdict.term}” is adult content, which this server does not allow.",
            key="prompt_adult_nowhere",
            params={"term": verdict.term},
        )
    return ContentRefused(
        f"“{verdict.term}” is adult content: ask for it in an age-restricted channel.",
        key="prompt_adult_channel",
        params={"term": verdict.term},
    )


def _over_limit(
    session: Session, guild_id: int, discord_id: int, policy: Policy, images: int
) -> DailyLimitReached | None:
    own = member_limit(session, guild_id=guild_id, discord_id=discord_id)
    limit = policy.daily_limit if own is None else own
    if not limit:
        return None
    now = utcnow()
    since = start_of_day(now)
    asked = images_asked_since(session, discord_id=discord_id, guild_id=guild_id, since=since)
    if asked + images <= limit:
        return None
    audit(session, guild_id, "daily_limit", actor=discord_id, limit=limit, asked=asked, images=images)
    left = max(0, limit - asked)
    return DailyLimitReached(
        f"You may ask for {limit} images a day here and have {left} left today (it starts again at "
        "midnight UTC).",
        key="daily_limit",
        params={"limit": limit, "left": left},
    )


def audit(
    session: Session,
    guild_id: int | None,
    action: str,
    *,
    actor: int | None = None,
    target: int | None = None,
    job_id: int | None = None,
    **detail: Any,
) -> None:
    """Write one entry of the audit log in ``session`` (the unit of work it records)."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"action: {action!r} (allowed: {', '.join(AUDIT_ACTIONS)})")
    record_audit(
        session,
        guild_id=guild_id,
        action=action,
        actor_discord_id=actor,
        target_discord_id=target,
        job_id=job_id,
        detail=json.dumps(detail, ensure_ascii=False) if detail else "",
    )


def _decoded(detail: str) -> dict[str, Any]:
    try:
        value = json.loads(detail) if detail else {}
    except ValueError:
        return {"text": detail}
    return value if isinstance(value, dict) else {"text": detail}
