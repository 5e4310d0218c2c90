"""JSON payloads in the shapes Discord's API v10 sends them."""

from __future__ import annotations

from typing import Any

from .clock import FakeClock
from .messages import StoredAttachment, StoredMessage
from .models import Channel, Guild, Member, Role, User, World


def user_payload(user: User) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(user.id),
        "username": user.username,
        "discriminator": "0",
        "global_name": user.global_name,
        "avatar": user.avatar,
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
        "primary_guild": None,
    }
    if user.bot:
        payload["bot"] = True
    return payload


def client_user_payload(user: User) -> dict[str, Any]:
    """``GET /users/@me`` and READY's ``user``."""
    return {**user_payload(user), "verified": True, "mfa_enabled": False, "locale": "en-US", "email": None}


def member_payload(
    guild: Guild, member: Member, *, channel_id: int | None = None, with_permissions: bool = False
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "user": user_payload(member.user),
        "roles": [str(r) for r in member.role_ids],
        "nick": member.nick,
        "avatar": None,
        "banner": None,
        "joined_at": member.joined_at,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "flags": 0,
        "communication_disabled_until": None,
    }
    if with_permissions:
        payload["permissions"] = str(guild.permissions_for(member.user.id, channel_id))
    return payload


def role_payload(role: Role) -> dict[str, Any]:
    return {
        "id": str(role.id),
        "name": role.name,
        "permissions": str(role.permissions),
        "position": role.position,
        "color": role.color,
        "colors": {"primary_color": role.color, "secondary_color": None, "tertiary_color": None},
        "hoist": role.hoist,
        "managed": role.managed,
        "mentionable": role.mentionable,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
    }


def channel_payload(channel: Channel) -> dict[str, Any]:
    return {
        "id": str(channel.id),
        "guild_id": str(channel.guild_id),
        "name": channel.name,
        "type": channel.type,
        "position": channel.position,
        "parent_id": str(channel.parent_id) if channel.parent_id else None,
        "topic": channel.topic,
        "nsfw": channel.nsfw,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
        "permission_overwrites": [
            {"id": str(o.id), "type": o.type, "allow": str(o.allow), "deny": str(o.deny)}
            for o in channel.overwrites
        ],
    }


def guild_payload(guild: Guild) -> dict[str, Any]:
    """``GET /guilds/{id}``: the guild without channels or members."""
    return {
        "id": str(guild.id),
        "name": guild.name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(guild.owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "premium_progress_bar_enabled": False,
        "preferred_locale": guild.locale,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "vanity_url_code": None,
        "features": [],
        "roles": [role_payload(r) for r in guild.roles.values()],
        "emojis": [],
        "stickers": [],
        "max_members": 500000,
        "max_video_channel_users": 25,
    }


def gateway_guild_payload(guild: Guild, world: World, *, with_members: bool) -> dict[str, Any]:
    """GUILD_CREATE: the full guild. Without the GUILD_MEMBERS intent only the bot's member
    is included, as Discord does."""
    members = [m for m in guild.members.values() if with_members or m.user.id == world.bot.id]
    return {
        **guild_payload(guild),
        "joined_at": guild.members[world.bot.id].joined_at,
        "large": False,
        "unavailable": False,
        "member_count": len(guild.members),
        "channels": [channel_payload(c) for c in guild.channels.values()],
        "members": [member_payload(guild, m) for m in members],
        "threads": [],
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def application_payload(world: World) -> dict[str, Any]:
    """``GET /oauth2/applications/@me``; the owner of the first guild owns the application."""
    owner = next((world.users[g.owner_id] for g in world.guilds.values()), world.bot)
    return {
        "id": str(world.application_id),
        "name": world.bot.username,
        "icon": None,
        "description": "",
        "summary": "",
        "type": None,
        "bot": user_payload(world.bot),
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": user_payload(owner),
        "team": None,
        "verify_key": "0" * 64,
        "flags": 0,
        "interactions_endpoint_url": None,
        "rpc_origins": [],
        "tags": [],
        "redirect_uris": [],
        "approximate_guild_count": len(world.guilds),
    }


def attachment_payload(attachment: StoredAttachment, cdn_base: str, channel_id: int) -> dict[str, Any]:
    url = f"{cdn_base}/attachments/{channel_id}/{attachment.id}/{attachment.filename}"
    payload: dict[str, Any] = {
        "id": str(attachment.id),
        "filename": attachment.filename,
        "size": attachment.size,
        "url": url,
        "proxy_url": url,
        "content_type": attachment.content_type,
        "description": attachment.description,
        "ephemeral": attachment.ephemeral,
        "flags": 0,
    }
    dimensions = attachment.dimensions
    if dimensions is not None:
        payload["width"], payload["height"] = dimensions
    return payload


def message_payload(message: StoredMessage, clock: FakeClock, cdn_base: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(message.id),
        "channel_id": str(message.channel_id),
        "author": user_payload(message.author),
        "content": message.content,
        "timestamp": clock.iso(message.timestamp),
        "edited_timestamp": clock.iso(message.edited_at) if message.edited_at is not None else None,
        "tts": message.tts,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [attachment_payload(a, cdn_base, message.channel_id) for a in message.attachments],
        "embeds": message.embeds,
        "components": message.components,
        "pinned": False,
        "type": message.type,
        "flags": message.flags,
    }
    if message.guild_id is not None:
        payload["guild_id"] = str(message.guild_id)
    optional = {
        "nonce": message.nonce,
        "webhook_id": str(message.webhook_id) if message.webhook_id else None,
        "application_id": str(message.application_id) if message.application_id else None,
        "interaction_metadata": message.interaction_metadata,
        "message_reference": message.message_reference,
    }
    payload.update({key: value for key, value in optional.items() if value is not None})
    return payload
