"""``DiscordDouble``: a loopback stand-in for Discord's REST API v10 and gateway."""

from __future__ import annotations

import logging
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from .clock import FakeClock, Snowflakes
from .command_options import Resolver, build_options
from .commands import CommandStore
from .faults import (
    DROP_AFTER,
    DROP_BEFORE,
    MESSAGE_WRITE_ROUTES,
    Chaos,
    Fault,
    FaultQueue,
    InjectedFault,
    Route,
)
from .gateway import INVALID_SESSION, RECONNECT, Gateway
from .interactions import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    DEFAULT_TIMEOUT,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    InteractionRecord,
    interaction_payload,
    modal_custom_ids,
    modal_submit_components,
)
from .messages import MessageStore, StoredMessage
from .models import Channel, Guild, Role, User, World
from .moments import Hold, MomentCallback, MomentHooks, RequestFilter
from .payloads import message_payload
from .recording import Notifier, RecordedRequest
from .rest import API_PREFIX, ApiRouter
from .rest_interactions import ROUTES as INTERACTION_ROUTES
from .rest_resources import ROUTES as RESOURCE_ROUTES

log = logging.getLogger(__name__)

T = TypeVar("T")

MIB = 1024 * 1024
LINK_BUTTON_STYLES = (5, 6)  # link and premium buttons never reach the bot

GuildRef = Guild | int | str | None
ChannelRef = Channel | int | str | None
UserRef = User | int | str | None
MessageRef = StoredMessage | int
InteractionRef = InteractionRecord | int | str


@dataclass
class EditViolation:
    """An edit that came sooner than ``min_edit_interval`` after the previous edit."""

    message_id: int
    elapsed: float
    required: float
    request: RecordedRequest


class DiscordDouble:
    """Discord's REST API v10 and gateway on ``127.0.0.1``, for a real discord.py client.

    Point a client at :attr:`api_base` and :attr:`gateway_url` (see ``fixtures.configure_discord_py``),
    inject interactions with :meth:`send_slash_command`, :meth:`click_button`, :meth:`submit_modal`,
    and inspect what the bot did with :meth:`requests`, :meth:`messages` and :meth:`wait_for`.
    Faults: :meth:`fail_next`, :meth:`drop_next`, :meth:`chaos` (logged in :attr:`injected_faults`),
    :meth:`expire_token`, :meth:`drop_gateway`; acting mid-call: :meth:`on_moment`, :meth:`hold`.
    """

    def __init__(
        self,
        *,
        world_factory: Callable[[FakeClock, Snowflakes], World] = World.default,
        bot_token: str | None = None,
        upload_limit: int = 10 * MIB,
        callback_window: float = 3.0,
        token_lifetime: float = 15 * 60.0,
        heartbeat_interval: float = 41.25,
        min_edit_interval: float | None = None,
        enforce_edit_interval: bool = False,
        followup_replaces_deferred: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.clock = FakeClock()
        self.snowflakes = Snowflakes(self.clock)
        self.world = world_factory(self.clock, self.snowflakes)
        self.bot_token = bot_token  # None: any token is accepted
        self.upload_limit = upload_limit
        self.callback_window = callback_window
        self.token_lifetime = token_lifetime
        self.heartbeat_interval = heartbeat_interval
        self.min_edit_interval = min_edit_interval
        self.enforce_edit_interval = enforce_edit_interval
        self.followup_replaces_deferred = followup_replaces_deferred
        self.host = host
        self.port = port

        self.notifier = Notifier()
        self.clock.on_advance(self.notifier.notify)
        self.message_store = MessageStore(self.clock, self.snowflakes)
        self.commands = CommandStore(self.world.application_id, self.snowflakes)
        self.faults = FaultQueue()
        self.chaos_policy: Chaos | None = None
        self.injected_faults: list[InjectedFault] = []
        self.internal_errors: list[Exception] = []
        self.moments = MomentHooks(self.internal_errors.append)
        self.gateway = Gateway(self)
        self.interactions: dict[int, InteractionRecord] = {}
        self.recorded: list[RecordedRequest] = []
        self.violations: list[EditViolation] = []
        self._router = ApiRouter(self, [*RESOURCE_ROUTES, *INTERACTION_ROUTES])
        self._runner: web.AppRunner | None = None

    # Lifecycle and addresses

    async def start(self) -> DiscordDouble:
        app = web.Application(client_max_size=1024 * MIB)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._router.handle)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._serve_attachment)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        log.info("discord double listening on %s", self.base_url)
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        self.moments.release_all()
        await self.gateway.close()
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> DiscordDouble:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``; attachments are served below it."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be: ``http://127.0.0.1:PORT/api/v10``."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must be: ``ws://127.0.0.1:PORT/gateway``."""
        return f"ws://{self.host}:{self.port}/gateway"

    def accepts(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bot "):
            return False
        return self.bot_token is None or authorization == f"Bot {self.bot_token}"

    # Recording and waiting

    def record_request(self, record: RecordedRequest) -> None:
        self.recorded.append(record)
        self.notifier.notify()

    def record_violation(self, message: StoredMessage, elapsed: float, request: RecordedRequest) -> None:
        assert self.min_edit_interval is not None
        log.warning("message %s edited %.3fs after its previous edit", message.id, elapsed)
        self.violations.append(EditViolation(message.id, elapsed, self.min_edit_interval, request))

    def requests(
        self,
        method: str | None = None,
        route: str | None = None,
        *,
        status: int | None = None,
    ) -> list[RecordedRequest]:
        """Recorded REST calls, oldest first; ``route`` is a template (``/channels/{id}/messages``,
        any placeholder names) or a concrete path."""
        return [
            r for r in self.recorded if r.matches(method, route) and (status is None or r.status == status)
        ]

    def unknown_requests(self) -> list[RecordedRequest]:
        """Calls that matched no route (answered 404 ``Unknown``)."""
        return [r for r in self.recorded if r.route is None]

    async def wait_for(
        self, predicate: Callable[[], T], timeout: float = DEFAULT_TIMEOUT, description: str = ""
    ) -> T:
        """Wait until ``predicate()`` is truthy and return it. It is re-checked whenever the
        double's state changes (a request, a gateway message, the clock); state only the client
        changes needs the client's own events."""
        return await self.notifier.wait_for(predicate, timeout, description)

    async def wait_for_request(
        self,
        method: str | None = None,
        route: str | None = None,
        *,
        count: int = 1,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> RecordedRequest:
        """The ``count``-th matching request, once it has been answered."""

        def found() -> RecordedRequest | None:
            done = [r for r in self.requests(method, route) if r.status is not None]
            done = [r for r in done if predicate is None or predicate(r)]
            return done[count - 1] if len(done) >= count else None

        return await self.wait_for(found, timeout, f"{count} x {method or '*'} {route or '*'}")

    def fail_next(
        self,
        method: str,
        route: str,
        *,
        status: int = 500,
        times: int = 1,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (and ``body``, else a
        Discord-style error; 429s carry ``Via`` and ``retry_after`` so discord.py retries)."""
        self.faults.add(Fault(method, route, status, body, dict(headers or {}), times))

    # Faults: dropped connections, chaos, and the log of what was injected

    def drop_next(self, method: str, route: str, *, after_apply: bool = False, times: int = 1) -> None:
        """Close the connection of the next ``times`` matching requests without answering:
        before applying them (nothing happens), or with ``after_apply`` once they are applied
        (the message exists, the callback is accepted, but the client never hears so)."""
        drop = DROP_AFTER if after_apply else DROP_BEFORE
        self.faults.add(Fault(method, route, 0, None, {}, times, drop=drop))

    def chaos(
        self,
        rate: float,
        *,
        seed: int | None = 0,
        kinds: Mapping[str, float] | Iterable[str] | None = None,
        routes: Iterable[Route] = MESSAGE_WRITE_ROUTES,
        retry_after: tuple[float, float] = (0.05, 0.3),
    ) -> Chaos:
        """Inject random faults from now on: each request to ``routes`` (``(method, template)``
        pairs; default: message writes and interaction callbacks) fails with probability ``rate``,
        with a kind drawn from ``kinds`` (names of ``faults.FAULT_KINDS``, or weights by name;
        default: all, equally likely). 429s ask to wait ``retry_after`` seconds (a range).
        Replaces any earlier chaos; queued faults (``fail_next``, ``drop_next``) go first."""
        self.chaos_policy = Chaos(rate, seed=seed, kinds=kinds, routes=routes, retry_after=retry_after)
        return self.chaos_policy

    def stop_chaos(self) -> None:
        """No more random faults (queued ones still apply)."""
        self.chaos_policy = None

    def record_fault(self, fault: InjectedFault) -> None:
        self.injected_faults.append(fault)
        self.notifier.notify()

    def fault_counts(self, source: str | None = None) -> dict[str, int]:
        """How many faults of each kind were injected (only ``"chaos"`` or ``"queued"`` ones
        if ``source`` is given)."""
        return dict(Counter(f.kind for f in self.injected_faults if source is None or f.source == source))

    # Moments

    def on_moment(
        self,
        callback: MomentCallback,
        *,
        phases: Iterable[str] | None = None,
        when: RequestFilter | None = None,
    ) -> Callable[[], None]:
        """Call ``callback(request, phase)`` at each of ``phases`` (``"received"``, ``"applied"``,
        ``"responded"``; default: all) of every REST call ``when`` accepts (for instance
        ``moments.is_file_post``). An async callback holds the call until it returns.
        Returns a function that removes the hook."""
        return self.moments.add(callback, phases=phases, when=when)

    def hold(self, phase: str, when: RequestFilter | None = None, *, count: int = 1) -> Hold:
        """Stop the next ``count`` REST calls ``when`` accepts at ``phase``; ``await
        hold.wait()`` gives each as it arrives there, ``hold.release()`` lets them go on."""
        return self.moments.hold(phase, when, count=count)

    # Messages

    def render(self, message: StoredMessage) -> dict[str, Any]:
        return message_payload(message, self.clock, self.base_url)

    async def publish(self, event: str, message: StoredMessage) -> None:
        await self.gateway.dispatch_message(event, message)
        self.notifier.notify()

    def message(self, ref: MessageRef) -> StoredMessage:
        message = ref if isinstance(ref, StoredMessage) else self.message_store.get(int(ref))
        if message is None:
            raise KeyError(f"no message {ref!r}")
        return message

    def messages(self, channel: ChannelRef = None, *, include_deleted: bool = False) -> list[StoredMessage]:
        """Messages in ``channel`` (default: the first text channel), oldest first, ephemeral included."""
        return self.message_store.in_channel(self.world.channel(channel).id, include_deleted=include_deleted)

    async def post_message(
        self, content: str, channel: ChannelRef = None, user: UserRef = None
    ) -> StoredMessage:
        """A user writes in a channel (MESSAGE_CREATE to sessions with the GUILD_MESSAGES intent)."""
        target = self.world.channel(channel)
        guild = self.world.guild(target.guild_id)
        author = self.world.user(user) if user is not None else self.world.default_user(guild)
        message = self.message_store.create(
            channel_id=target.id,
            guild_id=guild.id,
            author=author,
            body={"content": content},
            files=[],
        )
        await self.publish("MESSAGE_CREATE", message)
        return message

    # World shortcuts

    def guild(self, ref: GuildRef = None) -> Guild:
        return self.world.guild(ref)

    def channel(self, ref: ChannelRef = None, guild: GuildRef = None) -> Channel:
        return self.world.channel(ref, guild)

    def user(self, ref: User | int | str) -> User:
        return self.world.user(ref)

    def add_user(
        self,
        username: str,
        *,
        guild: GuildRef = None,
        permissions: int | None = None,
        roles: Sequence[Role | int | str] = (),
    ) -> User:
        """A new member of ``guild`` (default: the first); ``permissions`` gives it a role with those bits."""
        target = self.world.guild(guild)
        member_roles = [self.world.role(target, r) for r in roles]
        return self.world.add_user(username, guild=target, roles=member_roles, permissions=permissions)

    # Interactions

    def interaction_by_token(self, token: str) -> InteractionRecord | None:
        return next((i for i in self.interactions.values() if i.token == token), None)

    def expire_token(self, interaction: InteractionRef | None = None) -> list[InteractionRecord]:
        """Make an interaction's token expire now, without moving the clock (default: the token
        of every interaction sent so far): its webhook calls (follow-ups, ``@original``) get 401
        ``Invalid Webhook Token`` (50027) and its callback 404 ``Unknown interaction`` (10062).
        Returns the interactions whose token expired."""
        if interaction is None:
            expired = list(self.interactions.values())
        elif isinstance(interaction, InteractionRecord):
            expired = [interaction]
        else:
            found = (
                self.interaction_by_token(interaction)
                if isinstance(interaction, str)
                else self.interactions.get(interaction)
            )
            if found is None:
                raise KeyError(f"no interaction {interaction!r}")
            expired = [found]
        for record in expired:
            record.token_expired = True
        self.notifier.notify()
        return expired

    async def send_slash_command(
        self,
        guild: GuildRef = None,
        channel: ChannelRef = None,
        user: UserRef = None,
        *,
        name: str,
        options: Mapping[str, Any] | None = None,
        subcommand: str | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """A user runs ``/name`` with ``options``, typed from the synced schema. Users, roles and
        channels may be given as objects, ids or names; attachments as ``OptionFile``."""
        return await self._command(
            APPLICATION_COMMAND, guild, channel, user, name, options or {}, subcommand, None, locale
        )

    async def send_autocomplete(
        self,
        guild: GuildRef = None,
        channel: ChannelRef = None,
        user: UserRef = None,
        *,
        name: str,
        options: Mapping[str, Any],
        focused: str,
        subcommand: str | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """A user typing into option ``focused`` of ``/name``; the bot answers with choices."""
        return await self._command(
            AUTOCOMPLETE, guild, channel, user, name, options, subcommand, focused, locale
        )

    async def click_button(
        self, message: MessageRef, custom_id: str, user: UserRef = None, *, locale: str = "en-US"
    ) -> InteractionRecord:
        """A user clicks the button ``custom_id`` on a stored message."""
        return await self._component(message, custom_id, user, None, locale)

    async def select_values(
        self,
        message: MessageRef,
        custom_id: str,
        values: Sequence[str],
        user: UserRef = None,
        *,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """A user picks ``values`` in the select menu ``custom_id`` of a stored message."""
        return await self._component(message, custom_id, user, list(values), locale)

    async def submit_modal(
        self,
        interaction: InteractionRecord,
        values: Mapping[str, str | Sequence[str]],
        user: UserRef = None,
        *,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """The user submits the modal the bot opened in answer to ``interaction``."""
        modal = interaction.modal
        if modal is None:
            raise ValueError(f"{interaction!r} was not answered with a modal")
        unknown = set(values) - modal_custom_ids(modal["components"])
        if unknown:
            raise ValueError(f"the modal has no inputs {sorted(unknown)}")
        data = {
            "custom_id": modal["custom_id"],
            "components": modal_submit_components(modal["components"], values),
        }
        source = self.message_store.get(interaction.source_message_id or 0)
        submitter = self.world.user(user) if user is not None else interaction.user
        return await self._interact(
            MODAL_SUBMIT,
            self.world.guild(interaction.guild_id),
            self.world.channel(interaction.channel_id),
            submitter,
            data,
            source,
            locale,
        )

    async def _command(
        self,
        kind: int,
        guild: GuildRef,
        channel: ChannelRef,
        user: UserRef,
        name: str,
        options: Mapping[str, Any],
        subcommand: str | None,
        focused: str | None,
        locale: str,
    ) -> InteractionRecord:
        target_guild = self.world.guild(guild)
        target_channel = self.world.channel(channel, target_guild)
        command = self.commands.find(name, guild_id=target_guild.id)
        if command is None:
            synced = sorted(c["name"] for c in self.commands.all())
            raise LookupError(f"/{name} was never synced (synced: {synced})")
        resolver = Resolver(self.world, target_guild, target_channel, self.message_store, self.base_url)
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": command["type"],
            "options": build_options(
                command, options, subcommand=subcommand, focused=focused, resolver=resolver
            ),
        }
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        if resolver.resolved:
            data["resolved"] = resolver.resolved
        return await self._interact(
            kind, target_guild, target_channel, self._user(user, target_guild), data, None, locale
        )

    async def _component(
        self, ref: MessageRef, custom_id: str, user: UserRef, values: list[str] | None, locale: str
    ) -> InteractionRecord:
        message = self.message(ref)
        if message.deleted:
            raise ValueError(f"message {message.id} was deleted")
        component = message.component(custom_id)
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled; no user can use it")
        if component["type"] == 2 and component.get("style") in LINK_BUTTON_STYLES:
            raise ValueError(f"button {custom_id!r} is a link button")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if values is not None:
            data["values"] = values
        guild = self.world.guild(message.guild_id)
        return await self._interact(
            MESSAGE_COMPONENT,
            guild,
            self.world.channel(message.channel_id, guild),
            self._user(user, guild),
            data,
            message,
            locale,
        )

    def _user(self, user: UserRef, guild: Guild) -> User:
        return self.world.user(user) if user is not None else self.world.default_user(guild)

    async def _interact(
        self,
        kind: int,
        guild: Guild,
        channel: Channel,
        user: User,
        data: dict[str, Any],
        message: StoredMessage | None,
        locale: str,
    ) -> InteractionRecord:
        interaction_id = self.snowflakes.next()
        payload = interaction_payload(
            interaction_id=interaction_id,
            token=f"{interaction_id}.{secrets.token_urlsafe(32)}",
            type=kind,
            world=self.world,
            guild=guild,
            channel=channel,
            user=user,
            data=data,
            attachment_size_limit=self.upload_limit,
            locale=locale,
        )
        if message is not None:
            payload["message"] = self.render(message)
        record = InteractionRecord(
            payload, created_at=self.clock.now(), user=user, store=self.message_store, notifier=self.notifier
        )
        self.interactions[record.id] = record
        if not await self.gateway.dispatch("INTERACTION_CREATE", payload):
            raise RuntimeError("no bot is connected to the gateway")
        return record

    # Gateway

    async def wait_until_connected(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Until a session has been sent READY and its GUILD_CREATEs."""
        await self.wait_for(
            lambda: any(s.ready for s in self.gateway.connected_sessions), timeout, "a gateway session"
        )

    async def dispatch(self, event: str, data: dict[str, Any]) -> int:
        """Send any DISPATCH event to every live session; returns how many got it."""
        return await self.gateway.dispatch(event, data)

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py closes (4000) and RESUMEs on ``resume_gateway_url``."""
        await self.gateway.send_op(RECONNECT)

    async def invalidate_session(self, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; with ``resumable=False`` discord.py identifies afresh."""
        await self.gateway.send_op(INVALID_SESSION, resumable)

    def drop_gateway(self) -> int:
        """Cut every open gateway connection as a network failure would (no close frame); the
        sessions stay resumable, so discord.py reconnects and RESUMEs. Returns how many were cut."""
        return self.gateway.drop()

    # CDN

    async def _serve_attachment(self, request: web.Request) -> web.Response:
        attachment = self.message_store.attachments.get(int(request.match_info["attachment_id"]))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            raise web.HTTPNotFound()
        return web.Response(
            body=attachment.data, content_type=attachment.content_type or "application/octet-stream"
        )
