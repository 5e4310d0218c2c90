"""Interaction callbacks and the interaction webhook (follow-ups, ``@original``), with token expiry.

Timing uses the double's clock (real time plus what the test advanced): a callback later than
``callback_window`` (3 s) after the interaction was sent gets 404 ``Unknown interaction``
(10062); a webhook call later than ``token_lifetime`` (15 min) gets 401 ``Invalid Webhook
Token`` (50027). A token expired with ``DiscordDouble.expire_token`` gets both answers at once.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .interactions import (
    ALLOWED_CALLBACKS,
    APPLICATION_COMMAND,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE_MESSAGE,
    UPDATE_MESSAGE,
    InteractionRecord,
    InteractionResponse,
)
from .messages import LOADING, StoredMessage
from .rest import ApiCall, ApiError, ApiRoute, json_response, no_content, unknown

CHAT_INPUT_COMMAND_MESSAGE = 20

INVALID_WEBHOOK_TOKEN = (401, 50027, "Invalid Webhook Token")


async def interaction_callback(call: ApiCall) -> web.Response:
    double = call.double
    record = double.interactions.get(call.snowflake("interaction_id"))
    if record is None or record.token != call.params["interaction_token"]:
        raise unknown("interaction", 10062)
    record.requests.append(call.record)
    if record.acknowledged:
        raise ApiError(400, 40060, "Interaction has already been acknowledged.")
    if record.token_expired or double.clock.now() - record.created_at > double.callback_window:
        raise unknown("interaction", 10062)
    callback_type = call.json.get("type")
    data: dict[str, Any] = call.json.get("data") or {}
    allowed = ALLOWED_CALLBACKS[record.type]
    if record.source_message_id is None:
        allowed = allowed - {DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE}
    if callback_type not in allowed:
        raise ApiError(400, 50035, "Invalid Form Body", errors={"type": f"{callback_type} is not valid here"})
    message = await _apply_callback(call, record, callback_type, data)
    record.response = InteractionResponse(
        type=callback_type,
        data=data,
        request=call.record,
        message_id=message.id if message else None,
    )
    double.notifier.notify()
    if not call.flag("with_response"):
        return no_content()
    return json_response(_callback_answer(call, record, callback_type, message))


async def _apply_callback(
    call: ApiCall,
    record: InteractionRecord,
    callback_type: int,
    data: dict[str, Any],
) -> StoredMessage | None:
    double = call.double
    if callback_type in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE):
        body = data if callback_type == CHANNEL_MESSAGE else {"flags": data.get("flags", 0)}
        message = double.message_store.create(
            channel_id=record.channel_id,
            guild_id=record.guild_id,
            author=double.world.bot,
            body=body,
            files=call.body.files if callback_type == CHANNEL_MESSAGE else [],
            webhook_id=double.world.application_id,
            application_id=double.world.application_id,
            interaction_id=record.id,
            interaction_metadata=record.metadata(),
            type=CHAT_INPUT_COMMAND_MESSAGE if record.type == APPLICATION_COMMAND else 0,
            flags=LOADING if callback_type == DEFERRED_CHANNEL_MESSAGE else 0,
        )
        record.original_message_id = message.id
        await double.publish("MESSAGE_CREATE", message)
        return message
    if callback_type in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
        message = double.message_store.get(record.source_message_id or 0)
        if message is None or message.deleted:
            raise unknown("Message", 10008)
        record.original_message_id = message.id
        if callback_type == UPDATE_MESSAGE:
            call.check_edit_spacing(message)
            double.message_store.edit(message, data, call.body.files)
            await double.publish("MESSAGE_UPDATE", message)
        return message
    return None


def _callback_answer(
    call: ApiCall,
    record: InteractionRecord,
    callback_type: int,
    message: StoredMessage | None,
) -> dict[str, Any]:
    """``with_response`` body: ``{"interaction": ..., "resource": ...}``."""
    interaction: dict[str, Any] = {
        "id": str(record.id),
        "type": record.type,
        "activity_instance_id": None,
        "response_message_id": str(message.id) if message else None,
        "response_message_loading": bool(message and message.loading),
        "response_message_ephemeral": bool(message and message.ephemeral),
    }
    resource: dict[str, Any] = {"type": callback_type}
    if message is not None:
        resource["message"] = call.double.render(message)
    return {"interaction": interaction, "resource": resource}


def _webhook_interaction(call: ApiCall) -> InteractionRecord:
    double = call.double
    if call.snowflake("webhook_id") != double.world.application_id:
        raise unknown("Webhook", 10015)
    record = double.interaction_by_token(call.params["webhook_token"])
    if record is None:
        raise ApiError(*INVALID_WEBHOOK_TOKEN)
    record.requests.append(call.record)
    if record.token_expired or double.clock.now() - record.created_at > double.token_lifetime:
        raise ApiError(*INVALID_WEBHOOK_TOKEN)
    if not record.acknowledged:
        raise unknown("Webhook", 10015)
    return record


def _webhook_message(call: ApiCall, record: InteractionRecord) -> StoredMessage:
    ref = call.params["message_id"]
    if ref == "@original":
        message_id = record.original_message_id
    else:
        message_id = call.snowflake("message_id")
        if message_id not in (record.original_message_id, *record.followup_ids):
            message_id = None
    message = call.double.message_store.get(message_id) if message_id else None
    if message is None or message.deleted:
        raise unknown("Message", 10008)
    return message


async def execute_webhook(call: ApiCall) -> web.Response:
    """A follow-up. With ``followup_replaces_deferred``, the first one after a deferred
    (type 5) response fills the loading message, keeping its ephemerality, as Discord does."""
    double = call.double
    record = _webhook_interaction(call)
    original = record.original
    if double.followup_replaces_deferred and original is not None and original.loading:
        call.double.message_store.edit(original, call.json, call.body.files)
        message = original
        await double.publish("MESSAGE_UPDATE", message)
    else:
        message = double.message_store.create(
            channel_id=record.channel_id,
            guild_id=record.guild_id,
            author=double.world.bot,
            body=call.json,
            files=call.body.files,
            webhook_id=double.world.application_id,
            application_id=double.world.application_id,
            interaction_id=record.id,
            interaction_metadata=record.metadata(original_response_message_id=record.original_message_id),
        )
        await double.publish("MESSAGE_CREATE", message)
    record.followup_ids.append(message.id)
    double.notifier.notify()
    return json_response(double.render(message)) if call.flag("wait") else no_content()


async def get_webhook_message(call: ApiCall) -> web.Response:
    message = _webhook_message(call, _webhook_interaction(call))
    return json_response(call.double.render(message))


async def edit_webhook_message(call: ApiCall) -> web.Response:
    message = _webhook_message(call, _webhook_interaction(call))
    call.check_edit_spacing(message)
    call.double.message_store.edit(message, call.json, call.body.files)
    await call.double.publish("MESSAGE_UPDATE", message)
    return json_response(call.double.render(message))


async def delete_webhook_message(call: ApiCall) -> web.Response:
    message = _webhook_message(call, _webhook_interaction(call))
    call.double.message_store.delete(message)
    await call.double.publish("MESSAGE_DELETE", message)
    return no_content()


_WEBHOOK = "/webhooks/{webhook_id}/{webhook_token}"

ROUTES: list[ApiRoute] = [
    ApiRoute(
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        interaction_callback,
        bot_auth=False,
    ),
    ApiRoute("POST", _WEBHOOK, execute_webhook, bot_auth=False),
    ApiRoute("GET", _WEBHOOK + "/messages/{message_id}", get_webhook_message, bot_auth=False),
    ApiRoute("PATCH", _WEBHOOK + "/messages/{message_id}", edit_webhook_message, bot_auth=False),
    ApiRoute("DELETE", _WEBHOOK + "/messages/{message_id}", delete_webhook_message, bot_auth=False),
]
