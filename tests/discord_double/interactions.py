"""INTERACTION_CREATE payloads, and the record through which a test follows one interaction."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .messages import MessageStore, StoredMessage
from .models import Channel, Guild, User, World
from .payloads import channel_payload, member_payload, user_payload
from .recording import Notifier, RecordedRequest

# Interaction types.
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

# Callback (response) types.
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9

ALLOWED_CALLBACKS: dict[int, frozenset[int]] = {
    APPLICATION_COMMAND: frozenset({CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL}),
    MESSAGE_COMPONENT: frozenset(
        {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE, MODAL}
    ),
    AUTOCOMPLETE: frozenset({AUTOCOMPLETE_RESULT}),
    MODAL_SUBMIT: frozenset(
        {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE}
    ),
}

DEFAULT_TIMEOUT = 5.0


def interaction_payload(
    *,
    interaction_id: int,
    token: str,
    type: int,
    world: World,
    guild: Guild,
    channel: Channel,
    user: User,
    data: dict[str, Any],
    attachment_size_limit: int,
    locale: str,
) -> dict[str, Any]:
    """A guild INTERACTION_CREATE as Discord sends it (guild install, guild context)."""
    member = guild.members.get(user.id)
    if member is None:
        raise ValueError(f"{user.username} is not a member of {guild.name}")
    return {
        "id": str(interaction_id),
        "application_id": str(world.application_id),
        "type": type,
        "token": token,
        "version": 1,
        "data": data,
        "guild_id": str(guild.id),
        "guild": {"id": str(guild.id), "locale": guild.locale, "features": []},
        "channel_id": str(channel.id),
        "channel": {
            **channel_payload(channel),
            "permissions": str(guild.permissions_for(user.id, channel.id)),
        },
        "member": member_payload(guild, member, channel_id=channel.id, with_permissions=True),
        "app_permissions": str(guild.permissions_for(world.bot.id, channel.id)),
        "locale": locale,
        "guild_locale": guild.locale,
        "entitlements": [],
        "entitlement_sku_ids": [],
        "authorizing_integration_owners": {"0": str(guild.id)},
        "context": 0,
        "attachment_size_limit": attachment_size_limit,
    }


def modal_submit_components(
    components: Sequence[Mapping[str, Any]],
    values: Mapping[str, str | Sequence[str]],
) -> list[dict[str, Any]]:
    """MODAL_SUBMIT ``data.components`` for the modal the bot sent, filled with ``values``
    (custom_id -> text, or a list for selects); action rows and labels keep their nesting."""
    submitted: list[dict[str, Any]] = []
    for component in components:
        kind = component["type"]
        if kind == 1:
            submitted.append(
                {"type": 1, "components": modal_submit_components(component["components"], values)}
            )
        elif kind == 18:
            inner = modal_submit_components([component["component"]], values)
            submitted.append({"type": 18, "id": component.get("id"), "component": inner[0]})
        elif kind == 4:
            custom_id = component["custom_id"]
            text = str(values.get(custom_id, component.get("value") or ""))
            if component.get("required", True) and not text:
                raise ValueError(f"text input {custom_id!r} is required")
            submitted.append({"type": 4, "custom_id": custom_id, "value": text})
        elif "custom_id" in component:
            chosen = values.get(component["custom_id"], [])
            submitted.append({"type": kind, "custom_id": component["custom_id"], "values": list(chosen)})
    return submitted


def modal_custom_ids(components: Sequence[Mapping[str, Any]]) -> set[str]:
    found: set[str] = set()
    for component in components:
        if "custom_id" in component:
            found.add(component["custom_id"])
        found |= modal_custom_ids(component.get("components", []))
        if "component" in component:
            found |= modal_custom_ids([component["component"]])
    return found


@dataclass
class InteractionResponse:
    """The bot's callback: its type (4, 5, 6, 7, 8 or 9), ``data``, and the request itself."""

    type: int
    data: dict[str, Any]
    request: RecordedRequest
    message_id: int | None


class InteractionRecord:
    """One interaction the double sent, and everything the bot did with its token."""

    def __init__(
        self,
        payload: dict[str, Any],
        *,
        created_at: float,
        user: User,
        store: MessageStore,
        notifier: Notifier,
    ) -> None:
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.guild_id = int(payload["guild_id"])
        self.channel_id = int(payload["channel_id"])
        self.user = user
        self.source_message_id = int(payload["message"]["id"]) if "message" in payload else None
        self.created_at = created_at
        self.token_expired = False  # set by ``DiscordDouble.expire_token``; the clock also expires it
        self.response: InteractionResponse | None = None
        self.original_message_id: int | None = None
        self.followup_ids: list[int] = []
        self.requests: list[RecordedRequest] = []
        self._store = store
        self._notifier = notifier

    def __repr__(self) -> str:
        answered = self.response.type if self.response else None
        return f"<InteractionRecord id={self.id} type={self.type} response={answered}>"

    @property
    def name(self) -> str | None:
        return self.payload["data"].get("name")

    @property
    def acknowledged(self) -> bool:
        return self.response is not None

    @property
    def original(self) -> StoredMessage | None:
        """The message ``@original`` refers to: the response message, or for deferred/updated
        component interactions the message the component is on."""
        return self._store.get(self.original_message_id) if self.original_message_id else None

    @property
    def followups(self) -> list[StoredMessage]:
        return [m for m in (self._store.get(i) for i in self.followup_ids) if m is not None]

    @property
    def modal(self) -> dict[str, Any] | None:
        """The modal the bot opened (callback type 9), if it did."""
        return self.response.data if self.response and self.response.type == MODAL else None

    @property
    def choices(self) -> list[dict[str, Any]] | None:
        """Autocomplete choices the bot offered (callback type 8), if it did."""
        if self.response and self.response.type == AUTOCOMPLETE_RESULT:
            return list(self.response.data.get("choices") or [])
        return None

    async def wait_for_response(self, timeout: float = DEFAULT_TIMEOUT) -> InteractionResponse:
        return await self._notifier.wait_for(lambda: self.response, timeout, f"a response to {self!r}")

    async def wait_for_followups(
        self, count: int = 1, timeout: float = DEFAULT_TIMEOUT
    ) -> list[StoredMessage]:
        followups = await self._notifier.wait_for(
            lambda: self.followups if len(self.followup_ids) >= count else None,
            timeout,
            f"{count} follow-up(s) to {self!r}",
        )
        return followups

    async def wait_for_original(
        self,
        predicate: Callable[[StoredMessage], bool] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> StoredMessage:
        """The original response once it is no longer loading (and matches ``predicate``)."""

        def ready() -> StoredMessage | None:
            message = self.original
            if message is None or message.loading or (predicate is not None and not predicate(message)):
                return None
            return message

        return await self._notifier.wait_for(ready, timeout, f"the original response of {self!r}")

    def metadata(self, **extra: Any) -> dict[str, Any]:
        """``interaction_metadata`` for messages created with this interaction's token."""
        meta: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "user": user_payload(self.user),
            "authorizing_integration_owners": {"0": str(self.guild_id)},
        }
        if self.type == APPLICATION_COMMAND:
            meta["name"] = self.name
            meta["command_type"] = self.payload["data"].get("type", 1)
        if self.source_message_id is not None:
            meta["interacted_message_id"] = str(self.source_message_id)
        meta.update({key: str(value) for key, value in extra.items() if value is not None})
        return meta
