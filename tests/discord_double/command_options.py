"""Slash command options as Discord would send them, typed from the schema the bot synced."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .commands import SUB_COMMAND, SUB_COMMAND_GROUP
from .messages import MessageStore
from .models import Channel, Guild, Role, User, World
from .payloads import attachment_payload, member_payload, role_payload, user_payload
from .recording import UploadedFile

STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = range(3, 12)


@dataclass
class OptionFile:
    """A file a user attaches to an ``ATTACHMENT`` option."""

    filename: str
    data: bytes = field(repr=False)
    content_type: str | None = None


class Resolver:
    """Collects the ``resolved`` map (users, members, roles, channels, attachments) of an interaction."""

    def __init__(
        self, world: World, guild: Guild, channel: Channel, messages: MessageStore, cdn_base: str
    ) -> None:
        self._world = world
        self._guild = guild
        self._channel = channel
        self._messages = messages
        self._cdn_base = cdn_base
        self.resolved: dict[str, dict[str, Any]] = {}

    def _add(self, kind: str, key: int, payload: dict[str, Any]) -> str:
        self.resolved.setdefault(kind, {})[str(key)] = payload
        return str(key)

    def user(self, ref: Any) -> str:
        user = self._world.user(ref)
        member = self._guild.members.get(user.id)
        if member is not None:
            data = member_payload(self._guild, member, channel_id=self._channel.id, with_permissions=True)
            del data["user"]
            self._add("members", user.id, data)
        return self._add("users", user.id, user_payload(user))

    def role(self, ref: Any) -> str:
        role = self._world.role(self._guild, ref)
        return self._add("roles", role.id, role_payload(role))

    def channel(self, ref: Any) -> str:
        channel = self._world.channel(ref, self._guild)
        data = {
            "id": str(channel.id),
            "name": channel.name,
            "type": channel.type,
            "parent_id": str(channel.parent_id) if channel.parent_id else None,
            "nsfw": channel.nsfw,
            "permissions": str(self._guild.permissions_for(self._world.bot.id, channel.id)),
        }
        return self._add("channels", channel.id, data)

    def mentionable(self, ref: Any) -> str:
        if isinstance(ref, Role):
            return self.role(ref)
        if isinstance(ref, User):
            return self.user(ref)
        try:
            return self.user(ref)
        except KeyError:
            return self.role(ref)

    def attachment(self, ref: Any) -> str:
        if not isinstance(ref, OptionFile):
            raise TypeError(f"an attachment option takes an OptionFile, not {ref!r}")
        stored = self._messages.store_upload(
            UploadedFile("files[0]", ref.filename, ref.content_type, ref.data)
        )
        return self._add(
            "attachments", stored.id, attachment_payload(stored, self._cdn_base, self._channel.id)
        )


def build_options(
    command: Mapping[str, Any],
    values: Mapping[str, Any],
    *,
    subcommand: str | None,
    focused: str | None,
    resolver: Resolver,
) -> list[dict[str, Any]]:
    """``data.options`` for ``values``; ``subcommand`` is ``"sub"`` or ``"group sub"``. Unknown
    names, missing required options, values outside choices or bounds raise ``ValueError``
    (a user could not send them), except for the ``focused`` one of an autocomplete."""
    schema: list[Mapping[str, Any]] = list(command.get("options") or [])
    wrappers: list[Mapping[str, Any]] = []
    for part in (subcommand or "").split():
        found = _named(schema, part, command["name"])
        if found.get("type") not in (SUB_COMMAND, SUB_COMMAND_GROUP):
            raise ValueError(f"{part!r} is not a subcommand of /{command['name']}")
        wrappers.append(found)
        schema = list(found.get("options") or [])
    if any(o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in schema):
        names = [o["name"] for o in schema]
        raise ValueError(f"/{command['name']} needs a subcommand, one of {names}")
    options = _leaf_options(schema, values, focused, resolver, command["name"])
    for wrapper in reversed(wrappers):
        options = [{"name": wrapper["name"], "type": wrapper["type"], "options": options}]
    return options


def _named(schema: list[Mapping[str, Any]], name: str, command: str) -> Mapping[str, Any]:
    for option in schema:
        if option.get("name") == name:
            return option
    raise ValueError(f"/{command} has no option {name!r}; it has {[o.get('name') for o in schema]}")


def _leaf_options(
    schema: list[Mapping[str, Any]],
    values: Mapping[str, Any],
    focused: str | None,
    resolver: Resolver,
    command: str,
) -> list[dict[str, Any]]:
    options: list[dict[str, Any]] = []
    for name, value in values.items():
        option = _named(schema, name, command)
        entry: dict[str, Any] = {"name": name, "type": option["type"]}
        if name == focused:
            entry["value"] = value
            entry["focused"] = True
        else:
            entry["value"] = _typed_value(option, value, resolver)
        options.append(entry)
    if focused is None:
        missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
        if missing:
            raise ValueError(f"/{command} is missing required options {missing}")
    elif focused not in values:
        raise ValueError(f"the focused option {focused!r} needs a value (the text typed so far)")
    return options


def _typed_value(option: Mapping[str, Any], value: Any, resolver: Resolver) -> Any:
    kind = option["type"]
    references = {
        USER: resolver.user,
        CHANNEL: resolver.channel,
        ROLE: resolver.role,
        MENTIONABLE: resolver.mentionable,
        ATTACHMENT: resolver.attachment,
    }
    if kind in references:
        return references[kind](value)
    converted = _scalar(kind, value, option["name"])
    _check_bounds(option, converted)
    return converted


def _scalar(kind: int, value: Any, name: str) -> Any:
    if kind == STRING and isinstance(value, str):
        return value
    if kind == INTEGER and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == NUMBER and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if kind == BOOLEAN and isinstance(value, bool):
        return value
    raise ValueError(f"option {name!r} (type {kind}) cannot take {value!r}")


def _check_bounds(option: Mapping[str, Any], value: Any) -> None:
    name = option["name"]
    choices = option.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise ValueError(f"option {name!r}: {value!r} is not one of its choices")
    if isinstance(value, str):
        if len(value) < option.get("min_length", 0) or len(value) > option.get("max_length", 6000):
            raise ValueError(f"option {name!r}: length {len(value)} is out of bounds")
        return
    low, high = option.get("min_value"), option.get("max_value")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"option {name!r}: {value!r} is outside [{low}, {high}]")
