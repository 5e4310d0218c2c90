"""How the audit log reads in Discord (``/admin log``): one line per entry, in the admin's language.

Members are shown as mentions (which never ping inside an embed), times as Discord timestamps
(each reader sees their own time zone), prompts shortened; an entry of a kind this version does
not know still gets a line, with its action's name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import discord

from bot import render
from bot.i18n import ENGLISH, Texts
from pipeline.queue.jobs import AuditEntry

log = logging.getLogger(__name__)

EMBED_LIMIT = 4096
PROMPT_CHARS = 120
TERMS_SHOWN = 10
"""At most this many added or removed terms are named in a line about the rules."""

ACTION_KEYS = {
    "prompt_refused": "audit.prompt_refused",
    "prompt_adult": "audit.prompt_adult",
    "image_refused": "audit.image_refused",
    "image_flagged": "audit.image_flagged",
    "daily_limit": "audit.daily_limit",
    "banned_refused": "audit.banned_refused",
    "ban": "audit.ban",
    "unban": "audit.unban",
    "limit": "audit.limit",
    "limit_cleared": "audit.limit_cleared",
    "pause": "audit.pause",
    "resume": "audit.resume",
    "policy": "audit.policy",
    "cancel": "audit.cancel",
    "delete": "audit.delete",
}
RULE_KEYS = {"banned": "audit.rule.banned", "nsfw": "audit.rule.nsfw", "minors": "audit.rule.minors"}
FIELD_KEYS = {
    "banned_terms": "moderation.field.banned_terms",
    "nsfw_terms": "moderation.field.nsfw_terms",
    "nsfw_action": "moderation.field.nsfw_action",
    "flagged_images": "moderation.field.flagged_images",
    "daily_limit": "moderation.field.daily_limit",
}
CHOICE_KEYS = {
    "age_restricted": "moderation.choice.age_restricted",
    "refuse": "moderation.choice.refuse",
    "withhold": "moderation.choice.withhold",
    "spoiler": "moderation.choice.spoiler",
}
"""The words for the values of ``nsfw_action`` and ``flagged_images``."""


def limit_text(limit: int, texts: Texts = ENGLISH) -> str:
    """A daily image limit in words ("20 images a day", "no limit")."""
    return texts("limit.images", count=limit) if limit else texts("limit.none")


def audit_embed(
    entries: Sequence[AuditEntry],
    *,
    page: int,
    more: bool,
    member: discord.abc.User | None,
    texts: Texts = ENGLISH,
) -> discord.Embed:
    """One page of the audit log, newest first (``more``: older entries follow)."""
    title = texts("audit.title", page=page)
    if member is not None:
        title += texts("audit.title_member", name=render.shorten(member.display_name, 40))
    lines = [audit_line(entry, texts) for entry in entries] or [texts("audit.empty")]
    embed = discord.Embed(title=title, description=render.shorten_lines(lines, EMBED_LIMIT))
    if more:
        embed.set_footer(text=texts("audit.more", page=page + 1))
    return embed


def audit_line(entry: AuditEntry, texts: Texts = ENGLISH) -> str:
    """``<time> <what happened> · #<job>``."""
    detail = entry.detail
    values: dict[str, Any] = {
        # An API key's decisions name the key (it has no Discord id)
        "actor": detail.get("via") or _member(entry.actor_discord_id, texts),
        "target": _member(entry.target_discord_id, texts),
    }
    action = entry.action
    if action == "prompt_refused":
        rule = RULE_KEYS.get(str(detail.get("rule")))
        values["why"] = texts(rule, term=detail.get("term") or "") if rule else ""
        values["prompt"] = _prompt(detail)
    elif action == "prompt_adult":
        values["term"] = detail.get("term") or ""
    elif action == "image_refused":
        values["image"] = detail.get("image", "?")
    elif action == "image_flagged":
        values["images"] = ", ".join(str(number) for number in detail.get("images", ()))
    elif action == "daily_limit":
        values["limit"] = limit_text(int(detail.get("limit", 0)), texts)
    elif action == "ban":
        values["reason"] = render.shorten(str(detail.get("reason", "")), 200)
    elif action == "limit":
        limit = detail.get("limit")
        if limit is None:
            action = "limit_cleared"
        else:
            values["limit"] = limit_text(int(limit), texts)
    elif action == "policy":
        values["changes"] = policy_changes(detail.get("changes", {}), texts)
    elif action in ("cancel", "delete"):
        values["prompt"] = _prompt(detail)
    key = ACTION_KEYS.get(action)
    said = texts(key, **values) if key else f"{action} {values['actor']}"
    when = f"<t:{int(entry.created_at.timestamp())}:f>"
    job = f" · #{entry.job_id}" if entry.job_id is not None else ""
    return f"{when} {said}{job}"


def policy_changes(changes: dict[str, Any], texts: Texts = ENGLISH) -> str:
    """What changed in the content rules, as a line lists it."""
    parts = []
    for field, change in changes.items():
        name = texts(FIELD_KEYS[field]) if field in FIELD_KEYS else field
        if isinstance(change, dict):
            added = [f"+{term}" for term in change.get("added", ())[:TERMS_SHOWN]]
            removed = [f"−{term}" for term in change.get("removed", ())[:TERMS_SHOWN]]
            parts.append(f"{name} {' '.join(added + removed)}")
        elif field == "daily_limit":
            parts.append(f"{name}: {limit_text(int(change), texts)}")
        else:
            value = texts(CHOICE_KEYS[change]) if change in CHOICE_KEYS else str(change)
            parts.append(f"{name}: {value}")
    return render.shorten("; ".join(parts), 600)


def _member(discord_id: int | None, texts: Texts) -> str:
    return f"<@{discord_id}>" if discord_id is not None else texts("audit.nanke")


def _prompt(detail: dict[str, Any]) -> str:
    return render.shorten(str(detail.get("prompt", "")), PROMPT_CHARS).replace("`", "'")
