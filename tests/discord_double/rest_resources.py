"""Bot-token REST routes: users, application, gateway, commands, channels, messages, guilds."""

from __future__ import annotations

from aiohttp import web

from .commands import command_problems
from .messages import StoredMessage
from .models import ATTACH_FILES, MANAGE_MESSAGES, SEND_MESSAGES, VIEW_CHANNEL, Channel, Guild
from .payloads import (
    application_payload,
    channel_payload,
    client_user_payload,
    guild_payload,
    member_payload,
    role_payload,
    user_payload,
)
from .rest import ApiCall, ApiError, ApiRoute, json_response, no_content, unknown

# Users, application, gateway


async def get_me(call: ApiCall) -> web.Response:
    return json_response(client_user_payload(call.double.world.bot))


async def get_user(call: ApiCall) -> web.Response:
    user = call.double.world.users.get(call.snowflake("user_id"))
    if user is None:
        raise unknown("User", 10013)
    return json_response(user_payload(user))


async def get_application(call: ApiCall) -> web.Response:
    return json_response(application_payload(call.double.world))


async def get_gateway(call: ApiCall) -> web.Response:
    return json_response({"url": call.double.gateway_url})


async def get_gateway_bot(call: ApiCall) -> web.Response:
    limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
    return json_response({"url": call.double.gateway_url, "shards": 1, "session_start_limit": limit})


# Application commands (global when the route has no guild_id)


def _scope(call: ApiCall) -> int | None:
    if call.snowflake("application_id") != call.double.world.application_id:
        raise unknown("Application", 10002)
    if "guild_id" not in call.params:
        return None
    return _guild(call).id


def _check_commands(commands: list[dict]) -> None:
    problems = [problem for command in commands for problem in command_problems(command)]
    if problems:
        raise ApiError(400, 50035, "Invalid Form Body", errors=problems)


async def list_commands(call: ApiCall) -> web.Response:
    return json_response(call.double.commands.list(_scope(call)))


async def overwrite_commands(call: ApiCall) -> web.Response:
    scope = _scope(call)
    commands = call.body.json if isinstance(call.body.json, list) else []
    _check_commands(commands)
    return json_response(call.double.commands.overwrite(scope, commands))


async def create_command(call: ApiCall) -> web.Response:
    scope = _scope(call)
    _check_commands([call.json])
    stored, created = call.double.commands.upsert(scope, call.json)
    return json_response(stored, status=201 if created else 200)


async def get_command(call: ApiCall) -> web.Response:
    command = call.double.commands.get(_scope(call), call.snowflake("command_id"))
    if command is None:
        raise unknown("application command", 10063)
    return json_response(command)


async def edit_command(call: ApiCall) -> web.Response:
    command = call.double.commands.edit(_scope(call), call.snowflake("command_id"), call.json)
    if command is None:
        raise unknown("application command", 10063)
    return json_response(command)


async def delete_command(call: ApiCall) -> web.Response:
    if not call.double.commands.delete(_scope(call), call.snowflake("command_id")):
        raise unknown("application command", 10063)
    return no_content()


# Channels and messages


def _guild(call: ApiCall) -> Guild:
    guild = call.double.world.guilds.get(call.snowflake("guild_id"))
    if guild is None:
        raise unknown("Guild", 10004)
    return guild


def _channel(call: ApiCall) -> tuple[Guild, Channel]:
    channel_id = call.snowflake("channel_id")
    guild = call.double.world.guild_of_channel(channel_id)
    if guild is None:
        raise unknown("Channel", 10003)
    return guild, guild.channels[channel_id]


def _message(call: ApiCall, channel: Channel) -> StoredMessage:
    message = call.double.message_store.get(call.snowflake("message_id"))
    if message is None or message.deleted or message.channel_id != channel.id or message.ephemeral:
        raise unknown("Message", 10008)
    return message


def _require(guild: Guild, channel: Channel, call: ApiCall, permissions: int) -> None:
    granted = guild.permissions_for(call.double.world.bot.id, channel.id)
    if granted & permissions != permissions:
        raise ApiError(403, 50013, "Missing Permissions")


async def get_channel(call: ApiCall) -> web.Response:
    _, channel = _channel(call)
    return json_response(channel_payload(channel))


def _query_int(call: ApiCall, name: str) -> int | None:
    raw = call.request.query.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, 50035, "Invalid Form Body", errors={name: "Value is not int."}) from None


async def list_messages(call: ApiCall) -> web.Response:
    _, channel = _channel(call)
    limit = _query_int(call, "limit")
    limit = 50 if limit is None else limit
    if not 1 <= limit <= 100:
        raise ApiError(400, 50035, "Invalid Form Body", errors={"limit": "Must be between 1 and 100."})
    messages = call.double.message_store.history(
        channel.id,
        limit=limit,
        before=_query_int(call, "before"),
        after=_query_int(call, "after"),
        around=_query_int(call, "around"),
    )
    return json_response([call.double.render(m) for m in messages])


async def create_message(call: ApiCall) -> web.Response:
    guild, channel = _channel(call)
    body = call.json
    needed = VIEW_CHANNEL | SEND_MESSAGES | (ATTACH_FILES if call.body.files else 0)
    _require(guild, channel, call, needed)
    if not any(body.get(key) for key in ("content", "embeds", "components", "sticker_ids", "poll")) and not (
        call.body.files
    ):
        raise ApiError(400, 50006, "Cannot send an empty message")
    message = call.double.message_store.create(
        channel_id=channel.id,
        guild_id=guild.id,
        author=call.double.world.bot,
        body=body,
        files=call.body.files,
    )
    await call.double.publish("MESSAGE_CREATE", message)
    return json_response(call.double.render(message))


async def get_message(call: ApiCall) -> web.Response:
    _, channel = _channel(call)
    return json_response(call.double.render(_message(call, channel)))


async def edit_message(call: ApiCall) -> web.Response:
    _, channel = _channel(call)
    message = _message(call, channel)
    if message.author.id != call.double.world.bot.id and set(call.json) - {"flags"}:
        raise ApiError(403, 50005, "Cannot edit a message authored by another user")
    call.check_edit_spacing(message)
    call.double.message_store.edit(message, call.json, call.body.files)
    await call.double.publish("MESSAGE_UPDATE", message)
    return json_response(call.double.render(message))


async def delete_message(call: ApiCall) -> web.Response:
    guild, channel = _channel(call)
    message = _message(call, channel)
    if message.author.id != call.double.world.bot.id:
        _require(guild, channel, call, MANAGE_MESSAGES)
    call.double.message_store.delete(message)
    await call.double.publish("MESSAGE_DELETE", message)
    return no_content()


async def trigger_typing(call: ApiCall) -> web.Response:
    _channel(call)
    return no_content()


# Guilds


async def get_guild(call: ApiCall) -> web.Response:
    guild = _guild(call)
    payload = guild_payload(guild)
    if call.flag("with_counts"):
        payload.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
    return json_response(payload)


async def list_guild_channels(call: ApiCall) -> web.Response:
    return json_response([channel_payload(c) for c in _guild(call).channels.values()])


async def list_roles(call: ApiCall) -> web.Response:
    return json_response([role_payload(r) for r in _guild(call).roles.values()])


async def get_member(call: ApiCall) -> web.Response:
    guild = _guild(call)
    member = guild.members.get(call.snowflake("user_id"))
    if member is None:
        raise unknown("Member", 10007)
    return json_response(member_payload(guild, member))


_APP = "/applications/{application_id}"
_MESSAGE = "/channels/{channel_id}/messages/{message_id}"

ROUTES: list[ApiRoute] = [
    ApiRoute("GET", "/users/@me", get_me),
    ApiRoute("GET", "/users/{user_id}", get_user),
    ApiRoute("GET", "/oauth2/applications/@me", get_application),
    ApiRoute("GET", "/applications/@me", get_application),
    ApiRoute("GET", "/gateway", get_gateway),
    ApiRoute("GET", "/gateway/bot", get_gateway_bot),
    *(
        route
        for prefix in (_APP, _APP + "/guilds/{guild_id}")
        for route in (
            ApiRoute("GET", prefix + "/commands", list_commands),
            ApiRoute("PUT", prefix + "/commands", overwrite_commands),
            ApiRoute("POST", prefix + "/commands", create_command),
            ApiRoute("GET", prefix + "/commands/{command_id}", get_command),
            ApiRoute("PATCH", prefix + "/commands/{command_id}", edit_command),
            ApiRoute("DELETE", prefix + "/commands/{command_id}", delete_command),
        )
    ),
    ApiRoute("GET", "/channels/{channel_id}", get_channel),
    ApiRoute("GET", "/channels/{channel_id}/messages", list_messages),
    ApiRoute("POST", "/channels/{channel_id}/messages", create_message),
    ApiRoute("GET", _MESSAGE, get_message),
    ApiRoute("PATCH", _MESSAGE, edit_message),
    ApiRoute("DELETE", _MESSAGE, delete_message),
    ApiRoute("POST", "/channels/{channel_id}/typing", trigger_typing),
    ApiRoute("GET", "/guilds/{guild_id}", get_guild),
    ApiRoute("GET", "/guilds/{guild_id}/channels", list_guild_channels),
    ApiRoute("GET", "/guilds/{guild_id}/roles", list_roles),
    ApiRoute("GET", "/guilds/{guild_id}/members/{user_id}", get_member),
]
