"""The gateway: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RESUME, member chunks,
and dispatch of injected events. ``compress=zlib-stream`` (what discord.py asks for when the
``zstandard`` package is absent) is honoured: one zlib stream per connection, every message
flushed with Z_SYNC_FLUSH so it ends in ``00 00 ff ff``; without it, frames are plain text."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import zlib
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .faults import drop_connection
from .messages import StoredMessage
from .payloads import client_user_payload, gateway_guild_payload, member_payload

if TYPE_CHECKING:
    from .server import DiscordDouble

log = logging.getLogger(__name__)

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE = 0, 1, 2, 3
RESUME, RECONNECT, REQUEST_GUILD_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11

GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_MESSAGES = 1 << 9

AUTHENTICATION_FAILED = 4004
ABNORMAL_CLOSURE = 1006  # what a connection cut without a close frame counts as
# Close codes after which Discord forgets the session. discord.py's Client.close() asks for
# 1000, but with aiohttp 3.14 its reader task closes first with 4000, so the session stays
# resumable, as it would on Discord.
SESSION_ENDING_CLOSE_CODES = (1000, 1001)


class GatewayConnection:
    """One websocket. Sends are serialised so the zlib stream stays in frame order."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        compress: str | None,
        opened_at: float,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self.ws = ws
        self.compress = compress
        self.opened_at = opened_at
        self.transport = transport
        self.dropped = False  # cut by ``Gateway.drop``, not closed
        self.received: list[dict[str, Any]] = []
        self.heartbeats: list[float] = []
        self.session: GatewaySession | None = None
        self.close_code: int | None = None
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._lock = asyncio.Lock()

    @property
    def open(self) -> bool:
        return not self.ws.closed

    async def send(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload)
        async with self._lock:
            if self.ws.closed:
                return
            try:
                if self._zlib is None:
                    await self.ws.send_str(text)
                else:
                    frame = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(frame)
            except ConnectionError:
                log.debug("gateway: dropped %s, the connection is closing", payload.get("t") or payload["op"])


class GatewaySession:
    """An identified session: its sequence, what it was sent (for RESUME) and its connection."""

    def __init__(self, identify: dict[str, Any]) -> None:
        self.id = uuid.uuid4().hex
        self.identify = identify
        self.intents: int | None = identify.get("intents")
        self.seq = 0
        self.sent: list[dict[str, Any]] = []
        self.connection: GatewayConnection | None = None
        self.ready = False
        self.ended = False
        self.resumes = 0

    def has_intent(self, intent: int) -> bool:
        return self.intents is None or bool(self.intents & intent)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Number, keep (for a later RESUME) and send if connected."""
        self.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
        self.sent.append(payload)
        if self.connection is not None and self.connection.open:
            await self.connection.send(payload)


class Gateway:
    def __init__(self, double: DiscordDouble) -> None:
        self._double = double
        self.connections: list[GatewayConnection] = []
        self.sessions: dict[str, GatewaySession] = {}

    @property
    def live_sessions(self) -> list[GatewaySession]:
        """Sessions events go to: not ended (they may be between a disconnect and a RESUME)."""
        return [s for s in self.sessions.values() if not s.ended]

    @property
    def connected_sessions(self) -> list[GatewaySession]:
        return [s for s in self.live_sessions if s.connection is not None and s.connection.open]

    @property
    def open_connections(self) -> list[GatewayConnection]:
        return [c for c in self.connections if c.open]

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        if request.query.get("encoding", "json") != "json":
            await ws.close(code=4002, message=b"Only encoding=json is supported by the double.")
            return ws
        connection = GatewayConnection(
            ws,
            compress=request.query.get("compress"),
            opened_at=self._double.clock.now(),
            transport=request.transport,
        )
        self.connections.append(connection)
        interval_ms = int(self._double.heartbeat_interval * 1000)
        await connection.send({"op": HELLO, "d": {"heartbeat_interval": interval_ms}, "s": None, "t": None})
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    payload = json.loads(message.data)
                    connection.received.append(payload)
                    await self._on_payload(connection, payload)
        finally:
            self._closed(connection)
        return ws

    def _closed(self, connection: GatewayConnection) -> None:
        # aiohttp reports end-of-stream as 1000; a connection the double cut is abnormal instead.
        connection.close_code = ABNORMAL_CLOSURE if connection.dropped else connection.ws.close_code
        session = connection.session
        if session is not None and session.connection is connection:
            session.connection = None
            if connection.close_code in SESSION_ENDING_CLOSE_CODES:
                session.ended = True
        log.debug("gateway connection closed with %s", connection.close_code)
        self._double.notifier.notify()

    async def _on_payload(self, connection: GatewayConnection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == HEARTBEAT:
            connection.heartbeats.append(self._double.clock.now())
            await connection.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == IDENTIFY:
            await self._identify(connection, data)
        elif op == RESUME:
            await self._resume(connection, data)
        elif op == REQUEST_GUILD_MEMBERS:
            await self._send_members(connection, data)
        elif op != PRESENCE_UPDATE:
            log.warning("gateway: unhandled op %s", op)
        self._double.notifier.notify()

    async def _identify(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        double = self._double
        if not double.accepts(f"Bot {data.get('token')}"):
            await connection.ws.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return
        session = GatewaySession(data)
        session.connection = connection
        connection.session = session
        self.sessions[session.id] = session
        world = double.world
        ready: dict[str, Any] = {
            "v": 10,
            "user": client_user_payload(world.bot),
            "guilds": [{"id": str(g), "unavailable": True} for g in world.guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": double.gateway_url,
            "application": {"id": str(world.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth": {},
            "_trace": ["discord-double"],
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        await session.dispatch("READY", ready)
        if session.has_intent(GUILDS):
            with_members = session.has_intent(GUILD_MEMBERS)
            for guild in world.guilds.values():
                await session.dispatch(
                    "GUILD_CREATE", gateway_guild_payload(guild, world, with_members=with_members)
                )
        session.ready = True

    async def _resume(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or session.ended or not self._double.accepts(f"Bot {data.get('token')}"):
            await connection.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        connection.session = session
        session.resumes += 1
        # Replay what the client missed; events dispatched meanwhile are caught by the next pass.
        last_sent = data.get("seq") or 0
        while missed := [p for p in session.sent if p["s"] > last_sent]:
            for payload in missed:
                await connection.send(payload)
            last_sent = missed[-1]["s"]
        session.connection = connection
        await session.dispatch("RESUMED", {"_trace": ["discord-double"]})

    async def _send_members(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        session = connection.session
        if session is None:
            return
        guild_ids = data.get("guild_id")
        for guild_id in guild_ids if isinstance(guild_ids, list) else [guild_ids]:
            guild = self._double.world.guilds.get(int(guild_id))
            if guild is None:
                continue
            chunk = {
                "guild_id": str(guild.id),
                "members": [member_payload(guild, m) for m in guild.members.values()],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
                "nonce": data.get("nonce"),
            }
            await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def dispatch(self, event: str, data: dict[str, Any], *, intent: int | None = None) -> int:
        """Send a DISPATCH to every live session (having ``intent``); sessions between a
        disconnect and their RESUME get it on resuming. Returns how many connected ones got it."""
        sessions = [s for s in self.live_sessions if intent is None or s.has_intent(intent)]
        connected = 0
        for session in sessions:
            connected += session.connection is not None and session.connection.open
            await session.dispatch(event, data)
        self._double.notifier.notify()
        return connected

    async def dispatch_message(self, event: str, message: StoredMessage) -> None:
        """MESSAGE_CREATE/UPDATE/DELETE for a guild message; ephemeral ones are never sent."""
        if message.ephemeral:
            return
        if event == "MESSAGE_DELETE":
            data = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                data["guild_id"] = str(message.guild_id)
        else:
            data = self._double.render(message)
            guild = self._double.world.guilds.get(message.guild_id or 0)
            member = guild.members.get(message.author.id) if guild and message.webhook_id is None else None
            if guild is not None and member is not None:
                data["member"] = {k: v for k, v in member_payload(guild, member).items() if k != "user"}
        await self.dispatch(event, data, intent=GUILD_MESSAGES)

    async def send_op(self, op: int, data: Any = None) -> None:
        """Send a bare opcode (RECONNECT, INVALID_SESSION, ...) on every open connection."""
        for connection in self.open_connections:
            await connection.send({"op": op, "d": data, "s": None, "t": None})

    def drop(self) -> int:
        """Cut every open connection without a close frame; their sessions stay resumable.
        Returns how many were cut."""
        cut = self.open_connections
        for connection in cut:
            connection.dropped = True
            drop_connection(connection.transport)
        return len(cut)

    async def close(self, code: int = 1001) -> None:
        for connection in self.open_connections:
            await connection.ws.close(code=code, message=b"discord double shutting down")
